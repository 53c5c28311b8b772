"""What `rr-controlnet compare` writes: compare.json, compare.md and compare.rrd (worst items first).

compare.rrd has a tab per item: baseline and new outputs with a heatmap of their difference, both
runs' previews side by side and the latents' divergence as time series on the `step` timeline, so
scrubbing shows where the two runs part.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from rr_controlnet.errors import CompareError
from rr_controlnet.outputs import OutputFolder
from rr_controlnet.outputs.files import write_atomic
from rr_controlnet.outputs.names import COMPARE_FOLDER, LOCK_GLOB, PARTIAL_GLOB
from rr_controlnet.outputs.records import now_text, shown_path
from rr_controlnet.recording.layout import APPLICATION_ID, BATCH_BLUEPRINT_MAX_ITEMS, STEP_TIMELINE
from rr_controlnet.recording.read import recorded_previews
from rr_controlnet.recording.write import save_stream
from rr_controlnet.review.compare import Comparison, ItemComparison, changes_in_words
from rr_controlnet.review.differences import IMAGE_METRICS, difference_heatmap, metric_rows
from rr_controlnet.review.markdown import TABLE_ROW_LIMIT, bounded, cell
from rr_controlnet.review.pages import write_compare_page

COMPARE_APPLICATION_ID: Final = f"{APPLICATION_ID}_compare"
# Differences of this many levels or more show at full heat.


def write_comparison(comparison: Comparison, out_dir: Path) -> list[Path]:
    """compare.json, compare.md, compare.rrd and the review page (index.html) in `out_dir`."""

    out_dir = Path(out_dir)
    document = comparison_document(comparison, relative_to=out_dir)
    json_path = write_atomic(out_dir / "compare.json", json.dumps(document, indent=2, allow_nan=False) + "\n")
    markdown_path = write_atomic(out_dir / "compare.md", comparison_markdown(comparison, out_dir))
    recording = write_compare_recording(comparison, out_dir / "compare.rrd")
    return [json_path, markdown_path, recording, write_compare_page(comparison, out_dir)]


def comparison_document(comparison: Comparison, relative_to: Path | None = None) -> dict[str, Any]:
    """The comparison as strict JSON values: paths relative to `relative_to` (the folder of compare.json,
    so the report moves with the folders it compares), numbers that are not finite as null; and when it
    was made."""

    base = Path(relative_to).resolve() if relative_to is not None else None

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return os.path.relpath(Path(value).resolve(), base) if base is not None else str(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {str(key): plain(inner) for key, inner in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(inner) for inner in value]
        if value is None or isinstance(value, (str, int, bool)):
            return value
        return str(value)

    document = plain(asdict(comparison))
    document["counts"] = comparison.counts()
    document["passed"] = comparison.passed
    document["made"] = now_text()  # with `new_outputs`: the new run's page tells a comparison gone out of date
    return document


def comparison_markdown(comparison: Comparison, out_dir: Path | None = None) -> str:
    """A job summary: counts, thresholds, settings that changed, and a table of items, worst first; the
    folders named relative to `out_dir`, where the comparison's files are."""
    counts = ", ".join(f"{count} {status}" for status, count in comparison.counts().items())
    limits = comparison.thresholds
    lines = [
        f"## rr-controlnet compare: {cell(shown_path(comparison.baseline, out_dir))} → "
        f"{cell(shown_path(comparison.new, out_dir))}",
        "",
        f"{counts} ({'passed' if comparison.passed else 'CHANGED'}: same means cosine distance ≤ "
        f"{limits.max_cosine_distance:g} and mean difference ≤ {limits.max_mean_difference:g} of 255 levels)",
    ]
    if comparison.settings_changed:
        lines += [
            "",
            "Settings that differ: "
            + "; ".join(
                f"{cell(key)}: {cell(old)} → {cell(new)}" for key, (old, new) in comparison.settings_changed.items()
            ),
        ]
    lines += [
        "",
        "| item | status | " + " | ".join(metric.column for metric in IMAGE_METRICS) + " | diverges from step "
        "| F1 change | notes |",
        "| --- | --- | " + "---: | " * len(IMAGE_METRICS) + "---: | ---: | --- |",
    ]
    lines += [_row(item) for item in comparison.items[:TABLE_ROW_LIMIT]]
    if len(comparison.items) > TABLE_ROW_LIMIT:
        lines += ["", f"... and {len(comparison.items) - TABLE_ROW_LIMIT:,} more items: compare.json lists every item."]
    return bounded(lines, "compare.json")


