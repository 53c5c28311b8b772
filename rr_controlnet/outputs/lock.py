"""One writer per shard of an output folder: a lock file naming its holder, released however the holder ends.

An advisory lock (flock) on `.rr-controlnet.lock` (per shard: `.rr-controlnet.shard-I-of-N.lock`)
whose content names the holder's pid, host, start and command for the message a rival gets. The
system releases the lock when its holder dies, however it dies, so a lock left by a killed run is
taken over; where a file system has no flock, the holder's pid decides. Shards of one batch are
separate writers; runs whose items overlap (two unsharded runs, two runs of one shard, a whole batch
beside any shard, shards of different splits) are rivals.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rr_controlnet.errors import OutputFolderError
from rr_controlnet.outputs.names import LOCK_GLOB, lock_name, shard_of
from rr_controlnet.spec import Shard


@dataclass(frozen=True)
class LockHolder:
    pid: int | None
    host: str
    started: str
    command: str
    shard: str | None

    def describe(self) -> str:
        who = f"pid {self.pid} on {self.host}" if self.pid else "another run"
        since = f" since {self.started}" if self.started else ""
        return f"{who}{since} ({self.command})" if self.command else f"{who}{since}"


class FolderLock:
    """Held while a run writes into an output folder; a second run of the same items is refused."""

    def __init__(self, out_dir: Path, shard: Shard | None = None, log: Callable[[str], None] | None = None):
        self.out_dir = Path(out_dir)
        self.shard = shard
        self.path = self.out_dir / lock_name(shard)
        self.log = log or (lambda message: None)
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        for _ in range(10):  # the file can be replaced between open and lock; then try again
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd, exclusive=True):
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputFolderError(_busy_message(self.out_dir, holder, self.path))
            if _same_file(fd, self.path):
                break
            os.close(fd)
        else:
            raise OutputFolderError(f"output folder {self.out_dir}: cannot take the lock {self.path}")
        previous = _read_holder(fd)
        if previous is not None and previous.pid not in (None, os.getpid()):
            self.log(f"note: taking over the lock of {previous.describe()}, which is no longer running")
        self._fd = fd
        _write_holder(fd, self.shard)
        rival = self._live_rival()
        if rival is not None:
            self.release()
            raise OutputFolderError(_busy_message(self.out_dir, rival[1], rival[0]))

    def _live_rival(self) -> tuple[Path, LockHolder | None] | None:
        def rival(other: Path) -> bool:
            return other.name != self.path.name and _overlaps(self.shard, shard_of(other.name))

        return next(_held_locks(self.out_dir, rival), None)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still locked: nobody can take over a file about to vanish
        os.close(self._fd)
        self._fd = None


def _try_lock(fd: int, exclusive: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): the holder's pid decides
        holder = _read_holder(fd)
        return holder is None or holder.pid in (None, os.getpid()) or not _alive(holder)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without flock: the holder's pid decides
        holder = _read_holder(fd)
        return holder is None or holder.pid in (None, os.getpid()) or not _alive(holder)
    if not exclusive:
        fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def _alive(holder: LockHolder) -> bool:
    if holder.host != socket.gethostname() or holder.pid is None:
        return True  # another machine's process cannot be checked from here
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _read_holder(fd: int) -> LockHolder | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        document = json.loads(os.read(fd, 65536) or b"null")
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    pid = document.get("pid")
    return LockHolder(
        pid if isinstance(pid, int) else None,
        str(document.get("host", "")),
        str(document.get("started", "")),
        str(document.get("command", "")),
        document.get("shard"),
    )


def _write_holder(fd: int, shard: Shard | None) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["rr-controlnet", *sys.argv[1:]])[:500],
        "shard": str(shard) if shard is not None else None,
    }
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(holder).encode())
    os.fsync(fd)


def _busy_message(out_dir: Path, holder: LockHolder | None, path: Path) -> str:
    who = holder.describe() if holder else "another run"
    return (
        f"output folder {out_dir} is in use by {who}; wait for it to finish or stop it "
        f"(if that run is gone, delete {path})"
    )


def _overlaps(shard: Shard | None, other: Shard | None) -> bool:
    """Whether two runs could write the same items: only shards I != J of the same N cannot."""
    if shard is None or other is None:
        return True
    return shard.count != other.count or shard.index == other.index


def held_shard_locks(out_dir: Path) -> list[str]:
    """Shards ("I/N") whose runs are still writing into the folder."""
    return [shard for shard, _ in running_writers(out_dir)]


def running_writers(out_dir: Path) -> list[tuple[str, LockHolder | None]]:
    """The runs writing into the folder now: ("I/N" or "the whole batch", who holds the lock)."""
    return [
        (str(shard) if (shard := shard_of(path.name)) else "the whole batch", holder)
        for path, holder in _held_locks(Path(out_dir))
    ]


def _held_locks(
    out_dir: Path, wanted: Callable[[Path], bool] = lambda path: True
) -> Iterator[tuple[Path, LockHolder | None]]:
    """The folder's lock files (those `wanted`) that a running process holds, in name order, with their
    holders. A lock file is opened only when wanted, and closed before it is yielded."""
    for path in sorted(out_dir.glob(LOCK_GLOB)):
        if not wanted(path):
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            held = not _try_lock(fd, exclusive=False)
            holder = _read_holder(fd) if held else None
        finally:
            os.close(fd)
        if held:
            yield path, holder
