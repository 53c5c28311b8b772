"""A batch: check and lock the output folder, plan, load the model, run every group, keep the summary true.

    report = run_batch(load_manifest("manifests/example.yaml"), BatchOptions(out_dir=Path("out")))

Each finished item is complete on disk (verified .rrd and .png) and in the journal before it counts,
so an interrupted, killed or full-disk batch loses only the items in flight, and a rerun into the
same folder picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rr_controlnet.errors import ManifestError, OutputWriteError
from rr_controlnet.files import remove_stale_partials, write_atomic
from rr_controlnet.folder_lock import held_shard_locks
from rr_controlnet.journal import (
    Journal,
    SummaryWriter,
    merge_shard_summaries,
    read_outcomes,
    shard_state_files,
    write_summary,
)
from rr_controlnet.outputs import (
    BLUEPRINT_NAME,
    OVERVIEW_PAGE_PATTERN,
    SUMMARY_MARKDOWN_NAME,
    BatchSummary,
    ItemOutcome,
    batch_file_names,
    item_file_names,
    journal_name,
    output_collisions,
    output_folder,
    summary_name,
)
from rr_controlnet.plan import PlannedItem, plan_items, split_up_to_date
from rr_controlnet.progress import NoProgress, Progress
from rr_controlnet.report import library_versions
from rr_controlnet.spec import Manifest, StopRequest


@dataclass(frozen=True)
class BatchOptions:
    out_dir: Path
    device: str = "auto"
    dtype: str = "auto"
    force: bool = False
    preview: str = "x0"
    latent_every: int = 1
    batch_size: int = 1
    allow_unsafe_weights: bool = False
    threads: int | None = None  # torch CPU threads (CPU results depend on it); None leaves torch's choice
    save_recordings: bool = True  # False: stream to a viewer only, write no .rrd
    live_url: str | None = None  # a Rerun gRPC endpoint that receives every item live
    mirror: Any = None  # record.Mirror: one more stream that receives every item (the importer's)
    summary_to: Path | None = None  # a file to append summary.md to, such as $GITHUB_STEP_SUMMARY
    shard: Any = None  # distributed.Shard: generate only this shard's items
    adherence: bool = True  # score each output's edges against its control map
    offload: bool = False  # model CPU offload, for GPUs too small to hold every model
    compile_models: bool = False  # torch.compile the UNet and ControlNet (CUDA)


@dataclass
class BatchReport:
    summary: BatchSummary
    skipped: list[str] = field(default_factory=list)
    stopped_by: str | None = None  # the signal that stopped the batch
    stop_reason: str | None = None  # why the batch stopped itself (a full disk)
    review_error: str | None = None  # why overview.png or summary.md could not be written
    live: Any = None  # viewer.LiveViewer when the items were streamed live (api.run_manifest)


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
    out_dir = Path(options.out_dir)
    collisions = output_collisions(manifest.items, out_dir, str(manifest.path))
    if collisions:
        raise ManifestError(collisions)
    with output_folder(out_dir, options.shard, log), _torch_threads(options.threads):
        return _run_locked(manifest, options, stop, progress, log)


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


def _run_locked(
    manifest: Manifest, options: BatchOptions, stop: StopRequest, progress: Progress, log: Callable[[str], None]
) -> BatchReport:
    from rr_controlnet.layout import batch_properties, run_recording_id
    from rr_controlnet.loading import load_model, load_preview_decoder, resolve_runtime
    from rr_controlnet.record import save_batch_blueprint

    out_dir, shard = Path(options.out_dir), options.shard
    started = time.time()
    runtime = resolve_runtime(options.device, options.dtype)
    recording_settings = {"preview": options.preview, "latent_every": options.latent_every}
    planned = plan_items(manifest, runtime.dtype_name, shard, recording_settings)
    own_state = [summary_name(shard), journal_name(shard)]
    own_names = [name for p in planned for name in item_file_names(p.item.id)] + batch_file_names(shard)
    remove_stale_partials(out_dir, own_names, OVERVIEW_PAGE_PATTERN if shard is None else None)
    previous = {} if options.force else read_outcomes(out_dir, own_state, log)
    to_run, skipped = split_up_to_date(planned, previous, out_dir, options.save_recordings, options.adherence, log)
    all_ids = [item.id for item in manifest.items]
    sweeps = {item.id: item.sweep for item in manifest.items if item.sweep is not None}
    state = _BatchState(
        BatchSummary(
            manifest=str(manifest.path.resolve()),
            model=asdict(manifest.model),
            recording_id=run_recording_id(out_dir),
            items=[],
            versions=library_versions(),
            item_ids=all_ids,
            shard=str(shard) if shard else None,
            run=_run_record(runtime, started),
        ),
        planned,
        {p.item.id: previous[p.item.id] for p in skipped},
        out_dir,
        shard,
        stop,
    )
    report = BatchReport(summary=state.summary, skipped=[p.item.id for p in skipped])

    def start_outputs() -> None:
        state.start()
        if shard is None:
            save_batch_blueprint(all_ids, out_dir / BLUEPRINT_NAME, sweeps)

    if not to_run or stop.requested:
        start_outputs()
        return _finish(state, report, options, log)

    from rr_controlnet.presets import has_random_weights
    from rr_controlnet.runner import GroupRunner, RecordingOptions

    if has_random_weights(manifest.model):
        log(f"note: model {manifest.model.name!r} has random weights: it makes noise, not pictures")
    model = load_model(
        manifest.model,
        runtime,
        manifest.scheduler,
        options.allow_unsafe_weights,
        options.offload,
        options.compile_models,
    )
    preview_decoder = None
    if options.preview == "taesd":
        preview_decoder = load_preview_decoder(manifest.model, runtime, options.allow_unsafe_weights)
    # Only now, with the models loaded, does this run change the folder's contents: a model that
    # cannot be loaded leaves an earlier run's summary as it was.
    start_outputs()
    recording_options = RecordingOptions(
        options.preview,
        options.latent_every,
        options.save_recordings,
        options.live_url,
        options.mirror,
        options.adherence,
    )
    runner = GroupRunner(
        model,
        out_dir,
        state.summary.recording_id,
        all_ids,
        recording_options,
        stop,
        log,
        preview_decoder,
        on_outcome=state.record,
        properties=batch_properties(manifest.path, out_dir, time.time_ns()),
        sweeps=sweeps,
    )
    progress.start(len(to_run))
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rr-controlnet-finish") as finisher:
            runner.finisher = finisher  # encoding and writing a finished item overlaps the next item
            for group in runner.prepared_groups(to_run, options.batch_size):
                if isinstance(group, ItemOutcome):
                    state.record(group)
                    progress.finish_items(1)
                    continue
                if stop.requested:
                    break
                for outcome in runner.run_group(group, progress):
                    state.record(outcome)
    finally:
        runner.close()
        progress.close()
    return _finish(state, report, options, log)


class _BatchState:
    """Every planned item's latest outcome, kept in the journal at once and in summary.json soon after."""

    def __init__(
        self,
        summary: BatchSummary,
        planned: list[PlannedItem],
        kept: dict[str, ItemOutcome],
        out_dir: Path,
        shard: Any,
        stop: StopRequest,
    ):
        from rr_controlnet.runner import pending_outcome

        self.summary = summary
        self.started = time.perf_counter()  # the run's wall time counts from here: loading included
        self.order = [p.item.id for p in planned]
        self.outcomes = {p.item.id: kept.get(p.item.id) or pending_outcome(p) for p in planned}
        self.out_dir = Path(out_dir)
        self.summary_file = summary_name(shard)
        self.journal = Journal(self.out_dir / journal_name(shard))
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
            write_summary(self.summary, self.out_dir, self.summary_file)

    def close(self) -> None:
        """The final summary.json; the journal is then redundant."""
        self.writer.close()
        self.writer.write_now()
        self.journal.remove()