def _row(item: ItemComparison) -> str:
    metrics = [""] * len(IMAGE_METRICS) if item.image is None else [text for _, text in metric_rows(item.image)]
    diverges = "" if item.first_divergent_step is None else str(item.first_divergent_step)
    f1 = item.adherence_change.get("f1")
    # The `made another way` note names each changed parameter already (compare.json has them in full).
    cells = [item.id, f"**{item.status}**" if item.status != "same" else item.status, *metrics, diverges]
    cells += ["" if f1 is None else f"{f1:+.1%}", "; ".join(item.notes)]
    return "| " + " | ".join(cell(value) for value in cells) + " |"


# --- compare.rrd -----------------------------------------------------------------------------------


def compare_paths(item_id: str) -> dict[str, str]:
    root = f"compare/{item_id}"
    return {
        "baseline_output": f"{root}/baseline/output",
        "new_output": f"{root}/new/output",
        "difference": f"{root}/difference",
        "baseline_preview": f"{root}/baseline/preview",
        "new_preview": f"{root}/new/preview",
        "divergence": f"{root}/divergence",
        "summary": f"{root}/summary",
    }


def compare_blueprint(items: list[ItemComparison]) -> Any:
    """A tab per item, worst first: outputs and their difference; previews and divergence by step."""
    import rerun.blueprint as rrb

    tabs = []
    for item in items[:BATCH_BLUEPRINT_MAX_ITEMS]:
        paths = compare_paths(item.id)
        tabs.append(
            rrb.Vertical(
                rrb.Horizontal(
                    rrb.Spatial2DView(name=f"{item.id}: baseline output", origin=paths["baseline_output"]),
                    rrb.Spatial2DView(name=f"{item.id}: new output", origin=paths["new_output"]),
                    rrb.Spatial2DView(name=f"{item.id}: difference", origin=paths["difference"]),
                ),
                rrb.Horizontal(
                    rrb.Spatial2DView(name=f"{item.id}: baseline preview", origin=paths["baseline_preview"]),
                    rrb.Spatial2DView(name=f"{item.id}: new preview", origin=paths["new_preview"]),
                    rrb.TimeSeriesView(name=f"{item.id}: divergence", origin=paths["divergence"]),
                ),
                rrb.TextDocumentView(name=f"{item.id}: comparison", origin=paths["summary"]),
                row_shares=[3, 3, 1],
                name=f"{item.id} ({item.status})",
            )
        )
    return rrb.Blueprint(rrb.Tabs(*tabs, active_tab=0), rrb.TimePanel(timeline=STEP_TIMELINE), collapse_panels=False)


def write_compare_recording(comparison: Comparison, path: Path) -> Path:
    import rerun as rr

    recording_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"rr-controlnet-compare:{Path(path).resolve()}"))
    stream = rr.RecordingStream(COMPARE_APPLICATION_ID, recording_id=recording_id, send_properties=False)
    binary = stream.binary_stream()
    stream.set_sinks(binary, default_blueprint=compare_blueprint(comparison.items))
    stream.send_recording_name(f"compare {Path(comparison.baseline).name} → {Path(comparison.new).name}")
    for item in comparison.items:
        _record_item(stream, item)
    return save_stream(stream, binary, path)


def _record_item(stream: Any, item: ItemComparison) -> None:
    import rerun as rr

    paths = compare_paths(item.id)
    images = {}
    for role, png in (("baseline", item.baseline_png), ("new", item.new_png)):
        if png is not None and png.is_file():
            stream.log(
                paths[f"{role}_output"], rr.EncodedImage(contents=png.read_bytes(), media_type="image/png"), static=True
            )
            images[role] = png
    if item.image is not None:
        stream.log(paths["difference"], rr.Image(difference_heatmap(images["baseline"], images["new"])), static=True)
    stream.log(paths["summary"], rr.TextDocument(_item_markdown(item), media_type=rr.MediaType.MARKDOWN), static=True)
    for role, recording in (("baseline", item.baseline_rrd), ("new", item.new_rrd)):
        if recording is None or not recording.is_file():
            continue
        try:
            previews = recorded_previews(recording, item.id)
        except (OSError, RuntimeError, ValueError, KeyError, Warning):
            continue
        for step, blob, media_type in previews:
            stream.set_time(STEP_TIMELINE, sequence=step)
            stream.log(paths[f"{role}_preview"], rr.EncodedImage(contents=blob, media_type=media_type))
    for divergence in item.divergence:
        stream.set_time(STEP_TIMELINE, sequence=divergence.step)
        stream.log(f"{paths['divergence']}/rms", rr.Scalars(divergence.rms))
        stream.log(f"{paths['divergence']}/cosine_distance", rr.Scalars(divergence.cosine_distance))


