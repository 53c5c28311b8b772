"""What an engine is: where a batch's items are generated. run_batch drives every engine the same way:
entered as a context (connections, threads), `runtime` before planning, `load` (stage 3), `describe` for
summary.json's run record, and `run` (stage 5), which records every outcome in the batch's state as its
item finishes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from rr_controlnet.models.loading import Runtime
from rr_controlnet.run.plan import PlannedItem
from rr_controlnet.run.progress import Progress
from rr_controlnet.run.state import BatchState
from rr_controlnet.spec import Manifest


class Engine(Protocol):
    """Where a batch's items are generated: engines.ENGINES lists them (this process, Ray)."""

    runtime: Runtime  # the device and dtype the items are made with: part of every item's fingerprint

    def load(self, manifest: Manifest, log: Callable[[str], None]) -> None:
        """Stage 3: the model, ready to generate (raises ModelLoadError or DeviceError)."""

    def describe(self) -> dict[str, object]:
        """What summary.json's run record adds about where the items ran."""

    def run(
        self, state: BatchState, manifest: Manifest, to_run: list[PlannedItem], progress: Progress, log: Callable
    ) -> None:
        """Stage 5: every item made, each outcome recorded in `state` as its item finishes."""

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc_info: object) -> None: ...
