"""One output folder, read and written through one object: the checks before a run, the lock, what
earlier runs left (merged across shards and journals, in the batch's order) and whether an item's
files are still the ones that were verified.

    folder = OutputFolder(Path("out"))
    summary = folder.read()                 # the batch as recorded: every item, newest outcome wins
    damage = folder.damage(summary.items[0])  # None while its files are intact

Rules kept here: the folder is checked and locked before any model loads; no output may land on an
input image; an item counts as done only while its files have the size and hash recorded when they
were verified; a summary or journal that is not ours is set aside, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from rr_controlnet.errors import OutputFolderError, Problem
from rr_controlnet.outputs import journal
from rr_controlnet.outputs.files import remove_stale_partials
from rr_controlnet.outputs.lock import FolderLock, LockHolder, running_writers
from rr_controlnet.outputs.names import (
    COMPARE_FOLDER,
    LOCK_GLOB,
    PROBE_PREFIX,
    REVIEW_FOLDER,
    SHARD_JOURNAL_GLOB,
    SHARD_SUMMARY_GLOB,
    SUMMARY_NAME,
    is_batch_file,
    is_overview_page,
    item_file_names,
    written_names,
)
from rr_controlnet.outputs.records import BatchSummary, ItemOutcome
from rr_controlnet.spec import Shard

# The output folder's subfolders the tool writes whole: an input inside one would be overwritten.
TOOL_FOLDERS: Final = (REVIEW_FOLDER, COMPARE_FOLDER)


class OutputFolder:
    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"OutputFolder({str(self.path)!r})"

    # --- before a run ----------------------------------------------------------------------------

    def collisions(self, items: Iterable[Any], manifest_file: str) -> list[Problem]:
        """Outputs that would land on an input (its own item's or another's image, or a control unit's map):
        the batch would destroy its own input. `items` are spec.Item."""
        out_dir = self.path.resolve()
        items = list(items)
        writers = {name.casefold(): item.id for item in items for name in item_file_names(item.id)}
        problems = []
        for item in items:
            for field, path in _input_files(item):
                image = Path(path).resolve()
                owned = next((name for name in TOOL_FOLDERS if image.is_relative_to(out_dir / name)), None)
                if owned is not None:
                    where = f"the output folder's {owned}/, which the tool rewrites"
                elif image.parent != out_dir:
                    continue
                else:
                    writer = writers.get(image.name.casefold())
                    if writer is None and not is_batch_file(image.name):
                        continue
                    who = f"item {writer!r} writes" if writer is not None else "the batch writes"
                    where = f"the output folder {out_dir}, where {who} {image.name}"
                problems.append(
                    Problem(
                        manifest_file,
                        item.line,
                        f"item {item.id!r} (#{item.index})",
                        f"{field} {image} is in {where}: it would be overwritten; choose another output folder (--out)",
                    )
                )
        return problems

    def refuse_foreign_files(self, item_ids: Iterable[str]) -> None:
        """Raise OutputFolderError, naming them, when a folder no run of this tool has written holds files
        of the names a batch of these items would write: they are someone else's, never to be replaced
        (--force included). Once the folder holds this tool's summary, journal or lock, its names are the
        tool's own."""
        if not self.path.is_dir() or self.holds_runs():
            return
        wanted = written_names(list(item_ids))
        try:
            clashing = sorted(
                entry.name
                for entry in self.path.iterdir()
                if entry.name.casefold() in wanted or is_overview_page(entry.name.casefold())
            )
        except OSError as exc:
            raise OutputFolderError(f"output folder {self.path}: cannot be listed: {_reason(exc)}") from None
        if clashing:
            shown = ", ".join(clashing[:10]) + (f" and {len(clashing) - 10} more" if len(clashing) > 10 else "")
            raise OutputFolderError(
                f"output folder {self.path} is not an rr-controlnet output folder and holds files a batch would "
                f"replace: {shown}; choose another folder (--out) or move them"
            )

    def holds_runs(self) -> bool:
        """Whether a run of this tool has written here: a summary, a journal or a lock of its own."""
        return bool(journal.state_files(self.path)) or any(self.path.glob(LOCK_GLOB))

    @contextlib.contextmanager
    def locked(self, shard: Shard | None, log: Callable[[str], None]) -> Iterator[FolderLock]:
        """Prepare and lock the folder for one run; a run that wrote nothing leaves no folder behind."""
        created = self._prepare()
        lock = FolderLock(self.path, shard, log)
        try:
            lock.acquire()
        except BaseException:
            _remove_created(created)
            raise
        try:
            yield lock
        finally:
            lock.release()
            _remove_created(created)

    def _prepare(self) -> list[Path]:
        """Create the folder if needed and prove it writable; return the folders created. Raises
        OutputFolderError with a plain reason, before any model is loaded."""
        created: list[Path] = []
        for folder in reversed([self.path, *self.path.parents]):
            if folder.is_dir():
                continue
            try:
                folder.mkdir()
            except FileExistsError:
                if folder.is_dir():  # another process (a shard, a rank) made it just now
                    continue
                raise OutputFolderError(f"output folder {self.path}: {folder} is a file, not a folder") from None
            except OSError as exc:
                raise OutputFolderError(f"output folder {self.path}: cannot create {folder}: {_reason(exc)}") from None
            created.append(folder)
        probe = self.path / f"{PROBE_PREFIX}{os.getpid()}"
        try:
            with open(probe, "wb") as written:
                written.write(b"probe")
                os.fsync(written.fileno())
        except OSError as exc:
            _remove_created(created)
            raise OutputFolderError(f"output folder {self.path}: cannot write there: {_reason(exc)}") from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
        return created

    def remove_stale_partials(self, final_names: Iterable[str], pattern: Any = None) -> int:
        """Temporaries a killed run left for these names (or names matching `pattern`): removed."""
        return remove_stale_partials(self.path, final_names, pattern)

    # --- what earlier runs left --------------------------------------------------------------------

    def outcomes(
        self, own_names: Iterable[str] = (), log: Callable[[str], None] | None = None
    ) -> dict[str, ItemOutcome]:
        """The newest outcome of every item recorded here (summaries and journals, oldest first); files in
        `own_names` (the caller's, under its lock) that are not this tool's are set aside."""
        return journal.read_outcomes(self.path, own_names, log)

    def documents(self) -> list[dict]:
        """summary.json and the shard summaries that read as such, oldest first."""
        return journal.read_summary_documents(self.path)

    def read(self, log: Callable[[str], None] | None = None) -> BatchSummary:
        """The batch as this folder records it, across shards and journals: the newest summary's settings,
        and every item it lists, in its order, with its newest outcome (pending when none is recorded).

        Raises OutputFolderError when there is nothing of this tool's to read, naming a summary.json
        that cannot be read.
        """
        documents = self.documents()
        if not documents:
            summary_file = self.path / SUMMARY_NAME
            if summary_file.exists():
                problem = journal.state_file_problem(summary_file) or "is not an rr-controlnet summary"
                raise OutputFolderError(f"{SUMMARY_NAME} {problem}")
            raise OutputFolderError("not an rr-controlnet output folder (no summary.json or shard summaries)")
        outcomes = self.outcomes(log=log)
        summary = BatchSummary.from_document({**documents[-1], "items": []}, self.path)
        order = next((document["item_ids"] for document in reversed(documents) if document.get("item_ids")), None)
        order = order or list(outcomes)
        summary.items = [outcomes.get(item_id) or ItemOutcome.pending(item_id) for item_id in order]
        summary.item_ids, summary.shard = list(order), None
        return summary

    def merge_shards(self, log: Callable[[str], None] | None = None) -> BatchSummary:
        """Write the batch's summary.json from everything its shards recorded; the shards' own files are
        removed once merged, unless a shard is still running (they are merged again next time)."""
        try:
            summary = self.read(log)
        except OutputFolderError as exc:
            raise OutputFolderError(f"{self.path}: nothing to merge: {exc}") from None
        journal.write_summary(summary, self.path)
        running = self.running_shards()
        if running:
            if log is not None:
                log(f"note: still running: {', '.join(running)}; their shard files are kept and merged next time")
            return summary
        for merged in self._shard_state_files():  # summary.json now holds all they said
            merged.unlink(missing_ok=True)
        return summary

    def _shard_state_files(self) -> list[Path]:
        return [
            *self.path.glob(SHARD_SUMMARY_GLOB),
            *self.path.glob(SHARD_JOURNAL_GLOB),
            self.path / journal.JOURNAL_NAME,
        ]

    def running_writers(self) -> list[tuple[str, LockHolder | None]]:
        """The runs writing into the folder now: ("I/N" or "the whole batch", who holds the lock)."""
        return running_writers(self.path)

    def running_shards(self) -> list[str]:
        """Shards ("I/N") whose runs are still writing into the folder."""
        return [shard for shard, _ in self.running_writers()]

    # --- an item's files ----------------------------------------------------------------------------

    def checksums(self, written: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
        """Size, SHA-256 and modification time of files just written with these bytes (hashed here rather
        than read back), to tell later whether they changed."""
        return {
            name: {
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "mtime_ns": os.stat(self.path / name).st_mtime_ns,
            }
            for name, data in written.items()
        }

    def damage(self, outcome: ItemOutcome) -> str | None:
        """How an item's files differ from what its outcome recorded when they were verified, or None.

        Size always; the hash when the modification time differs from the recorded one (a copied
        folder, a file rewritten in place). Outcomes from before checksums were kept: existence only.
        """
        for name in outcome.files:
            path = self.path / name
            try:
                stats = path.stat()
            except OSError:
                return f"{name} is missing"
            recorded = outcome.checksums.get(name)
            if recorded is None:
                if outcome.checksums:
                    return f"{name} has no recorded checksum"
                continue
            if stats.st_size != recorded.get("bytes"):
                return f"{name} has {stats.st_size:,} bytes where {recorded.get('bytes'):,} were written"
            if stats.st_mtime_ns != recorded.get("mtime_ns"):
                try:
                    if file_checksum(path)["sha256"] != recorded.get("sha256"):
                        return f"{name} is not the file that was written (its SHA-256 differs)"
                except OSError as exc:
                    return f"{name} cannot be read: {_reason(exc)}"
        return None

    def intact(self, outcome: ItemOutcome) -> bool:
        """Whether a done item's files are all still the ones verified when they were written."""
        return bool(outcome.files) and self.damage(outcome) is None


def file_checksum(path: Path) -> dict[str, Any]:
    """Size, SHA-256 and modification time of a finished file."""
    with open(path, "rb") as finished:
        digest = hashlib.file_digest(finished, "sha256").hexdigest()
        stats = os.fstat(finished.fileno())
    return {"bytes": stats.st_size, "sha256": digest, "mtime_ns": stats.st_mtime_ns}


def _remove_created(created: list[Path]) -> None:
    """Remove folders `_prepare` created, if a run left nothing in them."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _input_files(item: Any) -> Iterator[tuple[str, Path]]:
    """(field, path) of each file an item reads: its image, then each control unit's map."""
    yield "image", item.image
    for index, unit in enumerate(item.controls):
        if unit.image is not None:
            yield f"controls[{index}].image", unit.image


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
