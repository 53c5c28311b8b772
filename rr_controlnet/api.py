"""The Python API: everything the command line does, as functions that return results and raise errors.

    from pathlib import Path
    from rr_controlnet.api import BatchOptions, Overrides, load_manifest, run_manifest

    manifest = load_manifest("manifests/example.yaml", Overrides(model="tiny-sd15", steps=4))
    report = run_manifest(manifest, BatchOptions(out_dir=Path("out")))
    print(report.summary.counts())  # {'done': 4, 'failed': 0, 'pending': 0}

Errors are rr_controlnet.errors types: ManifestError (every problem, located), OutputFolderError,
ModelLoadError (WeightsUnavailable: offline or the hub out of reach), DeviceError, OutputWriteError,
UsageError; per-item failures are outcomes, not errors.

Model weights before a run (`rr-controlnet fetch`, `rr-controlnet models`):

    fetch_models(["sdxl"])                            # into the Hugging Face cache, with the hub's bars
    print(models_table(model_statuses(["sdxl", "manifests/example.yaml"])))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rr_controlnet import hub
from rr_controlnet.adherence import Adherence, EdgeScores, image_adherence
from rr_controlnet.batch import BatchOptions, BatchReport, run_batch, summarize_outputs
from rr_controlnet.compare import Comparison, Thresholds, compare_folders
from rr_controlnet.errors import UsageError, WeightsUnavailable
from rr_controlnet.hub import ComponentStatus, DownloadDisplay, FetchOutcome, cache_folders, models_table
from rr_controlnet.journal import read_outcomes
from rr_controlnet.manifest import load_manifest, parse_manifest
from rr_controlnet.original import original_manifest
from rr_controlnet.outputs import BatchSummary, ItemOutcome, default_out_dir
from rr_controlnet.plan import plan_items
from rr_controlnet.progress import NoProgress, Progress, ProgressBars
from rr_controlnet.runner import GroupRunner, RecordingOptions, generate_and_record
from rr_controlnet.spec import GenerationParams, Item, Manifest, ModelSpec, Overrides, StopRequest

__all__ = [
    "Adherence",
    "BatchOptions",
    "BatchReport",
    "BatchSummary",
    "Comparison",
    "ComponentStatus",
    "EdgeScores",
    "FetchOutcome",
    "GenerationParams",
    "GroupRunner",
    "Item",
    "ItemOutcome",
    "LiveViewing",
    "Manifest",
    "ModelSpec",
    "NoProgress",
    "Overrides",
    "Progress",
    "ProgressBars",
    "RecordingOptions",
    "StopRequest",
    "Thresholds",
    "adherence",
    "cache_folders",
    "compare_folders",
    "default_out_dir",
    "fetch_models",
    "generate_and_record",
    "load_manifest",
    "model_statuses",
    "models_table",
    "original_manifest",
    "parse_manifest",
    "plan_items",
    "read_outcomes",
    "run_batch",
    "run_manifest",
    "summarize_outputs",
]


@dataclass(frozen=True)
class LiveViewing:
    """Stream every item live as it is generated: "spawn" a viewer, "connect" to one at `url`, or
    "serve-web" the web viewer. The files are written as well unless BatchOptions.save_recordings is off."""

    mode: str
    url: str | None = None


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
    from rr_controlnet.distributed import ProcessGroup, device_for, launched_process
    from rr_controlnet.viewer import start_live_viewer

    process = launched_process()
    if process is not None:
        if options.shard is not None:
            raise UsageError("--shard cannot be combined with a launcher's ranks (RANK/WORLD_SIZE)")
        options = replace(options, shard=process.shard, device=device_for(process, options.device))
    if not options.save_recordings and live is None:
        raise UsageError("writing no recordings needs a live viewer (--spawn, --connect or --serve-web)")
    viewer: Any = None
    if live is not None:
        viewer = start_live_viewer(
            live.mode == "spawn",
            live.url if live.mode == "connect" else None,
            live.mode == "serve-web",
            manifest,
            options.out_dir,
        )
        options = replace(options, live_url=viewer.url)
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
    named = _models_named(targets)
    try:
        return hub.fetch_models(named, _dtype_name(dtype), DownloadDisplay(bars, log))
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
    from rr_controlnet.presets import PRESETS

    return hub.model_statuses(_models_named(targets or list(PRESETS)), _dtype_name(dtype))


def _models_named(targets: Sequence[str]) -> list[tuple[str, ModelSpec]]:
    """Each target with the model it names: a preset, or a manifest's model (read without its images)."""
    from rr_controlnet.presets import PRESETS, model_spec_from_preset

    named = []
    for target in targets:
        if target in PRESETS:
            named.append((target, model_spec_from_preset(target)))
        elif Path(target).is_file():
            named.append((target, load_manifest(target, check_images=False).model))
        else:
            raise UsageError(f"{target!r} is neither a model preset ({', '.join(PRESETS)}) nor a manifest file")
    return named


def _dtype_name(dtype: str) -> str:
    """ "auto" as a batch on this machine resolves it (fp16 with CUDA, fp32 without); other names as they are."""
    if dtype != "auto":
        return dtype
    from rr_controlnet.loading import resolve_runtime

    return resolve_runtime("auto", "auto").dtype_name
