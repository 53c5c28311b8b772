"""Process-wide memory settings for the long-running batch process (the CLI and the importer set them)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Final

# glibc's mallopt parameter for the number of malloc arenas, and the number kept.
M_ARENA_MAX: Final = -8
# By default glibc gives threads up to 8 arenas per core, and freed memory scattered over many arenas
# is rarely returned. With the batch's threads (the finisher, Rerun's encoders, the summary timer) the
# resident memory grew about 50 kB per item over a batch's first 1,000 tiny items; with 2 arenas about
# 16 kB, most of it what rerun-sdk keeps of every stream (bench/scale.py), at no cost in CPU time.
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
