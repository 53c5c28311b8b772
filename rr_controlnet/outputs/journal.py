"""The records on disk: an append-only journal, summary.json, and reading them back.

Every finished item goes to the journal at once (one synced JSON line); summary.json is rewritten
from time to time and at the end. Reading takes summaries and journals oldest first, so later
outcomes win; a file that is not ours is reported and set aside, never trusted.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from rr_controlnet.errors import OutputWriteError
from rr_controlnet.outputs.files import write_atomic, write_failure
from rr_controlnet.outputs.names import JOURNAL_NAME, SHARD_JOURNAL_GLOB, SHARD_SUMMARY_GLOB, SUMMARY_NAME
from rr_controlnet.outputs.records import BatchSummary, ItemOutcome

# While a batch runs, summary.json is rewritten at most this often, and less often when rewriting it
# takes long (a large batch): writing it may take 1/SUMMARY_COST_SHARE of the time. The journal holds
# every outcome in between.
SUMMARY_INTERVAL_SECONDS: Final = 2.0
SUMMARY_COST_SHARE: Final = 20


class Journal:
    """Append-only outcomes, one JSON line each, synced: what a killed run finished survives it."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, outcome: ItemOutcome) -> None:
        line = json.dumps(outcome.to_document(self.path.parent), separators=(",", ":")) + "\n"
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
        """Raises the error of a write the timer tried, so the batch learns of it at its next item."""
        with self._lock:
            if self.error is not None:
                error, self.error = self.error, None
                raise error
            period = max(self.interval, SUMMARY_COST_SHARE * self._last_cost)
            wait = period - (time.monotonic() - self._last_written)
            if wait <= 0:
                self.write_now()
            elif self._timer is None:
                timer = threading.Timer(wait, self._on_timer)
                timer.args = (timer,)
                timer.daemon = True
                self._timer = timer
                timer.start()

    def _on_timer(self, timer: threading.Timer) -> None:
        with self._lock:
            # A timer that fired while write_now() or close() held the lock has been replaced: it must
            # not write after them (after close, the folder may be another run's).
            if self._timer is not timer:
                return
            self._timer = None
            try:
                self.write_now()
            except OutputWriteError as exc:
                self.error = exc

    def write_now(self) -> None:
        """Write at once; an error the timer met before is superseded by this try."""
        with self._lock:
            self._cancel_timer()
            self.error = None
            started = time.monotonic()
            self._write()
            self._last_written = time.monotonic()
            self._last_cost = self._last_written - started

    def close(self) -> None:
        with self._lock:
            self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def write_summary(summary: BatchSummary, out_dir: Path, name: str = SUMMARY_NAME) -> Path:
    return write_atomic(Path(out_dir) / name, summary.to_json(Path(out_dir)))


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
    for path in state_files(out_dir):
        entries, problem = _read_state_file(path, Path(out_dir))
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
    for path in state_files(out_dir, journals=False):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(document, dict) and isinstance(document.get("items"), list):
            documents.append(document)
    return documents


def state_files(out_dir: Path, journals: bool = True) -> list[Path]:
    """summary.json, shard summaries and (with `journals`) the journals, oldest first."""
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


def state_file_problem(path: Path) -> str | None:
    """Why a summary or journal cannot be trusted ("is not JSON (...)", "cannot be read (...)"), or None."""
    return _read_state_file(path, path.parent)[1]


def _read_state_file(path: Path, folder: Path) -> tuple[list[ItemOutcome], str | None]:
    """(outcomes, None), or ([], why the file cannot be trusted)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], f"cannot be read ({getattr(exc, 'strerror', None) or exc})"
    if path.suffix == ".jsonl":
        return _journal_entries(text, folder)
    try:
        document = json.loads(text)
    except ValueError as exc:
        return [], f"is not JSON ({exc})"
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        return [], f"is not an rr-controlnet summary (it holds {_json_kind(document)})"
    outcomes = [ItemOutcome.from_document(entry, folder) for entry in document["items"]]
    if None in outcomes:
        return [], "has items that are not rr-controlnet outcomes"
    return outcomes, None


def _journal_entries(text: str, folder: Path) -> tuple[list[ItemOutcome], str | None]:
    # The last piece has no newline: empty, or a line cut short by a kill, which is ignored.
    complete = text.split("\n")[:-1]
    outcomes = []
    for number, line in enumerate(complete, start=1):
        try:
            outcome = ItemOutcome.from_document(json.loads(line), folder)
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
