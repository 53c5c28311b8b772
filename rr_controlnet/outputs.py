"""The output folder: what a batch writes there, and what makes its contents trustworthy.

    <out>/<id>.rrd, <id>.png          one recording and one image per item
    <out>/summary.json                every item's outcome (shard runs: summary.shard-I-of-N.json)
    <out>/.journal.jsonl              outcomes since summary.json was last written (append-only)
    <out>/summary.md, overview*.png   review artifacts; batch.rbl the batch's blueprint
    <out>/.rr-controlnet.lock         held while a run writes (per shard: .rr-controlnet.shard-I-of-N.lock)

Rules kept here: the folder is checked and locked before any model loads; no output may land on an
input image; an item counts as done only while its files have the size and hash recorded when they
were verified; a summary or journal that is not ours is set aside, never trusted.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from rr_controlnet.errors import OutputFolderError, OutputWriteError, Problem
from rr_controlnet.files import write_atomic, write_failure

SUMMARY_NAME: Final = "summary.json"
SUMMARY_MARKDOWN_NAME: Final = "summary.md"
BLUEPRINT_NAME: Final = "batch.rbl"
OVERVIEW_NAME: Final = "overview.png"
OVERVIEW_PAGE_PATTERN: Final = re.compile(r"^overview-\d{3,}\.png$")
JOURNAL_NAME: Final = ".journal.jsonl"
LOCK_NAME: Final = ".rr-controlnet.lock"
SHARD_SUMMARY_GLOB: Final = "summary.shard-*-of-*.json"
SHARD_JOURNAL_GLOB: Final = ".journal.shard-*-of-*.jsonl"
LOCK_GLOB: Final = ".rr-controlnet*.lock"
SUMMARY_VERSION: Final = 1
STATUSES: Final = ("done", "failed", "pending")
# Ids that would name the batch's own files (overview.png, summary.json, batch.rbl, ...).
RESERVED_ID_STEMS: Final = ("overview", "summary", "batch", "journal", "compare")
# While a batch runs, summary.json is rewritten at most this often, and less often when rewriting it
# takes long (a large batch): writing it may take 1/SUMMARY_COST_SHARE of the time. The journal holds
# every outcome in between.
SUMMARY_INTERVAL_SECONDS: Final = 2.0
SUMMARY_COST_SHARE: Final = 20


def default_out_dir(manifest_path: Path) -> Path:
    """An output folder beside the manifest, named after it."""
    manifest_path = Path(manifest_path)
    return manifest_path.parent / f"{manifest_path.stem}-output"


def item_file_names(item_id: str, with_recording: bool = True) -> list[str]:
    return [f"{item_id}.rrd", f"{item_id}.png"] if with_recording else [f"{item_id}.png"]


def reserved_id_reason(item_id: str) -> str | None:
    """Why an item id cannot name files beside the batch's own, or None."""
    stem = item_id.split(".", 1)[0].casefold()
    if stem in RESERVED_ID_STEMS or re.fullmatch(r"overview-\d+", stem):
        return f"is reserved: the batch writes files named {stem}.* itself"
    if re.fullmatch(r"con|prn|aux|nul|com[1-9]|lpt[1-9]", stem):
        return "is a device name on Windows, where its files could not be created"
    return None


# --- records of what a run left ------------------------------------------------------------------


@dataclass
class ItemOutcome:
    id: str
    status: str  # one of STATUSES
    seed: int | None
    params: dict[str, Any]
    params_hash: str
    image: str = ""  # the input image, absolute
    seconds: float | None = None
    files: list[str] = field(default_factory=list)
    error: str | None = None
    # name -> {"bytes", "sha256", "mtime_ns"} of each file, taken once the file was verified complete
    checksums: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_entry(cls, entry: Any) -> ItemOutcome | None:
        """An outcome from a summary or journal entry; None when the entry is not one of ours."""
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
            return None
        if entry.get("status") not in STATUSES:
            return None
        known = {name: entry[name] for name in cls.__dataclass_fields__ if name in entry}
        try:
            outcome = cls(**{"seed": None, "params": {}, "params_hash": "", **known})
        except TypeError:
            return None
        shapes_ok = (
            isinstance(outcome.params, dict)
            and isinstance(outcome.files, list)
            and isinstance(outcome.checksums, dict)
            and isinstance(outcome.warnings, list)
            and isinstance(outcome.params_hash, str)
        )
        return outcome if shapes_ok else None


