"""A batch, in six stages: check, plan, load, start, run, finish.

    report = run_batch(load_manifest("manifests/example.yaml"), BatchOptions(out_dir=Path("out")))

1. check: no output may land on an input image, nor on a file in a folder this tool has not written; the
   output folder is made, proved writable and locked for this run (or this shard) before anything loads;
2. plan: every item fingerprinted; items whose files are intact and up to date are skipped;
3. load: the model (and a preview decoder), downloading missing weights with visible progress: here, or
   on every Ray worker (options.ray; ray_engine);
4. start: summary.json with this run's plan, and the batch's blueprint: only now does the folder change;
5. run: each group of items prepared, generated, recorded and finished; every finished item is complete
   on disk (verified .rrd and .png) and in the journal before it counts;
6. finish: the final summary.json, and for a whole batch the review files.

An interrupted, killed or full-disk batch loses only the items in flight, and a rerun into the same
folder picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rr_controlnet.errors import ManifestError, OutputWriteError, UsageError
from rr_controlnet.manifest.checks import value_problems
from rr_controlnet.manifest.fields import RunOptions
from rr_controlnet.models.presets import has_random_weights
from rr_controlnet.outputs import BatchSummary, ItemOutcome, OutputFolder
from rr_controlnet.outputs.journal import Journal, SummaryWriter, write_summary
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
from rr_controlnet.recording.write import RecordingOptions, save_batch_blueprint
from rr_controlnet.review.review_files import write_review
from rr_controlnet.run.local import LocalEngine
from rr_controlnet.run.plan import PlannedItem, plan_items, split_up_to_date
from rr_controlnet.run.progress import NoProgress, Progress
from rr_controlnet.run.ray.engine import RayEngine, RayOptions
from rr_controlnet.run.runner import pending_outcome
from rr_controlnet.spec import Manifest, Shard, StopRequest

if TYPE_CHECKING:
    from rr_controlnet.models.loading import Runtime
    from rr_controlnet.recording.viewer import LiveViewer


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs; checked on construction with the command line's rules (UsageError naming every
    wrong field). Paths may be str or Path."""

    out_dir: Path
    device: str = "auto"
    dtype: str = "auto"
    force: bool = False
    batch_size: int = 1
    allow_unsafe_weights: bool = False
    threads: int | None = None  # torch CPU threads (CPU results depend on it); None leaves torch's choice
    recording: RecordingOptions = field(default_factory=RecordingOptions)  # what is recorded and scored, where it goes
    summary_to: Path | None = None  # a file to append summary.md to, such as $GITHUB_STEP_SUMMARY
    shard: Shard | None = None  # generate only this shard's items
    offload: bool = False  # model CPU offload, for GPUs too small to hold every model
    compile_models: bool = False  # torch.compile the UNet and ControlNet (CUDA)
    download_bars: bool | None = None  # huggingface_hub's bars for weights downloaded first; None: on a terminal
    ray: RayOptions | None = None  # run the items on Ray workers rather than in this process

    def __post_init__(self) -> None:

        own = {name: getattr(self, name) for name in ("device", "dtype", "batch_size", "threads")}
        problems = value_problems(RunOptions, own, "BatchOptions")
        for name in ("out_dir", "summary_to"):
            value = getattr(self, name)
            if isinstance(value, str) and value:
                object.__setattr__(self, name, Path(value))
            elif not isinstance(value, Path) and not (value is None and name == "summary_to"):
                problems.append(f"BatchOptions.{name} must be a path (str or Path), got {value!r}")
        flags = ("force", "allow_unsafe_weights", "offload", "compile_models")
        problems += [
            f"BatchOptions.{name} must be True or False, got {getattr(self, name)!r}"
            for name in flags
            if not isinstance(getattr(self, name), bool)
        ]
        if self.download_bars not in (None, True, False):
            problems.append(f"BatchOptions.download_bars must be True, False or None, got {self.download_bars!r}")
        if not isinstance(self.recording, RecordingOptions):
            problems.append(f"BatchOptions.recording must be a RecordingOptions, got {self.recording!r}")
        if self.shard is not None and not isinstance(self.shard, Shard):
            problems.append(f"BatchOptions.shard must be a Shard (distributed.parse_shard('I/N')), got {self.shard!r}")
        if self.ray is not None:
            problems += _ray_problems(self)
        if problems:
            raise UsageError("; ".join(problems))


def _ray_problems(options: BatchOptions) -> list[str]:
    if not isinstance(options.ray, RayOptions):
        return [f"BatchOptions.ray must be a RayOptions, got {options.ray!r}"]
    problems = []
    if options.shard is not None:
        problems.append("--ray hands items out to its workers itself: it cannot be combined with --shard")
    if options.recording.live_url is not None or options.recording.mirror is not None:
        problems.append("--ray writes files only: it cannot stream to a live viewer (--spawn, --connect, --serve-web)")
    return problems


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
    with folder.locked(options.shard, log), _engine(options, stop) as engine:
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


class Engine(Protocol):
    """Where a batch's items are generated: local_engine.LocalEngine (this process) or ray_engine.RayEngine."""

    runtime: Runtime  # the device and dtype the items are made with: part of every item's fingerprint

    def load(self, manifest: Manifest, log: Callable[[str], None]) -> None:
        """Stage 3: the model, ready to generate (raises ModelLoadError or DeviceError)."""

    def describe(self) -> dict[str, object]:
        """What summary.json's run record adds about where the items ran."""

    def run(
        self, state: BatchState, manifest: Manifest, to_run: list[PlannedItem], progress: Progress, log: Callable
    ) -> None:
        """Stage 5: every item made, each outcome recorded in `state` as its item finishes."""


@contextlib.contextmanager
def _engine(options: BatchOptions, stop: StopRequest) -> Iterator[Engine]:
    """Where the items are generated: in this process (with its torch threads), or on Ray workers (connected
    to for the batch; the driver needs no torch)."""
    if options.ray is None:
        with _torch_threads(options.threads):
            yield LocalEngine(options)
        return

    with RayEngine(options, stop) as engine:
        yield engine


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
    previous = {} if options.force else folder.outcomes([summary_name(shard), journal_name(shard)], log)
    to_run, skipped = split_up_to_date(planned, previous, folder.path, recording.save, recording.adherence, log)
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
    state = BatchState(summary, planned, kept, folder, shard, stop)
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


def _run_record(runtime: Runtime, started: float) -> dict[str, object]:
    """Where the run ran and when it started (UTC); the engine adds what it ran on, _finish its wall time."""
    import datetime

    started_text = datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds")
    return {"device": runtime.device, "dtype": runtime.dtype_name, "started": started_text}


def _placed(outcome: ItemOutcome, planned: PlannedItem) -> ItemOutcome:
    """An up-to-date item's earlier outcome with its place in this run's sweep (a value inserted into the
    sweep moves the variants after it), so every grid drawn from the summary is whole."""
    return replace(outcome, sweep=planned.item.sweep)
