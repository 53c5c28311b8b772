"""Process-wide memory settings for the long-running batch process (the CLI and the importer set them)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Final

# glibc's mallopt parameter for the number of malloc arenas, and the number kept.
M_ARENA_MAX: Final = -8
# By default glibc gives threads up to 8 arenas per core; freed memory scattered over many arenas is
# rarely returned. The batch's threads (the finisher, Rerun's encoders, the summary timer) then grew the
# resident memory by about 25-35 kB per item; with 2 arenas it stays near what Rerun itself keeps
# (5-15 kB per item, measured over 1,200 tiny items), at no measurable cost in CPU time.
MALLOC_ARENAS: Final = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads started from now on; False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