def _run_record(runtime: Any, started: float) -> dict[str, Any]:
    """Where the run ran and when it started (UTC); _finish adds its wall time."""
    import datetime

    started_text = datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds")
    run = {"device": runtime.device, "dtype": runtime.dtype_name, "started": started_text}
    if runtime.device.startswith("cuda"):
        import torch

        run["device_name"] = torch.cuda.get_device_name(runtime.device)
    return run


def _finish(state: _BatchState, report: BatchReport, options: BatchOptions, log: Callable[[str], None]) -> BatchReport:
    state.summary.run["wall_seconds"] = round(time.perf_counter() - state.started, 3)
    state.close()
    report.stopped_by = state.stop.signal_name
    report.stop_reason = state.stop.reason
    if options.shard is None:  # a sharded batch is summarized once every shard is done
        try:
            write_review(state.summary, Path(options.out_dir), options.summary_to)
        except OutputWriteError as exc:
            # The items are complete and summary.json says so; the review can be written again later.
            report.review_error = str(exc)
            log(f"warning: {exc}; `rr-controlnet summarize {options.out_dir}` writes the review again")
    return report


def write_review(summary: BatchSummary, out_dir: Path, summary_to: Path | None) -> None:
    """overview.png (paged for large batches), summary.md and the review page (index.html) beside the
    recordings; summary.md also appended to `summary_to`."""
    from rr_controlnet.markdown import append_summary
    from rr_controlnet.review import summary_markdown, write_overview_pages
    from rr_controlnet.review_page import write_review_page

    document = summary.to_document()
    write_overview_pages(out_dir, document, canny_for=_canny_for(summary))
    markdown = summary_markdown(document)
    write_atomic(out_dir / SUMMARY_MARKDOWN_NAME, markdown)
    write_review_page(out_dir, document)
    if summary_to is not None:
        append_summary(markdown, summary_to)


