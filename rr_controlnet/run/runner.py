"""Generate and record a group of items, in four stages: prepare -> generate -> record -> finish.

1. prepare: decode the image, resize it, compute its Canny edge map, check what the text encoder reads.
2. generate: one pipeline call for the group, one generator per item; every step goes to the recordings.
3. record: inputs, prompts and parameters before the call, latents and previews at every step.
4. finish: encode the output PNG, record it, verify the recording, and only then give both files their
   final names and report the item done (on a worker thread in a batch, overlapping the next group).

Anything that goes wrong inside one item fails that item, with a one-line reason; a full disk also
asks the batch to stop, since every later item would fail the same way.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rr_controlnet.control_maps import UnitMap, aspect_warnings, scored_map, unit_maps, unit_name, units_batch_key
from rr_controlnet.errors import ScoringStopped, one_line
from rr_controlnet.generation.generate import (
    GenerationJob,
    PromptCut,
    StepData,
    batch_key,
    batch_runs,
    generate,
    prompt_cuts,
)
from rr_controlnet.images import ControlImages, SourceImage, encode_png, prepare_input
from rr_controlnet.models.control_models import UnitControlNets
from rr_controlnet.models.loading import LoadedModel
from rr_controlnet.outputs import ItemOutcome, OutputFolder
from rr_controlnet.outputs.names import image_name, recording_name
from rr_controlnet.outputs.records import Adherence
from rr_controlnet.recording.item_text import (
    library_versions,
    params_markdown,
    png_text_chunks,
    prompt_markdown,
)
from rr_controlnet.recording.layout import LaidOut, RecordingProperties, file_blueprint, items_blueprint
from rr_controlnet.recording.write import ItemRecording, RecordingOptions, StreamPool
from rr_controlnet.review.adherence import adherence_markdown, output_adherence
from rr_controlnet.review.pages import ItemImages, StepFrames, encode_item_assets
from rr_controlnet.run.delivery import FinishedItem
from rr_controlnet.run.delivery import deliver as deliver_item
from rr_controlnet.run.plan import PlannedItem
from rr_controlnet.spec import StopRequest


@dataclass
class PreparedItem:
    planned: PlannedItem
    source: SourceImage
    control: ControlImages
    size: tuple[int, int]  # (width, height) to generate at
    cuts: list[PromptCut] = field(default_factory=list)
    frames: StepFrames | None = None  # a few step previews for the review page
    maps: tuple[UnitMap, ...] = ()  # each control unit's map; empty without units

    @property
    def id(self) -> str:
        return self.planned.item.id

    @property
    def seen_prompts(self) -> dict[str, str]:
        return {cut.field: cut.read for cut in self.cuts}


def pending_outcome(planned: PlannedItem) -> ItemOutcome:
    """A planned item, not finished (yet)."""
    item = planned.item
    return ItemOutcome.pending(
        item.id,
        seed=item.params.seed,
        params={**asdict(item.params), **planned.controls},
        params_hash=planned.params_hash,
        image=str(item.image.resolve()),
        sweep=item.sweep,
        input_sha256=planned.image_sha256,
    )


def failed_outcome(planned: PlannedItem, reason: str, seconds: float, warnings: Sequence[str] = ()) -> ItemOutcome:
    return pending_outcome(planned).as_failed(reason, seconds, list(warnings))


class GroupRunner:
    """Runs groups of prepared items through one loaded model into one output folder."""

    def __init__(
        self,
        model: LoadedModel,
        out_dir: Path,
        recording_id: str,
        blueprint_items: Sequence[LaidOut],
        options: RecordingOptions | None = None,
        stop: StopRequest | None = None,
        log: Callable[[str], None] = lambda message: None,
        preview_decoder: Any = None,
        finisher: Executor | None = None,
        on_outcome: Callable[[ItemOutcome], None] = lambda outcome: None,
        properties: RecordingProperties | None = None,
        deliver: Callable[[FinishedItem], ItemOutcome] | None = None,
    ):
        self.model = model
        self.out_dir = Path(out_dir)
        self.folder = OutputFolder(out_dir)
        self.recording_id = recording_id
        self.options = options = options or RecordingOptions()
        self.stop = stop or StopRequest()
        self.log = log
        self.preview_decoder = preview_decoder
        self.finisher = finisher  # None: finish each item before run_group returns
        self.on_outcome = on_outcome
        self.properties = properties  # the batch's recording name and start time, sent by every item
        # Where finished items go: written into the folder here, or (a Ray worker) handed back to the driver.
        self.deliver = deliver or (lambda finished: deliver_item(self.folder, finished, self.stop, self.log))
        self.image_data: Mapping[Path, bytes] = {}  # input images' bytes where the files are elsewhere (Ray)
        self.step_seconds = 0.0  # time spent recording steps (latents and previews), for benchmarks
        self.controlnets = UnitControlNets(model)  # each unit's ControlNet loaded once, shared by every item
        self.file_blueprint = file_blueprint(blueprint_items)
        live_blueprint = self.file_blueprint
        if options.live_url is not None and live_blueprint is None:
            live_blueprint = items_blueprint(blueprint_items)
        self.pool = StreamPool(recording_id, options.save, options.live_url, live_blueprint)
        self.versions = library_versions()
        self.context = {
            "scheduler": type(model.pipe.scheduler).__name__,
            "device": model.runtime.device,
            "dtype": model.runtime.dtype_name,
            "preview": options.preview,
            "latent_every": options.latent_every,
        }

    # 1. prepare -------------------------------------------------------------------------------

    def prepare(self, planned: PlannedItem) -> PreparedItem | ItemOutcome:
        """The item ready to generate, or its failed outcome (an unreadable image, out of memory, ...)."""
        started = time.perf_counter()
        params = planned.item.params
        try:
            source, control, size = prepare_input(
                planned.item.image,
                params.width,
                params.height,
                params.resize,
                params.canny_low,
                params.canny_high,
                self.model.native_size,
                self.image_data.get(planned.item.image),
                multiple=self.model.size_multiple,
            )
            maps = unit_maps(planned.item.controls, source.pixels, size, params.resize, self.image_data)
            cuts = prompt_cuts(self.model.pipe, params)
        except Exception as exc:  # noqa: BLE001 - whatever goes wrong with one item fails that item only
            reason = one_line(exc)
            self.log(f"item {planned.item.id!r}: failed: {reason}")
            return failed_outcome(planned, reason, time.perf_counter() - started)
        prepared = PreparedItem(planned, source, control, size, cuts, StepFrames(params.steps), maps)
        for warning in _warnings(prepared):
            self.log(f"item {planned.item.id!r}: warning: {warning}")
        return prepared

    def prepared_groups(self, planned_items: Sequence[PlannedItem], batch_size: int):
        """Prepare items in manifest order; yield runs of items that can share a pipeline call (at most
        batch_size long), or the failed outcome of an item that could not be prepared."""
        prepared = (self.prepare(planned) for planned in planned_items)
        for run in batch_runs(prepared, batch_size, lambda p: None if isinstance(p, ItemOutcome) else _key(p)):
            yield run[0] if isinstance(run[0], ItemOutcome) else run

    # 2. generate and 3. record ----------------------------------------------------------------

    def run_group(self, group: Sequence[PreparedItem], progress: Any = None) -> list[ItemOutcome]:
        """Generate and record a group. Returns the outcomes known now: failed and interrupted items, and
        (without a finisher) the finished ones; with a finisher, those go to `on_outcome` when complete."""
        started = time.perf_counter()
        recordings: list[ItemRecording] = []
        try:
            for prepared in group:
                recordings.append(self._open_recording(prepared))
                self._record_inputs(recordings[-1], prepared)
            if progress is not None:
                progress.start_item(", ".join(p.id for p in group), group[0].planned.item.params.steps)

            def on_step(index: int, data: StepData) -> None:
                started = time.perf_counter()
                thin = data.step % self.options.latent_every == 0
                recordings[index].log_step(data.step, data.timestep, data.latent if thin else None, data.preview)
                if group[index].frames is not None:
                    group[index].frames.add(data.step, data.preview)
                self.step_seconds += time.perf_counter() - started
                if index == 0 and progress is not None:
                    progress.step()

            jobs = [GenerationJob(p.id, p.planned.item.params, p.control, p.maps) for p in group]
            result = generate(
                self.model,
                jobs,
                on_step,
                lambda: self.stop.requested,
                self.options.preview,
                self.preview_decoder,
                self.controlnets.pipeline(group[0].planned.item.controls),
            )
        except Exception as exc:  # noqa: BLE001 - a failure inside the pipeline fails this group only
            for recording in recordings:
                recording.discard()
            reason = one_line(exc)
            _free_accelerator_memory(exc)
            for prepared in group:
                self.log(f"item {prepared.id!r}: failed: {reason}")
            if progress is not None:
                progress.finish_items(len(group))
            seconds = time.perf_counter() - started
            return [failed_outcome(p.planned, reason, seconds, _warnings(p)) for p in group]
        if result.interrupted:
            for recording in recordings:
                recording.discard()
            return [pending_outcome(p.planned) for p in group]
        seconds = (time.perf_counter() - started) / len(group)
        outcomes = []
        for prepared, recording, image, failure in zip(group, recordings, result.images, result.failures, strict=True):
            if failure is not None:
                recording.discard()
                self.log(f"item {prepared.id!r}: failed: {failure}")
                outcomes.append(failed_outcome(prepared.planned, failure, seconds, _warnings(prepared)))
            elif self.finisher is not None:
                self.finisher.submit(self.finish, prepared, recording, image, result, seconds)
            else:
                outcomes.append(self.finish(prepared, recording, image, result, seconds))
        if progress is not None:
            progress.finish_items(len(group))
        return outcomes

    def close(self) -> None:
        """Close the recording streams (after the last item is finished)."""
        self.pool.close()

    def _open_recording(self, prepared: PreparedItem) -> ItemRecording:
        return ItemRecording(
            prepared.id,
            self.options.save,
            self.pool,
            self.file_blueprint,
            mirror=self.options.mirror,
            properties=self.properties,
        )

    def _record_inputs(self, recording: ItemRecording, prepared: PreparedItem) -> None:
        item = prepared.planned.item
        recording.log_inputs(prepared.source, _edge_map(prepared))
        recording.log_unit_maps(prepared.maps)
        context = {**self.context, "size": f"{prepared.size[0]}x{prepared.size[1]}"}
        recording.log_text(
            prompt_markdown(item.params, prepared.seen_prompts),
            params_markdown(
                item,
                self.model.spec,
                context,
                prepared.planned.params_hash,
                self.versions,
                _warnings(prepared),
                self.out_dir,
            ),
        )

    # 4. finish --------------------------------------------------------------------------------

    def finish(self, prepared: PreparedItem, recording: ItemRecording, image: Any, result: Any, seconds: float):
        """Encode the output PNG, close the recording, and deliver both (written and verified under their
        final names, or handed to a Ray driver); report the outcome."""
        try:
            finished = self._finished(prepared, recording, image, result, seconds)
        except ScoringStopped:
            recording.discard()
            outcome = pending_outcome(prepared.planned)
        except Exception as exc:  # noqa: BLE001 - an item that cannot be finished fails alone
            recording.discard()
            reason = one_line(exc)
            self.log(f"item {prepared.id!r}: failed: {reason}")
            outcome = failed_outcome(prepared.planned, reason, seconds, _warnings(prepared))
        else:
            outcome = self.deliver(finished)
        self.on_outcome(outcome)
        return outcome

    def _finished(
        self, prepared: PreparedItem, recording: ItemRecording, image: Any, result: Any, seconds: float
    ) -> FinishedItem:
        """The item's files in memory: its output PNG, its recording, its review files."""
        item = prepared.planned.item
        chunks = png_text_chunks(
            item,
            self.model.spec,
            self.context["scheduler"],
            prepared.size,
            prepared.planned.params_hash,
            prepared.seen_prompts,
            self.out_dir,
        )
        png = encode_png(image, chunks)
        recording.log_output(png, result.last_step, result.last_timestep)
        adherence, overlay = None, None
        if self.options.adherence and (scored_map(prepared.maps) or not prepared.maps):
            adherence, overlay = _adherence(prepared, image, lambda: self.stop.requested)
            recording.log_adherence(adherence.scalars(), overlay, adherence_markdown(adherence))
        data = recording.close()
        files = {recording_name(item.id): data} if data is not None else {}
        files[image_name(item.id)] = png
        outcome = pending_outcome(prepared.planned)
        outcome.status, outcome.seconds, outcome.files = "done", round(seconds, 3), list(files)
        outcome.size = list(prepared.size)
        outcome.warnings = _warnings(prepared)
        outcome.adherence = adherence
        frames = prepared.frames.sampled() if prepared.frames is not None else ()
        controls = [(unit_name(index, unit_map.unit), unit_map.pixels) for index, unit_map in enumerate(prepared.maps)]
        images = ItemImages(
            prepared.source.pixels, _edge_map(prepared), image, overlay, frames, chunks["parameters"], controls
        )
        try:
            review, _ = encode_item_assets(item.id, images, hashlib.sha256(png).hexdigest())
        except (OSError, ValueError) as exc:
            self.log(f"item {item.id!r}: warning: review images not made ({exc}); `rr-controlnet review` makes them")
            review = {}
        return FinishedItem(outcome, files, review)


