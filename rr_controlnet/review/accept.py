"""Accepting single items of a run into the baseline: `compare BASELINE NEW --accept ID[,ID...]`.

Exactly the accepted items change in BASELINE: their files, their rows in summary.json and their review
files come from NEW; every other item stays as it was. The baseline is copied aside, changed, verified
and swapped in whole (as accepting a whole run is), so an error leaves it untouched. Each accepted item
gets a line in BASELINE/accepted.jsonl: the item, the run it came from, when, and the decision file's
SHA-256 (when one was given).

    decisions.json (from the comparison page): {"accept": ["horse", "cat"], "reject": ["dog"]}
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rr_controlnet.errors import CompareError, UsageError
from rr_controlnet.outputs import BatchSummary, ItemOutcome, OutputFolder
from rr_controlnet.outputs.journal import state_files, write_summary
from rr_controlnet.outputs.names import LOCK_GLOB, PARTIAL_GLOB, SUMMARY_NAME
from rr_controlnet.outputs.records import folder_relative, now_text
from rr_controlnet.review.compare import Comparison
from rr_controlnet.review.pages.items import item_folder

ACCEPTED_LOG: Final = "accepted.jsonl"
ACCEPTABLE: Final = ("changed", "new")


@dataclass(frozen=True)
class Decisions:
    """The items to accept, and the hash of the file that chose them ("" when given on the command line)."""

    accept: tuple[str, ...]
    source_sha256: str = ""


def parse_ids(text: str) -> Decisions:
    """`--accept ID[,ID...]`: ids separated by commas, blanks ignored."""
    ids = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not ids:
        raise UsageError("--accept: no item ids given (ID[,ID...])")
    return Decisions(ids)


def read_decisions(path: Path) -> Decisions:
    """A decisions.json the comparison page offers: {"accept": [ids], ...}; a one-line error otherwise."""
    try:
        data = Path(path).read_bytes()
        document = json.loads(data)
    except OSError as exc:
        raise UsageError(f"--accept-from {path}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"--accept-from {path}: not JSON: {exc}") from None
    accept = document.get("accept") if isinstance(document, dict) else None
    if not isinstance(accept, list) or not all(isinstance(item, str) and item for item in accept):
        raise UsageError(f'--accept-from {path}: field "accept" must be a list of item ids')
    if not accept:
        raise UsageError(f'--accept-from {path}: field "accept" lists no item')
    return Decisions(tuple(dict.fromkeys(accept)), hashlib.sha256(data).hexdigest())


def check_acceptable(comparison: Comparison, decisions: Decisions) -> None:
    """Refuse, before anything is written, ids that NEW lacks or whose status is not changed or new."""
    statuses = {item.id: item.status for item in comparison.items}
    problems = []
    for item_id in decisions.accept:
        status = statuses.get(item_id)
        if status is None or status == "missing":
            problems.append(f"{item_id}: not in the new run")
        elif status not in ACCEPTABLE:
            problems.append(f"{item_id}: {status}, only changed or new items can be accepted")
    if problems:
        raise CompareError("cannot accept " + "; ".join(problems) + "; the baseline is left as it is")


def accept_items(new: Path, baseline: Path, decisions: Decisions) -> list[str]:
    """Copy the accepted items from `new` into `baseline` (staged aside, verified, swapped in whole);
    returns the accepted ids. CompareError names what went wrong; the baseline is then as it was."""
    new_folder, target = OutputFolder(new), Path(baseline).resolve()
    incoming = target.with_name(f".{target.name}.accepting")
    outgoing = target.with_name(f".{target.name}.replaced")
    fresh = new_folder.read().by_id()
    try:
        for leftover in (incoming, outgoing):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.copytree(target, incoming, ignore=shutil.ignore_patterns(LOCK_GLOB, PARTIAL_GLOB))
        staged = OutputFolder(incoming)
        summary = staged.read()
        for item_id in decisions.accept:
            _copy_item(fresh[item_id], new_folder.path, incoming)
        merged = _with_outcomes(summary, [fresh[item_id] for item_id in decisions.accept])
        for state in state_files(incoming):  # folded into the one summary.json
            state.unlink()
        write_summary(merged, incoming)
        _verify(staged, merged, decisions.accept)
        _log_accepted(incoming / ACCEPTED_LOG, decisions, folder_relative(str(new_folder.path.resolve()), target))
        target.rename(outgoing)
        incoming.rename(target)
    except OSError as exc:
        if outgoing.exists() and not target.exists():
            outgoing.rename(target)
        shutil.rmtree(incoming, ignore_errors=True)
        raise CompareError(f"baseline {baseline}: cannot accept the items: {exc.strerror or exc}") from None
    except CompareError:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    shutil.rmtree(outgoing, ignore_errors=True)
    return list(decisions.accept)


def _copy_item(outcome: ItemOutcome, source: Path, target: Path) -> None:
    """An item's files (modification times kept, so their checksums hold) and its review files."""
    for name in outcome.files:
        shutil.copy2(source / name, target / name)
    review = item_folder(source, outcome.id)
    if review.is_dir():
        shutil.rmtree(item_folder(target, outcome.id), ignore_errors=True)
        shutil.copytree(review, item_folder(target, outcome.id))


def _with_outcomes(summary: BatchSummary, accepted: Iterable[ItemOutcome]) -> BatchSummary:
    """The summary with these outcomes in place of its own (an item it lacks is added at the end)."""
    by_id = {outcome.id: outcome for outcome in accepted}
    items = [by_id.pop(outcome.id, outcome) for outcome in summary.items]
    items += by_id.values()
    summary.items = items
    summary.item_ids = [outcome.id for outcome in items]
    return summary


def _verify(staged: OutputFolder, expected: BatchSummary, accepted: Sequence[str]) -> None:
    """The staged baseline reads back as `expected`, and every accepted item's files are intact."""
    read_back = staged.read().by_id()
    for outcome in expected.items:
        if read_back.get(outcome.id) != outcome:
            raise CompareError(f"{SUMMARY_NAME}: {outcome.id} did not read back as written; the baseline is left")
    for item_id in accepted:
        damage = staged.damage(read_back[item_id])
        if damage is not None:
            raise CompareError(f"{item_id}: the copy is damaged ({damage}); the baseline is left as it was")


def _log_accepted(path: Path, decisions: Decisions, new: str) -> None:
    """A line per accepted item: the run it came from (`new`, relative to the baseline), when, the decisions."""
    made = now_text()
    with open(path, "a", encoding="utf-8") as log:
        for item_id in decisions.accept:
            entry = {"item": item_id, "from": new, "time": made, "decisions_sha256": decisions.source_sha256}
            log.write(json.dumps(entry) + "\n")