def summarize_outputs(
    out_dir: Path, summary_to: Path | None = None, log: Callable[[str], None] | None = None
) -> BatchSummary:
    """Merge the shard summaries and journals of a folder into its summary.json, blueprint, summary.md and
    overview; shard files are removed once merged, unless a shard is still running."""
    from rr_controlnet.record import save_batch_blueprint

    log = log or (lambda message: print(message, file=sys.stderr))
    out_dir = Path(out_dir)
    summary = BatchSummary.from_document(merge_shard_summaries(out_dir, log))
    write_summary(summary, out_dir)
    sweeps = {outcome.id: outcome.sweep for outcome in summary.items if outcome.sweep}
    save_batch_blueprint(summary.item_ids, out_dir / BLUEPRINT_NAME, sweeps)
    write_review(summary, out_dir, summary_to)
    running = held_shard_locks(out_dir)
    if running:
        log(f"note: still running: {', '.join(running)}; their shard files are kept and merged next time")
        return summary
    for merged in shard_state_files(out_dir):  # summary.json now holds all they said
        merged.unlink(missing_ok=True)
    return summary


def _canny_for(summary: BatchSummary) -> Callable[[str], Any]:
    """An item's edge map as the model saw it, recomputed from its input and recorded parameters."""
    from rr_controlnet.errors import ItemFailed
    from rr_controlnet.images import prepare_input
    from rr_controlnet.presets import native_size
    from rr_controlnet.spec import ModelSpec

    try:
        native = native_size(ModelSpec(**summary.model))
    except TypeError:
        native = 512
    outcomes = {outcome.id: outcome for outcome in summary.items}

    def canny(item_id: str) -> Any:
        outcome = outcomes.get(item_id)
        if outcome is None:
            return None
        params = outcome.params
        try:
            _, control, _ = prepare_input(
                Path(outcome.image),
                params["width"],
                params["height"],
                params["resize"],
                params["canny_low"],
                params["canny_high"],
                native,
            )
            return control.canny
        except (ItemFailed, KeyError, OSError, TypeError, ValueError):
            return None

    return canny
