"""The output folder: what a batch writes there, and what makes its contents trustworthy.

    <out>/<id>.rrd, <id>.png          one recording and one image per item
    <out>/summary.json                every item's outcome (shard runs: summary.shard-I-of-N.json)
    <out>/.journal.jsonl              outcomes since summary.json was last written (append-only)
    <out>/summary.md, overview*.png   review artifacts; batch.rbl the batch's blueprint
    <out>/.rr-controlnet.lock         held while a run writes (folder_lock; per shard: .rr-controlnet.shard-I-of-N.lock)

Rules kept here: the folder is checked and locked before any model loads; no output may land on an
input image; an item counts as done only while its files have the size and hash recorded when they
were verified; a summary or journal that is not ours is set aside, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from rr_controlnet.errors import OutputFolderError, Problem
from rr_controlnet.folder_lock import LOCK_NAME, FolderLock

SUMMARY_NAME: Final = "summary.json"
SUMMARY_MARKDOWN_NAME: Final = "summary.md"
BLUEPRINT_NAME: Final = "batch.rbl"
OVERVIEW_NAME: Final = "overview.png"
OVERVIEW_PAGE_PATTERN: Final = re.compile(r"^overview-\d{3,}\.png$")
JOURNAL_NAME: Final = ".journal.jsonl"
SHARD_SUMMARY_GLOB: Final = "summary.shard-*-of-*.json"
SHARD_JOURNAL_GLOB: Final = ".journal.shard-*-of-*.jsonl"
SUMMARY_VERSION: Final = 1
STATUSES: Final = ("done", "failed", "pending")
# Ids that would name the batch's own files (overview.png, summary.json, batch.rbl, ...).
RESERVED_ID_STEMS: Final = ("overview", "summary", "batch", "journal", "compare")


def default_out_dir(manifest_path: Path) -> Path:
    """An output folder beside the manifest, named after it."""
    manifest_path = Path(manifest_path)
    return manifest_path.parent / f"{manifest_path.stem}-output"


def item_file_names(item_id: str, with_recording: bool = True) -> list[str]:
    return [f"{item_id}.rrd", f"{item_id}.png"] if with_recording else [f"{item_id}.png"]


def listed_file(folder: Path, files: Sequence[str], suffix: str) -> Path | None:
    """The first of an outcome's files with this suffix, in `folder`."""
    name = next((name for name in files if name.endswith(suffix)), None)
    return Path(folder) / name if name else None


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
    adherence: dict[str, Any] | None = None  # adherence.Adherence.as_dict() of a done item
    sweep: dict[str, Any] | None = None  # a sweep variant's source, values and place: spec.SweepInfo
    size: list[int] | None = None  # [width, height] generated (params may leave them to the image's aspect)

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
            and all(_is_plain_name(name) for name in outcome.files)
            and isinstance(outcome.checksums, dict)
            and all(isinstance(checksum, dict) for checksum in outcome.checksums.values())
            and isinstance(outcome.warnings, list)
            and isinstance(outcome.params_hash, str)
            and isinstance(outcome.adherence, dict | None)
            and isinstance(outcome.sweep, dict | None)
            and isinstance(outcome.size, list | None)
        )
        return outcome if shapes_ok else None


def _is_plain_name(name: Any) -> bool:
    """A file name inside the output folder, as this tool writes them: no folder, nothing hidden."""
    return isinstance(name, str) and name == Path(name).name and not name.startswith(".")


@dataclass
class BatchSummary:
    manifest: str
    model: dict[str, Any]
    recording_id: str
    items: list[ItemOutcome]
    versions: dict[str, str] = field(default_factory=dict)
    item_ids: list[str] = field(default_factory=list)  # every item of the manifest, in order
    shard: str | None = None  # "I/N" when this summary covers one shard's items only
    run: dict[str, Any] = field(default_factory=dict)  # the run that wrote it: device, dtype, started, wall_seconds

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
            run=document.get("run") or {},
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
            "run": self.run,
            "items": [asdict(outcome) for outcome in self.items],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_document(), indent=2) + "\n"


def summary_name(shard: Any = None) -> str:
    return f"summary.shard-{shard.index}-of-{shard.count}.json" if shard is not None else SUMMARY_NAME


def journal_name(shard: Any = None) -> str:
    return f".journal.shard-{shard.index}-of-{shard.count}.jsonl" if shard is not None else JOURNAL_NAME


def batch_file_names(shard: Any = None) -> list[str]:
    """The files a run writes besides its items' (their temporaries are its to clean up)."""
    names = [summary_name(shard), journal_name(shard)]
    return names if shard is not None else [*names, BLUEPRINT_NAME, SUMMARY_MARKDOWN_NAME, OVERVIEW_NAME]


# --- before anything is written ------------------------------------------------------------------


def output_collisions(items: Iterable[Any], out_dir: Path, manifest_file: str) -> list[Problem]:
    """Outputs that would land on an input image (its own item's or another's), so the batch would
    destroy its own input."""
    out_dir = Path(out_dir).resolve()
    items = list(items)
    writers = {name.casefold(): item.id for item in items for name in item_file_names(item.id)}
    problems = []
    for item in items:
        image = Path(item.image).resolve()
        if image.parent != out_dir:
            continue
        writer = writers.get(image.name.casefold())
        if writer is None and not _is_batch_file(image.name):
            continue
        who = f"item {writer!r} writes" if writer is not None else "the batch writes"
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
