"""The Python API: everything the command line does, as functions that return results and raise errors.

    from pathlib import Path
    from rr_controlnet.api import BatchOptions, Overrides, load_manifest, run_manifest

    manifest = load_manifest("manifests/example.yaml", Overrides(model="tiny-sd15", steps=4))
    report = run_manifest(manifest, BatchOptions(out_dir=Path("out")))
    print(report.summary.counts())  # {'done': 4, 'failed': 0, 'pending': 0}

- a manifest: load_manifest, parse_manifest, validate_manifest (outputs checked too), manifest_schema;
- a batch: run_manifest (ranks and live viewers), run_batch, BatchOptions, RecordingOptions, RayOptions
  (items on Ray workers), Overrides, StopRequest (stop_on_signals sets it), ProgressBars, parse_shard;
  generate_and_record with a model you loaded (loading.load_model), without the folder's bookkeeping;
- its results: read_summary, read_outcomes, summarize_outputs, write_review_page, serve_review, viewer_command;
- against a baseline: compare_folders, compare_runs (report, PR comment, accepting: parse_ids, read_decisions);
- scoring your own outputs: adherence; model weights: fetch_models, model_statuses, models_table, cache_folders.

Errors are rr_controlnet.errors types: ManifestError (every problem, located), OutputFolderError,
ModelLoadError (WeightsUnavailable: offline or the hub out of reach), DeviceError, OutputWriteError,
UsageError, ClusterError (a Ray cluster out of reach); per-item failures are outcomes, not errors.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from rr_controlnet import __version__
from rr_controlnet.errors import ManifestError, OutputFolderError, UsageError, WeightsUnavailable
from rr_controlnet.manifest.document import load_manifest, parse_manifest
from rr_controlnet.manifest.fields import DEVICES, DTYPES, PREVIEW_MODES, RunOptions
from rr_controlnet.manifest.model_targets import models_named, unit_repos, units_hub_repos
from rr_controlnet.manifest.overrides import Overrides
from rr_controlnet.manifest.schema import schema_text
from rr_controlnet.manifest.sweeps import DEFAULT_MAX_ITEMS
from rr_controlnet.models import status as model_status
from rr_controlnet.models.downloads import DownloadDisplay
from rr_controlnet.models.hub import cache_folders
from rr_controlnet.models.loading import resolve_runtime
from rr_controlnet.models.presets import PRESETS
from rr_controlnet.models.status import ComponentStatus, FetchOutcome, models_table
from rr_controlnet.outputs import BatchSummary, ItemOutcome, OutputFolder, default_out_dir
from rr_controlnet.outputs.names import SHARD_SUMMARY_GLOB, SUMMARY_NAME
from rr_controlnet.outputs.records import Adherence, EdgeScores
from rr_controlnet.recording.viewer import DEFAULT_GRPC_URL, start_live_viewer, viewer_command
from rr_controlnet.recording.write import RecordingOptions
from rr_controlnet.review.accept import Decisions, accept_items, check_acceptable, parse_ids, read_decisions
from rr_controlnet.review.adherence import image_adherence
from rr_controlnet.review.comment import write_comment
from rr_controlnet.review.compare import (
    MAX_COSINE_DISTANCE,
    MAX_MEAN_DIFFERENCE,
    CompareError,
    Comparison,
    Thresholds,
    compare_folders,
)
from rr_controlnet.review.compare_files import check_baseline_update, comparison_markdown, write_comparison
from rr_controlnet.review.compare_files import update_baseline as accept
from rr_controlnet.review.markdown import append_summary
from rr_controlnet.review.pages import write_review_links
from rr_controlnet.review.pages import write_review_page as write_page
from rr_controlnet.review.review_files import summarize_outputs
from rr_controlnet.review.serve import serve_review
from rr_controlnet.run import memory
from rr_controlnet.run.batch import BatchReport, run_batch
from rr_controlnet.run.distributed import ProcessGroup, device_for, launched_process
from rr_controlnet.run.options import BatchOptions, LocalOptions, live_refused
from rr_controlnet.run.original import ORIGINAL_NEGATIVE_PROMPT, ORIGINAL_PROMPT, original_manifest
from rr_controlnet.run.plan import plan_items
from rr_controlnet.run.progress import NoProgress, Progress, ProgressBars
from rr_controlnet.run.ray.options import RayOptions
from rr_controlnet.run.runner import GroupRunner, generate_and_record
from rr_controlnet.run.signals import EXIT_CODES_BY_SIGNAL, stop_on_signals
from rr_controlnet.spec import GenerationParams, Item, Manifest, ModelSpec, Shard, StopRequest, parse_shard

PRESET_NAMES: Final = tuple(PRESETS)

__all__ = [
    "DEFAULT_GRPC_URL",
    "DEFAULT_MAX_ITEMS",
    "DEVICES",
    "DTYPES",
    "EXIT_CODES_BY_SIGNAL",
    "MAX_COSINE_DISTANCE",
    "MAX_MEAN_DIFFERENCE",
    "ORIGINAL_NEGATIVE_PROMPT",
    "ORIGINAL_PROMPT",
    "PRESET_NAMES",
    "PREVIEW_MODES",
    "Adherence",
    "BatchOptions",
    "BatchReport",
    "BatchSummary",
    "CompareError",
    "Comparison",
    "ComparisonReport",
    "ComponentStatus",
    "Decisions",
    "EdgeScores",
    "FetchOutcome",
    "GenerationParams",
    "GroupRunner",
    "Item",
    "ItemOutcome",
    "LiveViewing",
    "LocalOptions",
    "Manifest",
    "ModelSpec",
    "NoProgress",
    "OutputFolder",
    "Overrides",
    "Progress",
    "ProgressBars",
    "RayOptions",
    "RecordingOptions",
    "Shard",
    "StopRequest",
    "Thresholds",
    "__version__",
    "adherence",
    "cache_folders",
    "compare_folders",
    "compare_runs",
    "default_out_dir",
    "fetch_models",
    "generate_and_record",
    "limit_malloc_arenas",
    "load_manifest",
    "manifest_schema",
    "model_statuses",
    "models_table",
    "original_manifest",
    "parse_ids",
    "parse_manifest",
    "parse_shard",
    "plan_items",
    "read_decisions",
    "read_outcomes",
    "read_summary",
    "run_batch",
    "run_manifest",
    "run_option_range",
    "serve_review",
    "stop_on_signals",
    "summarize_outputs",
    "validate_manifest",
    "viewer_command",
    "write_review_page",
]


@dataclass(frozen=True)
class LiveViewing:
    """Stream items live: "spawn" a viewer, "connect" to one at `url`, "serve-web" on `bind` (loopback)."""

    mode: str
    url: str | None = None
    bind: str | None = None


def run_manifest(
    manifest: Manifest | str | Path,
    options: BatchOptions,
    live: LiveViewing | None = None,
    stop: StopRequest | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> BatchReport:
    """Run a batch as `rr-controlnet batch` does.

    Under torchrun or `accelerate launch` (RANK/WORLD_SIZE set), this process takes its shard of the
    items on its own device, and rank 0 merges every shard's results once all are done. With `live`,
    a viewer is started or reached first; `report.live` then holds it (a served web viewer lives as
    long as that object). `manifest` may be a path, loaded as it is (no overrides).
    """
    manifest = _as_manifest(manifest)
    if not isinstance(options, BatchOptions):
        raise UsageError(f"options must be a BatchOptions, got {type(options).__name__}")

    process = launched_process()
    if process is not None:
        if options.shard is not None:
            raise UsageError("--shard cannot be combined with a launcher's ranks (RANK/WORLD_SIZE)")
        if not isinstance(options.engine, LocalOptions):
            raise UsageError(
                f"--{options.engine.name} runs one driver for the whole batch: start it without a launcher's ranks"
            )
        options = replace(options, shard=process.shard, device=device_for(process, options.device))
    if not options.recording.save and live is None:
        raise UsageError("writing no recordings needs a live viewer (--spawn, --connect or --serve-web)")
    if live is not None and not options.engine.streams_live:
        raise UsageError(live_refused(options.engine.name))
    viewer = None
    if live is not None:
        viewer = start_live_viewer(
            live.mode == "spawn",
            live.url if live.mode == "connect" else None,
            live.mode == "serve-web",
            manifest,
            options.out_dir,
            live.bind,
        )
        options = replace(options, recording=replace(options.recording, live_url=viewer.url))
        if log is not None:
            log(viewer.description)
    if process is None:
        report = run_batch(manifest, options, stop, progress, log)
    else:
        with ProcessGroup(process) as group:
            report = run_batch(manifest, options, stop, progress, log)
            group.barrier()
            if process.is_coordinator:
                report.summary = summarize_outputs(options.out_dir, options.summary_to, log)
    report.live = viewer
    return report


def _as_manifest(manifest: Any) -> Manifest:
    if isinstance(manifest, (str, Path)):
        return load_manifest(manifest)
    if not isinstance(manifest, Manifest):
        raise UsageError(f"manifest must be a Manifest (see load_manifest) or a path, got {type(manifest).__name__}")
    return manifest


def adherence(output: Any, control: Any, low: int = 100, high: int = 200, resize: str = "crop") -> Adherence:
    """Score how closely an output follows its control, as a batch scores its items.

    `output` and `control`: image paths, PIL images or numpy arrays. The control is an image (resized to
    the output's size by `resize`, then its Canny edges taken at `low`/`high`) or an edge map (one
    channel of 0 and 255, or bool) of the output's size. Returns strict and tolerant precision, recall and
    F1 and the edge maps' SSIM; raises UsageError naming a wrong argument.
    """
    return image_adherence(output, control, low, high, resize)


def fetch_models(
    targets: Sequence[str],
    dtype: str = "auto",
    bars: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> list[FetchOutcome]:
    """Get onto this machine what the presets or manifests `targets` load, as `rr-controlnet fetch` does: their
    hub repos' files for runs in `dtype` into the Hugging Face cache (fp16 files where published, for fp16),
    the tiny presets built into their folder; nothing else. `bars`: the hub's download bars (None: on a
    terminal); `log` hears a notice before downloading and a line per repo and per model.

    Raises ManifestError for a manifest with problems, UsageError for a target that is neither,
    ModelLoadError (WeightsUnavailable when offline or the hub is out of reach) naming every missing repo.
    """
    named = models_named(targets)
    try:
        return model_status.fetch_models(named, _dtype_name(dtype), DownloadDisplay(bars, log), unit_repos(targets))
    except WeightsUnavailable as exc:
        raise WeightsUnavailable(
            exc.reason,
            exc.missing,
            "Fetch where the hub can be reached (HF_HUB_OFFLINE unset), then copy the Hugging Face cache here "
            "(or set HF_HOME to it)",
        ) from None


def model_statuses(targets: Sequence[str] = (), dtype: str = "auto") -> list[ComponentStatus]:
    """Each component of the presets or manifests `targets` (every preset when none) as this machine holds it
    for runs in `dtype`: repo or path, the weights that would load, whether it is cached and its size."""

    named = models_named(targets or list(PRESETS))
    return model_status.model_statuses(named, _dtype_name(dtype), units_hub_repos(targets))


def _dtype_name(dtype: str) -> str:
    """ "auto" as a batch on this machine resolves it (fp16 with CUDA, fp32 without); other names as they are."""
    if dtype != "auto":
        return dtype

    return resolve_runtime("auto", "auto").dtype_name


def limit_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas for a batch process (memory that fragments across threads otherwise); call
    it before the model libraries start their threads. True where the setting took."""

    return memory.limit_malloc_arenas()


