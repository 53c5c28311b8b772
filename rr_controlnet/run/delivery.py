"""A finished item's files: encoded in memory where the item was generated, written into the output folder
and verified where the folder is. The same code for one process and for a Ray driver, whose workers send
finished items back through the object store.

    finished = FinishedItem(outcome, {"cat.rrd": recording, "cat.png": png}, review_files)
    outcome = write_finished(OutputFolder(out_dir), finished, log)   # done, with its files' checksums
    outcome = deliver(OutputFolder(out_dir), finished, stop, log)     # the same, or failed (said in log)

An item counts as done only once every file is complete under its final name: each is written to a
temporary name, the recording read back with Rerun's reader, and only then are they renamed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rr_controlnet.errors import OutputWriteError, one_line
from rr_controlnet.outputs import ItemOutcome, OutputFolder
from rr_controlnet.outputs.files import AtomicFile
from rr_controlnet.outputs.names import RECORDING_SUFFIX
from rr_controlnet.recording.write import fill_verified
from rr_controlnet.review.pages import write_item_files
from rr_controlnet.spec import StopRequest


@dataclass
class FinishedItem:
    """A generated item, its files encoded and not yet written."""

    outcome: ItemOutcome  # done, naming its files; their checksums are taken as they are written
    files: dict[str, bytes]  # file name in the output folder -> bytes (the recording, the output PNG)
    review: dict[str, bytes] = field(default_factory=dict)  # its review files, by name in its review folder


def deliver(folder: OutputFolder, finished: FinishedItem, stop: StopRequest, log: Callable[[str], None]) -> ItemOutcome:
    """write_finished, where a failed write fails this item alone (said in `log`); a full disk also asks the
    batch to stop, since every later item would fail the same way."""
    try:
        return write_finished(folder, finished, log)
    except Exception as exc:  # noqa: BLE001 - one item's files that cannot be written fail that item only
        outcome = finished.outcome
        reason = one_line(exc)
        log(f"item {outcome.id!r}: failed: {reason}")
        if isinstance(exc, OutputWriteError) and exc.disk_full:
            stop.reason = stop.reason or f"no space left on device in {folder.path}"
        return outcome.as_failed(reason, outcome.seconds or 0.0, outcome.warnings)


def write_finished(folder: OutputFolder, finished: FinishedItem, log: Callable[[str], None]) -> ItemOutcome:
    """Write and verify a finished item's files, then give them their final names; return its outcome with
    the files' checksums. Raises OutputWriteError (a full disk told apart) with nothing left under a final
    name. Review files are written last and never fail the item (a page makes missing ones later)."""

    outcome = finished.outcome
    written: list[AtomicFile] = []
    try:
        for name, data in finished.files.items():
            target = AtomicFile(folder.path / name)
            written.append(target)
            if name.endswith(RECORDING_SUFFIX):
                fill_verified(target, data)
            else:
                target.write_bytes(data)
        for target in written:
            target.commit()
    except BaseException:
        for target in written:
            target.discard()
        raise
    outcome.checksums = folder.checksums(finished.files)
    if finished.review:
        try:
            write_item_files(folder.path, outcome.id, finished.review)
        except (OSError, ValueError) as exc:
            log(f"item {outcome.id!r}: warning: review images not written ({exc}); `rr-controlnet review` makes them")
    return outcome
