"""Atomic file writes: a file appears under its final name only when it is complete.

Write errors come out as OutputWriteError, which tells a full disk from other failures.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from rr_controlnet.errors import OutputWriteError
from rr_controlnet.outputs.names import PARTIAL_GLOB, PARTIAL_SUFFIX, partial_final_name

# Below this much free space a failed write is reported as a full disk.
FULL_DISK_BYTES: Final = 256 * 1024


def is_disk_full(folder: Path) -> bool:
    """Whether the file system holding `folder` is (nearly) out of space; never for file systems that
    have no space to run out of (/proc, /sys), which report none free."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):
        return False
    return stats.f_blocks > 0 and stats.f_bavail * stats.f_frsize < FULL_DISK_BYTES


def write_failure(exc: OSError, path: Path) -> OutputWriteError:
    """An OutputWriteError for a failed write, telling a full disk (or quota) from other errors, which keep
    the operating system's own reason."""
    disk_full = exc.errno in (errno.ENOSPC, errno.EDQUOT) or is_disk_full(Path(path).parent)
    reason = "no space left on device" if disk_full else (exc.strerror or str(exc))
    return OutputWriteError(f"cannot write {path}: {reason}", disk_full=disk_full)


def _umask() -> int:
    # Reading the umask means setting it; done once, at import, before any thread creates files.
    umask = os.umask(0)
    os.umask(umask)
    return umask


FILE_MODE: Final = 0o666 & ~_umask()


class AtomicFile:
    """A temporary sibling of `final`, renamed onto it by commit() or removed by discard().

    The temporary name starts with a dot and ends in `.partial`, so a killed process leaves
    nothing under a final name; `remove_stale_partials` cleans such leftovers on the next run.
    """

    def __init__(self, final: Path):
        self.final = Path(final)
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            # mkstemp opens with O_EXCL: it never follows or reuses an existing file or symlink.
            fd, name = tempfile.mkstemp(prefix=f".{self.final.name}.", suffix=PARTIAL_SUFFIX, dir=self.final.parent)
        except OSError as exc:
            raise write_failure(exc, self.final) from None
        os.close(fd)
        self.partial = Path(name)

    def commit(self) -> Path:
        try:
            with open(self.partial, "rb") as written:
                os.fsync(written.fileno())
            # mkstemp creates files readable by the owner only; give them the usual permissions.
            os.chmod(self.partial, FILE_MODE)
            # os.replace swaps the directory entry: a symlink at the final name is replaced, not followed.
            os.replace(self.partial, self.final)
        except OSError as exc:
            self.discard()
            raise write_failure(exc, self.final) from None
        return self.final

    def write_bytes(self, data: bytes) -> None:
        """Fill the temporary file; a failure is reported for the final name (a full disk told apart)."""
        try:
            self.partial.write_bytes(data)
        except OSError as exc:
            raise write_failure(exc, self.final) from None

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.partial.unlink()


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes `final` only if the block completes."""
    target = AtomicFile(final)
    try:
        yield target.partial
    except BaseException:
        target.discard()
        raise
    target.commit()


def write_atomic(final: Path, content: bytes | str) -> Path:
    data = content.encode() if isinstance(content, str) else content
    with atomic_path(final) as partial:
        try:
            partial.write_bytes(data)
        except OSError as exc:
            raise write_failure(exc, Path(final)) from None
    return Path(final)


def remove_stale_partials(folder: Path, final_names: Iterable[str], pattern: re.Pattern | None = None) -> int:
    """Delete temporary files that a killed run left for these final names (or names matching
    `pattern`); return how many.

    Only the caller's own names: other processes may be writing into the same folder.
    """
    wanted = set(final_names)
    removed = 0
    for leftover in Path(folder).glob(PARTIAL_GLOB):
        final_name = partial_final_name(leftover.name) or ""
        own = final_name in wanted or (pattern is not None and pattern.match(final_name))
        if own and leftover.is_file() and not leftover.is_symlink():
            leftover.unlink()
            removed += 1
    return removed
