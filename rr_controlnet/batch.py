"""The batch: decide what to (re)generate, run it item by item, record it, and keep summary.json true.

Every finished item is complete on disk before the next starts (its .rrd, .png and an updated
summary.json), so an interrupted or killed batch loses only the item in flight, and a rerun into the
same folder picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rr_controlnet.errors import ItemFailed
from rr_controlnet.files import remove_stale_partials, write_atomic
from rr_controlnet.manifest import Item, Manifest, ParamsFingerprint
from rr_controlnet.report import (
    BLUEPRINT_NAME,
    OVERVIEW_NAME,
    SUMMARY_MARKDOWN_NAME,
    SUMMARY_NAME,
    BatchSummary,
    ItemOutcome,
    library_versions,
    params_markdown,
    png_text_chunks,
    prompt_markdown,
    read_previous_outcomes,
    write_summary,
)


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
    show_progress: bool = True
    save_recordings: bool = True  # False: stream to a viewer only, write no .rrd
    live_url: str | None = None  # a Rerun gRPC endpoint that receives every item live
    mirror: Any = None  # record.Mirror: one more stream that receives every item (the importer's)
    summary_to: Path | None = None  # a file to append summary.md to, such as $GITHUB_STEP_SUMMARY
    shard: Any = None  # distributed.Shard: generate only this shard's items
    offload: bool = False  # model CPU offload, for GPUs too small to hold every model
    compile_models: bool = False  # torch.compile the UNet and ControlNet (CUDA)


@dataclass
class StopRequest:
    """Set from a signal handler; the batch stops at the next denoising step."""

    signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


@dataclass
class BatchReport:
    summary: BatchSummary
    skipped: list[str] = field(default_factory=list)
    stopped_by: str | None = None


@dataclass(frozen=True)
class PlannedItem:
    item: Item
    params_hash: str


def item_files(item_id: str, with_recording: bool = True) -> list[str]:
    return [f"{item_id}.rrd", f"{item_id}.png"] if with_recording else [f"{item_id}.png"]


def plan_items(
    manifest: Manifest, dtype_name: str, shard: Any = None, recording: dict[str, Any] | None = None
) -> list[PlannedItem]:
    """Fingerprint every item (of the shard): effective parameters, model, scheduler, image bytes, dtype
    and what gets recorded (preview mode, latent thinning)."""
    planned = []
    for item in manifest.items:
        if shard is not None and not shard.owns(item.index):
            continue
        fingerprint = ParamsFingerprint(
            params=item.params,
            model=manifest.model,
            scheduler=manifest.scheduler,
            image_sha256=_file_sha256(item.image),
            extra={"dtype": dtype_name, **(recording or {})},
        )
        planned.append(PlannedItem(item, fingerprint.digest()))
    return planned


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def is_up_to_date(planned: PlannedItem, previous: dict[str, ItemOutcome], out_dir: Path) -> bool:
    earlier = previous.get(planned.item.id)
    return (
        earlier is not None
        and earlier.status == "done"
        and earlier.params_hash == planned.params_hash
        and all((out_dir / name).is_file() for name in item_files(planned.item.id))
    )


def run_batch(
    manifest: Manifest,
    options: BatchOptions,
    stop: StopRequest | None = None,
    log: Callable[[str], None] | None = None,
) -> BatchReport:
    """Generate every item that is not already up to date in options.out_dir."""
    from rr_controlnet.models import load_model, load_preview_decoder, resolve_runtime
    from rr_controlnet.record import run_recording_id, save_batch_blueprint

    stop = stop or StopRequest()
    log = log or (lambda message: print(message, file=sys.stderr))
    out_dir = Path(options.out_dir)
    shard = options.shard

    runtime = resolve_runtime(options.device, options.dtype)
    all_ids = [item.id for item in manifest.items]
    recording_settings = {"preview": options.preview, "latent_every": options.latent_every}
    planned = plan_items(manifest, runtime.dtype_name, shard, recording_settings)
    summary_name = shard.summary_name if shard else SUMMARY_NAME
    own_files = [name for p in planned for name in item_files(p.item.id)] + [summary_name]
    if shard is None:
        own_files += [BLUEPRINT_NAME, SUMMARY_MARKDOWN_NAME, OVERVIEW_NAME]
    if out_dir.exists():
        remove_stale_partials(out_dir, own_files)
    previous = {} if options.force else read_previous_outcomes(out_dir)
    outcomes = {p.item.id: ItemOutcome.pending(p.item, p.params_hash) for p in planned}
    skipped = [p.item.id for p in planned if is_up_to_date(p, previous, out_dir)]
    for item_id in skipped:
        outcomes[item_id] = previous[item_id]
    summary = BatchSummary(
        manifest=str(manifest.path.resolve()),
        model=asdict(manifest.model),
        recording_id=run_recording_id(out_dir),
        items=list(outcomes.values()),
        versions=library_versions(),
        item_ids=all_ids,
        shard=str(shard) if shard else None,
    )
    report = BatchReport(summary=summary, skipped=skipped)
    to_run = [p for p in planned if p.item.id not in skipped]

    def save_summary() -> None:
        summary.items = [outcomes[p.item.id] for p in planned]
        out_dir.mkdir(parents=True, exist_ok=True)
        write_summary(summary, out_dir, summary_name)

    def finish() -> BatchReport:  # the finisher thread is done by now
        report.stopped_by = stop.signal_name
        save_summary()
        if shard is None:  # a sharded batch is summarized once every shard is done
            write_review(summary, out_dir, options.summary_to)
        return report

    def start_outputs() -> None:
        save_summary()
        if shard is None:
            save_batch_blueprint(all_ids, out_dir / BLUEPRINT_NAME)

    if not to_run or stop.requested:
        start_outputs()
        return finish()

    from rr_controlnet.presets import has_random_weights

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
    # Only now, with the models loaded, does this run touch the folder: a model that cannot be
    # loaded leaves an earlier run's summary as it was.
    start_outputs()
    context = {
        "scheduler": type(model.pipe.scheduler).__name__,
        "device": runtime.device,
        "dtype": runtime.dtype_name,
        "preview": options.preview,
        "latent_every": options.latent_every,
    }
    runner = _ItemRunner(model, manifest, options, summary.recording_id, all_ids, context, stop, log)
    runner.preview_decoder = preview_decoder
    summary_lock = threading.Lock()

    def record_outcome(outcome: ItemOutcome) -> None:
        """Called from the main thread and the finisher thread alike: summary.json follows each item."""
        with summary_lock:
            outcomes[outcome.id] = outcome
            save_summary()

    runner.on_outcome = record_outcome
    with _progress(len(to_run), options.show_progress) as progress, runner.finisher:
        for group in _prepared_groups(runner, to_run, options.batch_size, record_outcome, log):
            if stop.requested:
                break
            for outcome in runner.run_group(group, progress):
                record_outcome(outcome)
    return finish()


def write_review(summary: BatchSummary, out_dir: Path, summary_to: Path | None) -> None:
    """overview.png and summary.md beside the recordings; summary.md appended to `summary_to` too."""
    import json

    from rr_controlnet.review import append_summary, sheet_rows_from_summary, summary_markdown, write_overview

    document = json.loads(summary.to_json())
    write_overview(out_dir, sheet_rows_from_summary(out_dir, document, canny_for=_canny_for(summary)))
    markdown = summary_markdown(document)
    write_atomic(out_dir / SUMMARY_MARKDOWN_NAME, markdown)
    if summary_to is not None:
        append_summary(markdown, summary_to)


def summarize_outputs(out_dir: Path, summary_to: Path | None = None) -> BatchSummary:
    """Merge the shard summaries of a folder into its summary.json, blueprint, summary.md and overview."""
    from rr_controlnet.distributed import SHARD_SUMMARY_GLOB, merge_shard_summaries
    from rr_controlnet.record import save_batch_blueprint

    shard_summaries = list(Path(out_dir).glob(SHARD_SUMMARY_GLOB))
    summary = BatchSummary.from_document(merge_shard_summaries(out_dir))
    write_summary(summary, out_dir)
    save_batch_blueprint(summary.item_ids, out_dir / BLUEPRINT_NAME)
    write_review(summary, out_dir, summary_to)
    for merged in shard_summaries:  # summary.json now holds all they said
        merged.unlink(missing_ok=True)
    return summary


def _canny_for(summary: BatchSummary) -> Callable[[str], Any]:
    """An item's edge map as the model saw it, recomputed from its input and recorded parameters."""
    from rr_controlnet.images import prepare_input
    from rr_controlnet.manifest import ModelSpec
    from rr_controlnet.presets import native_size

    native = native_size(ModelSpec(**summary.model))
    outcomes = {outcome.id: outcome for outcome in summary.items}

    def canny(item_id: str) -> Any:
        outcome = outcomes[item_id]
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
        except (ItemFailed, KeyError, OSError):
            return None

    return canny