@dataclass
class BatchSummary:
    manifest: str
    model: dict[str, Any]
    recording_id: str
    items: list[ItemOutcome]
    versions: dict[str, str] = field(default_factory=dict)
    item_ids: list[str] = field(default_factory=list)  # every item of the manifest, in order
    shard: str | None = None  # "I/N" when this summary covers one shard's items only

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> BatchSummary:
        items = [outcome for outcome in map(ItemOutcome.from_entry, document.get("items", [])) if outcome]
        return cls(
            manifest=document.get("manifest", ""),
            model=document.get("model") or {},
            recording_id=document.get("recording_id", ""),
            items=items,
            versions=document.get("versions") or {},
            item_ids=document.get("item_ids") or [item.id for item in items],
            shard=document.get("shard"),
        )

    def counts(self) -> dict[str, int]:
        return {status: sum(1 for outcome in self.items if outcome.status == status) for status in STATUSES}

    def to_document(self) -> dict[str, Any]:
        return {
            "version": SUMMARY_VERSION,
            "manifest": self.manifest,
            "model": self.model,
            "recording_id": self.recording_id,
            "counts": self.counts(),
            "versions": self.versions,
            "item_ids": self.item_ids,
            "shard": self.shard,
            "items": [asdict(outcome) for outcome in self.items],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_document(), indent=2) + "\n"


def summary_name(shard: Any = None) -> str:
    return f"summary.shard-{shard.index}-of-{shard.count}.json" if shard is not None else SUMMARY_NAME


def journal_name(shard: Any = None) -> str:
    return f".journal.shard-{shard.index}-of-{shard.count}.jsonl" if shard is not None else JOURNAL_NAME


def lock_name(shard: Any = None) -> str:
    return f".rr-controlnet.shard-{shard.index}-of-{shard.count}.lock" if shard is not None else LOCK_NAME


def batch_file_names(shard: Any = None) -> list[str]:
    """The files a run writes besides its items' (their temporaries are its to clean up)."""
    names = [summary_name(shard), journal_name(shard)]
    return names if shard is not None else [*names, BLUEPRINT_NAME, SUMMARY_MARKDOWN_NAME, OVERVIEW_NAME]


# --- before anything is written ------------------------------------------------------------------


def output_collisions(items: Iterable[Any], out_dir: Path, manifest_file: str) -> list[Problem]:
    """Outputs that would land on an input image, so the batch would destroy its own input."""
    out_dir = Path(out_dir).resolve()
    problems = []
    for item in items:
        image = Path(item.image).resolve()
        if image.parent != out_dir:
            continue
        taken = item_file_names(item.id)
        written_by = item.id if image.name.casefold() in {name.casefold() for name in taken} else None
        if written_by is None and _is_batch_file(image.name):
            written_by = "the batch"
        if written_by is None:
            continue
        who = f"item {written_by!r} writes" if written_by != "the batch" else "the batch writes"
        problems.append(
            Problem(
                manifest_file,
                item.line,
                f"item {item.id!r} (#{item.index})",
                f"image {image} is in the output folder {out_dir}, where {who} {image.name}: it would be "
                "overwritten; choose another output folder (--out)",
            )
        )
    return problems