def _edge_map(prepared: PreparedItem) -> Any:
    """The edge map the model was given, as the item's `canny` shows it: its own, or with control units its
    first canny unit's (the one adherence scores against); None when its units are all of other types."""
    if not prepared.maps:
        return prepared.control.canny
    unit_map = scored_map(prepared.maps)
    return unit_map.pixels if unit_map is not None else None


def _adherence(prepared: PreparedItem, image: Any, should_stop: Callable[[], bool]) -> tuple[Adherence, Any]:
    """The output's Canny edges against its control edge map (the item's, or its first canny unit's, each with
    its thresholds), and their overlay."""
    params = prepared.planned.item.params
    unit_map = scored_map(prepared.maps)
    if unit_map is not None:
        return output_adherence(image, unit_map.pixels, unit_map.unit.low, unit_map.unit.high, should_stop)
    return output_adherence(image, prepared.control.canny, params.canny_low, params.canny_high, should_stop)


def _key(prepared: PreparedItem) -> tuple:
    return batch_key(prepared.planned.item.params, prepared.size) + units_batch_key(prepared.planned.item.controls)


def _warnings(prepared: PreparedItem) -> list[str]:
    """What the item's files hold that it did not ask for: prompts cut short, maps of another shape."""
    image_size = (prepared.source.pixels.shape[1], prepared.source.pixels.shape[0])
    resize_mode = prepared.planned.item.params.resize
    maps = aspect_warnings(prepared.maps, image_size, prepared.size, resize_mode)
    return [cut.warning() for cut in prepared.cuts] + maps


def _free_accelerator_memory(exc: BaseException) -> None:
    """After an out-of-memory error, release cached CUDA memory so the next item can start clean."""
    if "out of memory" not in str(exc).lower() and type(exc).__name__ != "OutOfMemoryError":
        return
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def generate_and_record(
    model: Any,
    planned: Sequence[PlannedItem],
    out_dir: Path,
    recording_id: str,
    options: RecordingOptions | None = None,
    batch_size: int = 1,
    log: Callable[[str], None] = lambda message: None,
) -> list[ItemOutcome]:
    """Generate and record planned items with a loaded model, in groups of at most `batch_size`; every
    item's files are complete when this returns. The batch's per-item work, without its bookkeeping of
    the output folder (no lock, resume or summary): for benchmarks and notebooks."""
    runner = GroupRunner(model, out_dir, recording_id, [p.item for p in planned], options, log=log)
    outcomes = []
    try:
        for group in runner.prepared_groups(planned, batch_size):
            outcomes += [group] if isinstance(group, ItemOutcome) else runner.run_group(group)
    finally:
        runner.close()
    return outcomes
