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

from rr_controlnet.batch import BatchOptions, BatchReport, run_batch, summarize_outputs
from rr_controlnet.compare import Comparison, Thresholds, compare_folders
from rr_controlnet.errors import OutputFolderError, UsageError
from rr_controlnet.journal import read_outcomes
from rr_controlnet.manifest import load_manifest, parse_manifest
from rr_controlnet.original import original_manifest
from rr_controlnet.outputs import BatchSummary, ItemOutcome, default_out_dir
from rr_controlnet.plan import plan_items
from rr_controlnet.progress import NoProgress, Progress, ProgressBars
from rr_controlnet.runner import GroupRunner, RecordingOptions, generate_and_record
from rr_controlnet.spec import GenerationParams, Item, Manifest, ModelSpec, Overrides, StopRequest

__all__ = [
    "BatchOptions",
    "BatchReport",
    "BatchSummary",
    "Comparison",
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
    "compare_folders",
    "default_out_dir",
    "generate_and_record",
    "load_manifest",
    "original_manifest",
    "parse_manifest",
    "plan_items",
    "read_outcomes",
    "refresh_review_links",
    "run_batch",
    "run_manifest",
    "summarize_outputs",
    "write_review_page",
]


@dataclass(frozen=True)
class LiveViewing:
    """Stream every item live as it is generated: "spawn" a viewer, "connect" to one at `url`, or
    "serve-web" the web viewer. The files are written as well unless BatchOptions.save_recordings is off."""

    mode: str
    url: str | None = None


def run_manifest(
    manifest: Manifest,
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
    long as that object).
    """
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


def write_review_page(out_dir: Path, log: Callable[[str], None] | None = None) -> Path:
    """(Re)write OUT/index.html, the batch's review page, from OUT/summary.json; review images missing from
    the folder are made from the item files. Returns the page's path.

    Raises OutputFolderError when OUT has no summary.json of this tool, OutputWriteError when the page
    cannot be written.
    """
    import json

    from rr_controlnet.outputs import SUMMARY_NAME
    from rr_controlnet.review_page import write_review_page as write_page

    out_dir = Path(out_dir)
    summary_path = out_dir / SUMMARY_NAME
    if not out_dir.is_dir():
        raise OutputFolderError(f"{out_dir}: not a folder")
    try:
        document = json.loads(summary_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        shards = sorted(path.name for path in out_dir.glob("summary.shard-*-of-*.json"))
        hint = f" (it has shard summaries: merge them with `rr-controlnet summarize {out_dir}`)" if shards else ""
        raise OutputFolderError(f"{out_dir}: not an rr-controlnet output folder: no {SUMMARY_NAME}{hint}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise OutputFolderError(f"{summary_path}: cannot be read as a summary ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise OutputFolderError(f"{summary_path}: not an rr-controlnet summary (no list of items)")
    return write_page(out_dir, BatchSummary.from_document(document).to_document(), log)


def refresh_review_links(out_dir: Path) -> None:
    """Point OUT's review page at the comparison in OUT/compare if there is one, and at nothing otherwise
    (a folder accepted as a baseline is copied without its comparison)."""
    from rr_controlnet.review_page import write_review_links

    write_review_links(Path(out_dir))