@dataclass
class _Prepared:
    planned: PlannedItem
    source: Any  # images.SourceImage
    control: Any  # images.ControlImages
    size: tuple[int, int]


def _prepared_groups(
    runner: _ItemRunner,
    to_run: Sequence[PlannedItem],
    batch_size: int,
    record_outcome: Callable[[ItemOutcome], None],
    log: Callable[[str], None],
) -> Iterator[list[_Prepared]]:
    """Load and prepare items in manifest order; yield runs of compatible items, at most batch_size long."""
    from rr_controlnet.generate import batch_key

    group: list[_Prepared] = []
    for planned in to_run:
        try:
            prepared = runner.prepare(planned)
        except ItemFailed as failure:
            log(f"item {planned.item.id!r}: failed: {failure}")
            record_outcome(runner.failed_outcome(planned, str(failure), 0.0))
            continue
        if group and (
            len(group) >= batch_size
            or batch_key(group[0].planned.item.params, group[0].size) != batch_key(planned.item.params, prepared.size)
        ):
            yield group
            group = []
        group.append(prepared)
    if group:
        yield group


class _ItemRunner:
    def __init__(
        self,
        model: Any,
        manifest: Manifest,
        options: BatchOptions,
        recording_id: str,
        blueprint_ids: list[str],
        context: dict[str, Any],
        stop: StopRequest,
        log: Callable[[str], None],
    ):
        from rr_controlnet.record import batch_properties

        self.model = model
        self.manifest = manifest
        self.options = options
        self.recording_id = recording_id
        self.blueprint_ids = blueprint_ids
        self.context = context
        self.stop = stop
        self.log = log
        self.versions = library_versions()
        self.recording_properties = batch_properties(manifest.path, options.out_dir, time.time_ns())
        self.preview_decoder: Any = None
        # Encoding and writing a finished item overlaps the next item's generation.
        self.finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rr-controlnet-finish")
        self.on_outcome: Callable[[ItemOutcome], None] = lambda outcome: None

    def prepare(self, planned: PlannedItem) -> _Prepared:
        from rr_controlnet.images import prepare_input

        params = planned.item.params
        source, control, size = prepare_input(
            planned.item.image,
            params.width,
            params.height,
            params.resize,
            params.canny_low,
            params.canny_high,
            self.model.native_size,
        )
        return _Prepared(planned, source, control, size)

    def failed_outcome(self, planned: PlannedItem, reason: str, seconds: float) -> ItemOutcome:
        outcome = ItemOutcome.pending(planned.item, planned.params_hash)
        outcome.status, outcome.error, outcome.seconds = "failed", reason, round(seconds, 3)
        return outcome

    def run_group(self, group: list[_Prepared], progress: Any) -> list[ItemOutcome]:
        """Generate and record a group. Returns the items that failed or were interrupted; finished items
        complete on the finisher thread, which reports them to `on_outcome`."""
        from rr_controlnet.generate import GenerationJob, StepData, generate
        from rr_controlnet.record import ItemRecording

        started = time.perf_counter()
        out_dir = Path(self.options.out_dir)
        recordings = []
        try:
            for prepared in group:
                item_id = prepared.planned.item.id
                recording = ItemRecording(
                    item_id,
                    out_dir / f"{item_id}.rrd" if self.options.save_recordings else None,
                    self.recording_id,
                    self.blueprint_ids,
                    live_url=self.options.live_url,
                    mirror=self.options.mirror,
                    properties=self.recording_properties,
                )
                recordings.append(recording)
                item = prepared.planned.item
                recording.log_inputs(prepared.source, prepared.control.canny)
                recording.log_text(
                    prompt_markdown(item.params),
                    params_markdown(
                        item,
                        self.manifest.model,
                        {**self.context, "size": f"{prepared.size[0]}x{prepared.size[1]}"},
                        prepared.planned.params_hash,
                        self.versions,
                    ),
                )
            progress.start_item(", ".join(p.planned.item.id for p in group), group[0].planned.item.params.steps)

            def on_step(index: int, data: StepData) -> None:
                thin = data.step % self.options.latent_every == 0
                recordings[index].log_step(data.step, data.timestep, data.latent if thin else None, data.preview)
                if index == 0:
                    progress.step()

            jobs = [GenerationJob(p.planned.item.id, p.planned.item.params, p.control) for p in group]
            result = generate(
                self.model, jobs, on_step, lambda: self.stop.requested, self.options.preview, self.preview_decoder
            )
        except Exception as exc:  # noqa: BLE001 - any failure of one item must not end the batch
            for recording in recordings:
                recording.discard()
            reason = _one_line(exc)
            _free_accelerator_memory(exc)
            seconds = time.perf_counter() - started
            for prepared in group:
                self.log(f"item {prepared.planned.item.id!r}: failed: {reason}")
            progress.finish_items(len(group))
            return [self.failed_outcome(p.planned, reason, seconds) for p in group]
        if result.interrupted:
            for recording in recordings:
                recording.discard()
            return [ItemOutcome.pending(p.planned.item, p.planned.params_hash) for p in group]
        seconds = (time.perf_counter() - started) / len(group)
        outcomes = []
        for prepared, recording, image, failure in zip(group, recordings, result.images, result.failures, strict=True):
            if failure is not None:
                recording.discard()
                self.log(f"item {prepared.planned.item.id!r}: failed: {failure}")
                outcomes.append(self.failed_outcome(prepared.planned, failure, seconds))
                continue
            self.finisher.submit(self._finish, prepared, recording, image, result, seconds)
        progress.finish_items(len(group))
        return outcomes

    def _finish(self, prepared: _Prepared, recording: Any, image: Any, result: Any, seconds: float) -> ItemOutcome:
        """Encode the output PNG, record it, and complete both files (runs on the finisher thread)."""
        try:
            outcome = self._write_outputs(prepared, recording, image, result, seconds)
        except Exception as exc:  # noqa: BLE001 - a failed write fails this item only
            recording.discard()
            self.log(f"item {prepared.planned.item.id!r}: failed: {_one_line(exc)}")
            outcome = self.failed_outcome(prepared.planned, _one_line(exc), seconds)
        self.on_outcome(outcome)
        return outcome

    def _write_outputs(
        self, prepared: _Prepared, recording: Any, image: Any, result: Any, seconds: float
    ) -> ItemOutcome:
        from rr_controlnet.images import encode_png

        item = prepared.planned.item
        chunks = png_text_chunks(
            item, self.manifest.model, self.context["scheduler"], prepared.size, prepared.planned.params_hash
        )
        png = encode_png(image, chunks)
        recording.log_output(png, result.last_step, result.last_timestep)
        out_dir = Path(self.options.out_dir)
        write_atomic(out_dir / f"{item.id}.png", png)
        recording.finish()
        outcome = ItemOutcome.pending(item, prepared.planned.params_hash)
        outcome.status, outcome.seconds = "done", round(seconds, 3)
        outcome.files = item_files(item.id, self.options.save_recordings)
        return outcome


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _free_accelerator_memory(exc: BaseException) -> None:
    """After an out-of-memory error, release cached CUDA memory so the next item can start clean."""
    if "out of memory" not in str(exc).lower() and type(exc).__name__ != "OutOfMemoryError":
        return
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _Progress:
    """tqdm bars on stderr: items overall, and steps of the item(s) in flight."""

    def __init__(self, total: int, enabled: bool, stream: TextIO):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.stream = stream
        self.enabled = enabled
        self.items = tqdm(total=total, desc="items", unit="item", disable=not enabled, file=stream, position=0)
        self.steps = None

    def start_item(self, label: str, steps: int) -> None:
        if self.steps is not None:
            self.steps.close()
        self.steps = self._tqdm(
            total=steps, desc=label, unit="step", leave=False, disable=not self.enabled, file=self.stream, position=1
        )

    def step(self) -> None:
        if self.steps is not None:
            self.steps.update(1)

    def finish_items(self, count: int) -> None:
        if self.steps is not None:
            self.steps.close()
            self.steps = None
        self.items.update(count)

    def close(self) -> None:
        if self.steps is not None:
            self.steps.close()
        self.items.close()


@contextlib.contextmanager
def _progress(total: int, enabled: bool) -> Iterator[_Progress]:
    bars = _Progress(total, enabled, sys.stderr)
    try:
        yield bars
    finally:
        bars.close()