# --- a manifest, before anything runs ------------------------------------------------------------


def validate_manifest(
    path: str | Path,
    overrides: Overrides | None = None,
    out_dir: str | Path | None = None,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> Manifest:
    """The manifest, checked as `rr-controlnet validate` does: every field, sweep and image file, and that
    no output would land on an input image or on someone else's file in `out_dir` (default: beside the
    manifest). Raises ManifestError listing every problem, OutputFolderError for someone else's files;
    loads no model."""
    manifest = load_manifest(path, overrides, max_items=max_items)
    folder = OutputFolder(out_dir or default_out_dir(Path(path)))
    collisions = folder.collisions(manifest.items, str(path))
    if collisions:
        raise ManifestError(collisions)
    folder.refuse_foreign_files(item.id for item in manifest.items)
    return manifest


def manifest_schema() -> str:
    """The manifest's JSON Schema, as text (`rr-controlnet schema`)."""

    return schema_text()


def run_option_range(name: str) -> tuple[int | None, int | None]:
    """The (lowest, highest) value a numeric run option takes (latent_every, batch_size, threads)."""
    bounds = {type(item).__name__: item for item in RunOptions.model_fields[name].metadata}
    return getattr(bounds.get("Ge"), "ge", None), getattr(bounds.get("Le"), "le", None)


# --- what a run left ------------------------------------------------------------------------------


def read_summary(out_dir: str | Path) -> BatchSummary:
    """The batch an output folder records, merged across shards and journals, every item in manifest
    order. Raises OutputFolderError when the folder holds none of this tool's records."""
    return OutputFolder(out_dir).read()


def read_outcomes(out_dir: str | Path) -> dict[str, ItemOutcome]:
    """The newest outcome of every item an output folder records, by id."""
    return OutputFolder(out_dir).outcomes()


# --- against a baseline ---------------------------------------------------------------------------


@dataclass
class ComparisonReport:
    comparison: Comparison
    written: list[Path] = field(default_factory=list)  # compare.json, compare.md, compare.rrd
    baseline_updated: bool = False
    accepted: list[str] = field(default_factory=list)  # the items accepted into the baseline


def compare_runs(
    baseline: str | Path,
    new: str | Path,
    thresholds: Thresholds | None = None,
    out_dir: str | Path | None = None,
    summary_to: str | Path | None = None,
    update_baseline: bool = False,
    accept_only: Decisions | None = None,
    comment_to: str | Path | None = None,
    artifact_url: str = "",
) -> ComparisonReport:
    """`rr-controlnet compare`: the report in `out_dir` (default NEW/compare), compare.md appended to
    `summary_to`, the pull request's comment in `comment_to` (links under `artifact_url`); with
    `update_baseline` BASELINE becomes a copy of NEW (a missing or empty one the first), with `accept_only`
    (parse_ids, read_decisions) those items alone. CompareError, OutputWriteError: nothing accepted."""
    new = Path(new)
    report_dir = Path(out_dir) if out_dir is not None else new / "compare"
    if update_baseline and accept_only is not None:
        raise UsageError("--update-baseline accepts the whole run, --accept single items: choose one")
    if update_baseline:  # refused before anything is compared
        check_baseline_update(new, Path(baseline))
    comparison = compare_folders(
        Path(baseline), new, thresholds or Thresholds(), first_baseline=update_baseline, shown_from=report_dir
    )
    if accept_only is not None:
        check_acceptable(comparison, accept_only)
    report = ComparisonReport(comparison, write_comparison(comparison, report_dir))
    if summary_to is not None:
        append_summary(comparison_markdown(comparison), Path(summary_to))
    if comment_to is not None:
        write_comment(comparison, Path(comment_to), artifact_url)
    if update_baseline:
        accept(new, Path(baseline), keep=[report_dir])
        write_review_links(Path(baseline))  # the accepted copy has no comparison of its own to link to
        report.baseline_updated = True
    if accept_only is not None:
        report.accepted = accept_items(new, Path(baseline), accept_only)
        write_review_page(baseline)  # its page shows the accepted items
    return report


# --- the review page ------------------------------------------------------------------------------


def write_review_page(out_dir: str | Path, log: Callable[[str], None] | None = None) -> Path:
    """(Re)write OUT/index.html, the batch's review page, from OUT/summary.json (`rr-controlnet review`);
    review images missing from the folder are made from the item files. Returns the page's path.

    Raises OutputFolderError when OUT has no summary.json of this tool (naming shard summaries to merge
    first) or a batch is still writing it, OutputWriteError when the page cannot be written.
    """

    folder = OutputFolder(out_dir)
    if not folder.path.is_dir():
        raise OutputFolderError(f"{folder.path}: not a folder")
    writers = folder.running_writers()
    if writers:  # worded as compare words it
        shard, holder = writers[0]
        who = holder.describe() if holder is not None else "another run"
        raise OutputFolderError(
            f"{folder.path}: in use: a batch is still writing it ({shard}: {who}); it writes the page when it is done"
        )
    if not (folder.path / SUMMARY_NAME).is_file():
        shards = list(folder.path.glob(SHARD_SUMMARY_GLOB))
        command = shlex.join(["rr-controlnet", "summarize", str(folder.path)])
        hint = f" (it has shard summaries: merge them with `{command}`)" if shards else ""
        raise OutputFolderError(f"{folder.path}: not an rr-controlnet output folder: no {SUMMARY_NAME}{hint}")
    try:
        summary = folder.read()
    except OutputFolderError as exc:
        raise OutputFolderError(f"{folder.path / SUMMARY_NAME}: {exc}") from None
    return write_page(folder.path, summary, log)
