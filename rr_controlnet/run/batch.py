"""A batch, in six stages: check, plan, load, start, run, finish.

    report = run_batch(load_manifest("manifests/example.yaml"), BatchOptions(out_dir=Path("out")))

1. check: no output may land on an input image, nor on a file in a folder this tool has not written; the
   output folder is made, proved writable and locked for this run (or this shard) before anything loads;
2. plan: every item fingerprinted; items whose files are intact and up to date are skipped;
3. load: the model (and a preview decoder), downloading missing weights with visible progress: here, or
   on every Ray worker (options.engine; engines.py);
4. start: summary.json with this run's plan, and the batch's blueprint: only now does the folder change;
5. run: each group of items prepared, generated, recorded and finished; every finished item is complete
   on disk (verified .rrd and .png) and in the journal before it counts;
6. finish: the final summary.json, and for a whole batch the review files.

An interrupted, killed or full-disk batch loses only the items in flight, and a rerun into the same
folder picks up where it stopped.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from rr_controlnet.errors import ManifestError, OutputWriteError
from rr_controlnet.models.presets import has_random_weights
from rr_controlnet.outputs import BatchSummary, OutputFolder
from rr_controlnet.outputs.names import (
    BLUEPRINT_NAME,
    OVERVIEW_PAGE_PATTERN,
    batch_file_names,
    item_file_names,
    journal_name,
    summary_name,
)
from rr_controlnet.recording.item_text import library_versions
from rr_controlnet.recording.layout import run_recording_id
from rr_controlnet.recording.write import save_batch_blueprint
from rr_controlnet.review.review_files import write_review
from rr_controlnet.run.engines import open_engine
from rr_controlnet.run.options import BatchOptions
from rr_controlnet.run.plan import PlannedItem, plan_items, split_up_to_date
from rr_controlnet.run.progress import NoProgress, Progress
from rr_controlnet.run.state import BatchState
from rr_controlnet.spec import Manifest, StopRequest

if TYPE_CHECKING:
    from rr_controlnet.models.loading import Runtime
    from rr_controlnet.recording.viewer import LiveViewer


@dataclass
class BatchReport:
    summary: BatchSummary
    skipped: list[str] = field(default_factory=list)
    stopped_by: str | None = None  # the signal that stopped the batch
    stop_reason: str | None = None  # why the batch stopped itself (a full disk)
    review_error: str | None = None  # why the review files could not be written
    live: LiveViewer | None = None  # the viewer the items were streamed to live (api.run_manifest)


def run_batch(
    manifest: Manifest,
    options: BatchOptions,
    stop: StopRequest | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> BatchReport:
    """Generate every item (of the shard) that is not already up to date in options.out_dir.

    `stop` can be set from elsewhere (a signal handler) to stop at the next denoising step; `progress`
    hears of every item and step; `log` receives notes and per-item failures (default: stderr).
    Raises ManifestError when an output would overwrite an input image, OutputFolderError when the
    folder cannot be used (nothing generated), ModelLoadError or DeviceError before any item.
    """
    stop = stop or StopRequest()
    progress = progress or NoProgress()
    log = log or (lambda message: print(message, file=sys.stderr))
    folder = OutputFolder(options.out_dir)
    # 1. check
    collisions = folder.collisions(manifest.items, str(manifest.path))
    if collisions:
        raise ManifestError(collisions)
    folder.refuse_foreign_files(item.id for item in manifest.items)
    with folder.locked(options.shard, log), open_engine(options, stop) as engine:
        started = time.time()
        # 2. plan
        state, report, to_run = _plan(manifest, options, engine.runtime, folder, stop, log)
        state.summary.run = _run_record(engine.runtime, started)
        if to_run and not stop.requested:
            # 3. load
            _note_random_weights(manifest, log)
            engine.load(manifest, log)
            state.summary.run.update(engine.describe())
            # 4. start
            _start(state, manifest, folder, options)
            # 5. run
            engine.run(state, manifest, to_run, progress, log)
        else:
            _start(state, manifest, folder, options)
        # 6. finish
        return _finish(state, report, folder, options, log)


def _plan(
    manifest: Manifest,
    options: BatchOptions,
    runtime: Runtime,
    folder: OutputFolder,
    stop: StopRequest,
    log: Callable[[str], None],
) -> tuple[BatchState, BatchReport, list[PlannedItem]]:
    """Fingerprint this run's items, read what earlier runs left, and split the items to make from those
    already up to date."""

    shard, recording = options.shard, options.recording
    settings = {"preview": recording.preview, "latent_every": recording.latent_every}
    planned = plan_items(manifest, runtime.dtype_name, shard, settings)
    own_names = [name for p in planned for name in item_file_names(p.item.id)] + batch_file_names(shard)
    folder.remove_stale_partials(own_names, OVERVIEW_PAGE_PATTERN if shard is None else None)
    previous = folder.outcomes([summary_name(shard), journal_name(shard)], log)
    to_run, skipped = split_up_to_date(planned, previous, folder.path, recording.save, recording.adherence, log)
    if options.force:
        # Every item is made again; until it is, an up-to-date item keeps its record (and its files stand),
        # so that a forced run stopped early loses nothing a plain rerun would have kept.
        standing = {p.item.id: previous[p.item.id] for p in skipped}
        to_run, skipped = list(planned), []
    else:
        standing = {}
    summary = BatchSummary(
        manifest=str(manifest.path.resolve()),
        model=asdict(manifest.model),
        recording_id=run_recording_id(folder.path),
        items=[],
        versions=library_versions(),
        item_ids=[item.id for item in manifest.items],
        shard=str(shard) if shard else None,
        settings={"scheduler": manifest.scheduler, "dtype": runtime.dtype_name, **settings},
    )
    kept = {p.item.id: previous[p.item.id] for p in skipped}
    state = BatchState(summary, planned, {**standing, **kept}, folder, shard, stop)
    return state, BatchReport(summary=summary, skipped=[p.item.id for p in skipped]), to_run


def _note_random_weights(manifest: Manifest, log: Callable[[str], None]) -> None:

    if has_random_weights(manifest.model):
        log(f"note: model {manifest.model.name!r} has random weights: it makes noise, not pictures")


def _start(state: BatchState, manifest: Manifest, folder: OutputFolder, options: BatchOptions) -> None:
    """From here the folder changes (a model that cannot be loaded left an earlier run's files as they were):
    summary.json with this run's plan, and batch.rbl for a whole batch."""

    state.start()
    if options.shard is None:
        save_batch_blueprint(manifest.items, folder.path / BLUEPRINT_NAME)


def _finish(
    state: BatchState, report: BatchReport, folder: OutputFolder, options: BatchOptions, log: Callable[[str], None]
) -> BatchReport:
    """The final summary.json; for a whole batch the review files (a sharded batch is reviewed once every
    shard is done, by `summarize`)."""

    state.summary.run["wall_seconds"] = round(time.perf_counter() - state.started, 3)
    state.close()
    report.stopped_by = state.stop.signal_name
    report.stop_reason = state.stop.reason
    if options.shard is None:
        try:
            write_review(state.summary, folder, options.summary_to, log)
        except OutputWriteError as exc:
            # The items are complete and summary.json says so; the review can be written again later.
            report.review_error = str(exc)
            command = shlex.join(["rr-controlnet", "summarize", str(folder.path)])
            log(f"warning: {exc}; `{command}` writes the review again")
    return report


def _run_record(runtime: Runtime, started: float) -> dict[str, object]:
    """Where the run ran and when it started (UTC); the engine adds what it ran on, _finish its wall time."""
    import datetime

    started_text = datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds")
    return {"device": runtime.device, "dtype": runtime.dtype_name, "started": started_text}
