"""A running batch's state: every planned item's latest outcome, in the journal at once and in summary.json
soon after. Both engines record outcomes here as items finish."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from rr_controlnet.errors import OutputWriteError
from rr_controlnet.outputs import BatchSummary, ItemOutcome, OutputFolder
from rr_controlnet.outputs.journal import Journal, SummaryWriter, write_summary
from rr_controlnet.outputs.names import journal_name, summary_name
from rr_controlnet.run.plan import PlannedItem
from rr_controlnet.run.runner import pending_outcome
from rr_controlnet.spec import Shard, StopRequest


class BatchState:
    """Every planned item's latest outcome, kept in the journal at once and in summary.json soon after."""

    def __init__(
        self,
        summary: BatchSummary,
        planned: list[PlannedItem],
        kept: dict[str, ItemOutcome],
        folder: OutputFolder,
        shard: Shard | None,
        stop: StopRequest,
    ):

        self.summary = summary
        self.started = time.perf_counter()  # the run's wall time counts from here: loading included
        self.order = [p.item.id for p in planned]
        self.outcomes = {
            p.item.id: _placed(kept[p.item.id], p) if p.item.id in kept else pending_outcome(p) for p in planned
        }
        self.folder = folder
        self.summary_file = summary_name(shard)
        self.journal = Journal(folder.path / journal_name(shard))
        self.stop = stop
        self.lock = threading.RLock()
        self.writer = SummaryWriter(self.write_summary, self.lock)

    def start(self) -> None:
        """summary.json with this run's plan; it holds everything the journal held, so that starts empty."""
        self.writer.write_now()
        self.journal.remove()

    def record(self, outcome: ItemOutcome) -> None:
        """Called from the batch's thread and the finisher thread alike."""
        with self.lock:
            self.outcomes[outcome.id] = outcome
            try:
                self.journal.append(outcome)
                self.writer.changed()
            except OutputWriteError as exc:
                self.stop.reason = self.stop.reason or str(exc)

    def write_summary(self) -> None:
        with self.lock:
            self.summary.items = [self.outcomes[item_id] for item_id in self.order]
            write_summary(self.summary, self.folder.path, self.summary_file)

    def close(self) -> None:
        """The final summary.json; the journal is then redundant."""
        self.writer.close()
        self.writer.write_now()
        self.journal.remove()


def _placed(outcome: ItemOutcome, planned: PlannedItem) -> ItemOutcome:
    """An up-to-date item's earlier outcome with its place in this run's sweep (a value inserted into the
    sweep moves the variants after it), so every grid drawn from the summary is whole."""
    return replace(outcome, sweep=planned.item.sweep)