def _item_markdown(item: ItemComparison) -> str:
    lines = [f"## {item.id}: {item.status}", ""]
    if item.image is not None:
        lines.append("; ".join(f"{label} {text}" for label, text in metric_rows(item.image)))
    if item.first_divergent_step is not None:
        lines.append(f"\nthe latents part from step {item.first_divergent_step}")
    elif item.divergence:
        lines.append(f"\nthe latents agree at all {len(item.divergence)} steps")
    lines += [f"\n- {note}" for note in item.notes]
    lines += [f"\n- {change}" for change in changes_in_words(item.params_changed)]
    if item.adherence_change:
        lines.append(
            "\ncontrol adherence change: " + ", ".join(f"{k} {v:+.1%}" for k, v in item.adherence_change.items())
        )
    return "\n".join(lines) + "\n"


# --- accepting a run ---------------------------------------------------------------------------------


def check_baseline_update(new: Path, baseline: Path) -> None:
    """Refuse, before anything is compared or written, an update that would lose data: folders nested in
    one another, or a BASELINE that holds something other than an output folder of this tool."""
    new, target = Path(new).resolve(), Path(baseline).resolve()  # a symlinked baseline: its target
    if target == new:
        raise CompareError(f"baseline and new are the same folder, {new}")
    if target in new.parents or new in target.parents:
        inner, outer = ("new", "baseline") if target in new.parents else ("baseline", "new")
        raise CompareError(
            f"{inner} {new if inner == 'new' else target} is inside {outer} {target if outer == 'baseline' else new}: "
            "accepting the run would replace a folder that holds the other; keep them side by side"
        )
    if target.exists() and not target.is_dir():
        raise CompareError(f"baseline {baseline}: not a folder; it is left as it is")
    if target.is_dir() and any(target.iterdir()) and not OutputFolder(target).documents():
        raise CompareError(f"baseline {baseline}: not an rr-controlnet output folder; it is left as it is")


def update_baseline(new: Path, baseline: Path, keep: Sequence[Path] = ()) -> Path:
    """Make `baseline` a copy of `new` (its compare/ folder aside), replacing it whole once the copy is done.

    A symlinked baseline keeps its link: its target is replaced. Files or folders in `keep` (a report
    written inside the baseline) are carried over to the same place in the new copy.
    """
    check_baseline_update(new, baseline)
    new, target = Path(new).resolve(), Path(baseline).resolve()
    incoming = target.with_name(f".{target.name}.updating")
    outgoing = target.with_name(f".{target.name}.replaced")
    moved_aside = False
    try:
        for leftover in (incoming, outgoing):
            shutil.rmtree(leftover, ignore_errors=True)
        ignore = shutil.ignore_patterns(COMPARE_FOLDER, LOCK_GLOB, PARTIAL_GLOB)
        shutil.copytree(new, incoming, ignore=ignore)
        for kept in (Path(path).resolve() for path in keep):
            if target in kept.parents and kept.exists():
                place = incoming / kept.relative_to(target)
                if kept.is_dir():
                    shutil.copytree(kept, place, dirs_exist_ok=True)
                else:
                    place.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(kept, place)
        if target.exists():
            target.rename(outgoing)
            moved_aside = True
        incoming.rename(target)
    except OSError as exc:
        if moved_aside and not target.exists():
            outgoing.rename(target)  # the accepted run stays as it was
        shutil.rmtree(incoming, ignore_errors=True)
        raise CompareError(f"baseline {baseline}: cannot update it: {exc.strerror or exc}") from None
    shutil.rmtree(outgoing, ignore_errors=True)
    return Path(baseline)
