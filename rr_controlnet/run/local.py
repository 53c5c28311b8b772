"""A batch's items generated in this process, on one device (run/ray spreads them over workers).

batch.run_batch drives either engine the same way: `runtime` before planning, `load` (stage 3),
`describe` for summary.json's run record, and `run` (stage 5), which records every outcome in the batch's
state as its item finishes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from rr_controlnet.models.downloads import DownloadDisplay, quiet_library_logging
from rr_controlnet.models.loading import load_batch_models, resolve_runtime
from rr_controlnet.outputs import ItemOutcome
from rr_controlnet.recording.layout import batch_properties
from rr_controlnet.run.runner import GroupRunner

if TYPE_CHECKING:
    from rr_controlnet.models.loading import LoadedModel
    from rr_controlnet.run.options import BatchOptions
    from rr_controlnet.run.plan import PlannedItem
    from rr_controlnet.run.progress import Progress
    from rr_controlnet.run.state import BatchState
    from rr_controlnet.spec import Manifest, StopRequest


class LocalEngine:
    """Items generated in this process, on one device: a group at a time, each finished item's files written
    on a worker thread that overlaps the next group's generation."""

    def __init__(self, options: BatchOptions, stop: StopRequest | None = None):

        self.options = options
        self.runtime = resolve_runtime(options.device, options.dtype)
        self.model: LoadedModel | None = None
        self.preview_decoder: object = None
        self._threads = _torch_threads(options.threads)

    def __enter__(self) -> LocalEngine:
        self._threads.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._threads.__exit__(*exc_info)

    def load(self, manifest: Manifest, log: Callable[[str], None]) -> None:
        """The model, and the preview decoder `--preview taesd` needs; missing weights are downloaded
        first, saying what comes, with the hub's bars as options.download_bars says."""

        options = self.options
        self.model, self.preview_decoder = load_batch_models(
            options.load_request(manifest, self.runtime), DownloadDisplay(options.download_bars, log)
        )

    def describe(self) -> dict[str, object]:
        """For summary.json's run record: the GPU's name."""
        if not self.runtime.device.startswith("cuda"):
            return {}
        import torch

        return {"device_name": torch.cuda.get_device_name(self.runtime.device)}

    def run(
        self,
        state: BatchState,
        manifest: Manifest,
        to_run: list[PlannedItem],
        progress: Progress,
        log: Callable[[str], None],
    ) -> None:

        runner = GroupRunner(
            self.model,
            state.folder.path,
            state.summary.recording_id,
            manifest.items,
            self.options.recording,
            state.stop,
            log,
            self.preview_decoder,
            on_outcome=state.record,
            properties=batch_properties(manifest.path, state.folder.path, time.time_ns()),
        )
        progress.start(len(to_run))
        try:
            # The libraries' advisory chatter stays off the terminal while the items generate (as while the
            # model loads).
            with (
                quiet_library_logging(),
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="rr-controlnet-finish") as finisher,
            ):
                runner.finisher = finisher
                for group in runner.prepared_groups(to_run, self.options.batch_size):
                    if isinstance(group, ItemOutcome):  # an item that could not be prepared
                        state.record(group)
                        progress.finish_items(1)
                        continue
                    if state.stop.requested:
                        break
                    for outcome in runner.run_group(group, progress):
                        state.record(outcome)
        finally:
            runner.close()
            progress.close()


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU thread count for the block (restored after); None leaves it as it is."""
    if not threads:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