def _is_batch_file(name: str) -> bool:
    folded = name.casefold()
    fixed = {SUMMARY_NAME, SUMMARY_MARKDOWN_NAME, BLUEPRINT_NAME, OVERVIEW_NAME, JOURNAL_NAME, LOCK_NAME}
    return (
        folded in fixed
        or bool(OVERVIEW_PAGE_PATTERN.match(folded))
        or bool(re.fullmatch(r"summary\.shard-\d+-of-\d+\.json", folded))
    )


def prepare_folder(out_dir: Path) -> list[Path]:
    """Create the output folder if needed and prove it writable; return the folders created.

    Raises OutputFolderError with a plain reason, before any model is loaded.
    """
    out_dir = Path(out_dir)
    created: list[Path] = []
    for folder in reversed([out_dir, *out_dir.parents]):
        if folder.is_dir():
            continue
        try:
            folder.mkdir()
        except FileExistsError:
            if folder.is_dir():  # another process (a shard, a rank) made it just now
                continue
            raise OutputFolderError(f"output folder {out_dir}: {folder} is a file, not a folder") from None
        except OSError as exc:
            raise OutputFolderError(f"output folder {out_dir}: cannot create {folder}: {_reason(exc)}") from None
        created.append(folder)
    probe = out_dir / f".rr-controlnet-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as written:
            written.write(b"probe")
            os.fsync(written.fileno())
    except OSError as exc:
        remove_created(created)
        raise OutputFolderError(f"output folder {out_dir}: cannot write there: {_reason(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return created


def remove_created(created: list[Path]) -> None:
    """Remove folders `prepare_folder` created, if a run left nothing in them."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


# --- one writer per shard ------------------------------------------------------------------------


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
    """Held while a run writes into an output folder; a second run of the same shard is refused.

    An advisory lock (flock) on a file naming the holder: the system releases it when the holder dies,
    however it dies, so a lock left by a killed run is taken over. Shards of one batch are separate
    writers; runs whose items overlap (two unsharded runs, two runs of one shard, a whole batch beside
    any shard) are rivals.
    """

    def __init__(self, out_dir: Path, shard: Any = None, log: Callable[[str], None] | None = None):
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
        for other in sorted(self.out_dir.glob(LOCK_GLOB)):
            if other.name == self.path.name or not _overlaps(self.shard, _shard_of_lock(other.name)):
                continue
            try:
                fd = os.open(other, os.O_RDONLY)
            except OSError:
                continue
            try:
                if not _try_lock(fd, exclusive=False):
                    return other, _read_holder(fd)
            finally:
                os.close(fd)
        return None

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


def _write_holder(fd: int, shard: Any) -> None:
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


def _shard_of_lock(name: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"\.rr-controlnet\.shard-(\d+)-of-(\d+)\.lock", name)
    return (int(match[1]), int(match[2])) if match else None


def _overlaps(shard: Any, other: tuple[int, int] | None) -> bool:
    """Whether two runs could write the same items: only shards I != J of the same N cannot."""
    if shard is None or other is None:
        return True
    return shard.count != other[1] or shard.index == other[0]


# --- the journal and summary.json ----------------------------------------------------------------


class Journal:
    """Append-only outcomes, one JSON line each, synced: what a killed run finished survives it."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, outcome: ItemOutcome) -> None:
        line = json.dumps(asdict(outcome), separators=(",", ":")) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8") as journal:
                journal.write(line)
                journal.flush()
                os.fsync(journal.fileno())
        except OSError as exc:
            raise write_failure(exc, self.path) from None

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class SummaryWriter:
    """Keeps summary.json current without rewriting it after every item.

    `changed()` marks the summary dirty; it is written at once when the last write is older than the
    interval (and than SUMMARY_COST_SHARE times what the last write took), otherwise by a timer thread
    once that time is up. The cost per item stays the same however large the batch grows, and the
    journal holds every outcome in between, so nothing is lost to a kill.
    """

    def __init__(
        self,
        write: Callable[[], None],
        lock: threading.RLock | None = None,
        interval: float = SUMMARY_INTERVAL_SECONDS,
    ):
        self._write = write
        self.interval = interval
        self._lock = lock or threading.RLock()  # the one that guards what `write` reads
        self._last_written = float("-inf")
        self._last_cost = 0.0
        self._timer: threading.Timer | None = None
        self.error: OutputWriteError | None = None

    def changed(self) -> None:
        with self._lock:
            period = max(self.interval, SUMMARY_COST_SHARE * self._last_cost)
            wait = period - (time.monotonic() - self._last_written)
            if wait <= 0:
                self.write_now()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            try:
                self.write_now()
            except OutputWriteError as exc:
                self.error = exc  # raised in the batch's own thread at its next write

    def write_now(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.error is not None:
                error, self.error = self.error, None
                raise error
            started = time.monotonic()
            self._write()
            self._last_written = time.monotonic()
            self._last_cost = self._last_written - started

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


def write_summary(summary: BatchSummary, out_dir: Path, name: str = SUMMARY_NAME) -> Path:
    return write_atomic(Path(out_dir) / name, summary.to_json())


def read_outcomes(
    out_dir: Path, own_names: Iterable[str] = (), log: Callable[[str], None] | None = None
) -> dict[str, ItemOutcome]:
    """The newest outcome of every item that earlier runs recorded in this folder.

    Summaries and journals are read oldest first, so later ones win. A file that is not ours is
    reported and not trusted; files in `own_names` (the caller's, under its lock) are also moved
    aside as `<name>.broken-<time>` so that the next run does not trip on them again.
    """
    log = log or (lambda message: None)
    outcomes: dict[str, ItemOutcome] = {}
    own = set(own_names)
    for path in _state_files(out_dir):
        entries, problem = _read_state_file(path)
        if problem is not None:
            moved = _set_aside(path) if path.name in own else None
            where = f"; moved to {moved.name}" if moved else ""
            log(f"warning: {path} {problem}: not trusted, its items will be generated again{where}")
            continue
        for outcome in entries:
            outcomes[outcome.id] = outcome
    return outcomes


def read_summary_documents(out_dir: Path) -> list[dict]:
    """summary.json and every shard summary in the folder that reads as one, oldest first."""
    documents = []
    for path in _state_files(out_dir, journals=False):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(document, dict) and isinstance(document.get("items"), list):
            documents.append(document)
    return documents


def _state_files(out_dir: Path, journals: bool = True) -> list[Path]:
    out_dir = Path(out_dir)
    paths = [out_dir / SUMMARY_NAME, *out_dir.glob(SHARD_SUMMARY_GLOB)]
    if journals:
        paths += [out_dir / JOURNAL_NAME, *out_dir.glob(SHARD_JOURNAL_GLOB)]
    existing = []
    for path in paths:
        with contextlib.suppress(OSError):
            if path.is_file():
                existing.append((path.stat().st_mtime_ns, path.suffix == ".jsonl", path))
    return [path for *_, path in sorted(existing)]


def _read_state_file(path: Path) -> tuple[list[ItemOutcome], str | None]:
    """(outcomes, None), or ([], why the file cannot be trusted)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], f"cannot be read ({getattr(exc, 'strerror', None) or exc})"
    if path.suffix == ".jsonl":
        return _journal_entries(text)
    try:
        document = json.loads(text)
    except ValueError as exc:
        return [], f"is not JSON ({exc})"
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        return [], f"is not an rr-controlnet summary (it holds {_json_kind(document)})"
    outcomes = [ItemOutcome.from_entry(entry) for entry in document["items"]]
    if None in outcomes:
        return [], "has items that are not rr-controlnet outcomes"
    return outcomes, None


def _journal_entries(text: str) -> tuple[list[ItemOutcome], str | None]:
    # The last piece has no newline: empty, or a line cut short by a kill, which is ignored.
    complete = text.split("\n")[:-1]
    outcomes = []
    for number, line in enumerate(complete, start=1):
        try:
            outcome = ItemOutcome.from_entry(json.loads(line))
        except ValueError:
            outcome = None
        if outcome is None:
            return [], f"has a line that is not an rr-controlnet outcome (line {number})"
        outcomes.append(outcome)
    return outcomes, None


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping without items"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "text"
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:40]


def _set_aside(path: Path) -> Path | None:
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.broken-{stamp}")
    try:
        os.replace(path, target)
    except OSError:
        return None
    return target


def merge_shard_summaries(out_dir: Path, log: Callable[[str], None] | None = None) -> dict:
    """One summary document for the whole batch: every item in manifest order, newest outcome wins."""
    documents = read_summary_documents(out_dir)
    if not documents:
        raise OutputFolderError(f"{out_dir}: no summary.json or shard summaries to merge")
    outcomes = read_outcomes(out_dir, log=log)
    newest = documents[-1]
    order = next((doc["item_ids"] for doc in reversed(documents) if doc.get("item_ids")), None) or list(outcomes)
    merged = {key: value for key, value in newest.items() if key not in ("items", "shard", "counts")}
    # An item no shard has reported on yet is pending, like an item a batch has not reached.
    stub = {"status": "pending", "seed": None, "params": {}, "params_hash": ""}
    merged["items"] = [
        asdict(outcomes[item_id]) if item_id in outcomes else {"id": item_id, **stub} for item_id in order
    ]
    merged["item_ids"] = order
    return merged


def shard_state_files(out_dir: Path) -> list[Path]:
    """Shard summaries and journals (merged into summary.json by `summarize`)."""
    out_dir = Path(out_dir)
    return [*out_dir.glob(SHARD_SUMMARY_GLOB), *out_dir.glob(SHARD_JOURNAL_GLOB), out_dir / JOURNAL_NAME]


def held_shard_locks(out_dir: Path) -> list[str]:
    """Shards ("I/N") whose runs are still writing into the folder."""
    held = []
    for path in Path(out_dir).glob(LOCK_GLOB):
        shard = _shard_of_lock(path.name)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if not _try_lock(fd, exclusive=False):
                held.append(f"{shard[0]}/{shard[1]}" if shard else "the whole batch")
        finally:
            os.close(fd)
    return held


# --- files that are what the summary says ---------------------------------------------------------


def file_checksum(path: Path) -> dict[str, Any]:
    """Size, SHA-256 and modification time of a finished file."""
    with open(path, "rb") as finished:
        digest = hashlib.file_digest(finished, "sha256").hexdigest()
        stats = os.fstat(finished.fileno())
    return {"bytes": stats.st_size, "sha256": digest, "mtime_ns": stats.st_mtime_ns}


def files_intact(outcome: ItemOutcome, out_dir: Path) -> bool:
    """Whether every file of a done item is still the one verified when it was written.

    Size always; the hash when the modification time differs from the recorded one (a copied
    folder, a file rewritten in place). Outcomes from before checksums were kept: existence only.
    """
    for name in outcome.files:
        path = Path(out_dir) / name
        try:
            stats = path.stat()
        except OSError:
            return False
        recorded = outcome.checksums.get(name)
        if recorded is None:
            if outcome.checksums:
                return False
            continue
        if stats.st_size != recorded.get("bytes"):
            return False
        if stats.st_mtime_ns != recorded.get("mtime_ns"):
            try:
                if file_checksum(path)["sha256"] != recorded.get("sha256"):
                    return False
            except OSError:
                return False
    return bool(outcome.files)


@contextlib.contextmanager
def output_folder(out_dir: Path, shard: Any, log: Callable[[str], None]) -> Iterator[FolderLock]:
    """Prepare and lock the folder for one run; a run that wrote nothing leaves no folder behind."""
    created = prepare_folder(out_dir)
    lock = FolderLock(out_dir, shard, log)
    try:
        lock.acquire()
    except BaseException:
        remove_created(created)
        raise
    try:
        yield lock
    finally:
        lock.release()
        remove_created(created)
