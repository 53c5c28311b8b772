"""The Python API: everything the command line does, as functions that return results and raise errors.

    from pathlib import Path
    from rr_controlnet.api import BatchOptions, Overrides, load_manifest, run_manifest

    manifest = load_manifest("manifests/example.yaml", Overrides(model="tiny-sd15", steps=4))
    report = run_manifest(manifest, BatchOptions(out_dir=Path("out")))
    print(report.summary.counts())  # {'done': 4, 'failed': 0, 'pending': 0}

Errors are rr_controlnet.errors types: ManifestError (every problem, located), OutputFolderError,
ModelLoadError, DeviceError, OutputWriteError, UsageError; per-item failures are outcomes, not errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rr_controlnet.adherence import Adherence, EdgeScores, image_adherence
from rr_controlnet.batch import BatchOptions, BatchReport, run_batch, summarize_outputs
from rr_controlnet.compare import Comparison, Thresholds, compare_folders
from rr_controlnet.errors import UsageError
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
    "EdgeScores",
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
    "compare_folders",
    "default_out_dir",
    "generate_and_record",
    "load_manifest",
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
