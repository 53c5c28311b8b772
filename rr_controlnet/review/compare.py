"""Did a run change against the last accepted one, and from which denoising step?

    comparison = compare_folders(Path("baseline"), Path("new"))
    print(comparison.counts())  # {'same': 3, 'changed': 1, 'new': 0, 'missing': 0, 'failed': 0}

Items are matched by id across two output folders (shards merged). Each gets a status:

- `same`: made the same way (parameters, model, scheduler, dtype, input image) and the outputs within
  the thresholds;
- `changed`: made another way (the reason names what differs), whatever the outputs' distance; or the
  outputs differ past a threshold, or in size;
- `new`: only the new run has the item (or the baseline did not finish it);
- `missing`: only the baseline has it;
- `failed`: the new run did not finish it, or an item file of either run is damaged (not the size or
  hash its summary recorded) or unreadable.

Per item: image metrics of the outputs, what of the effective parameters differs, the change in control
adherence, and, read back from both recordings, how far the latents are apart at every step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from rr_controlnet.errors import CompareError, ItemFailed, OutputFolderError, UsageError
from rr_controlnet.images import load_image
from rr_controlnet.outputs import BatchSummary, ItemOutcome, OutputFolder
from rr_controlnet.outputs.names import IMAGE_SUFFIX, RECORDING_SUFFIX
from rr_controlnet.outputs.records import (
    Adherence,
    model_paths_relative,
    outputs_fingerprint,
    unit_paths_relative,
)
from rr_controlnet.recording.read import recorded_latents
from rr_controlnet.review.differences import ImageDifference, cosine_distance, output_difference

STATUSES: Final = ("same", "changed", "new", "missing", "failed")
WORST_FIRST: Final = ("failed", "missing", "changed", "new", "same")
# Reruns on one machine at one thread count are bit-identical; float noise across machines moves
# outputs by well under a level; a changed seed or prompt moves them by tens of levels.
MAX_COSINE_DISTANCE: Final = 1e-3  # diffusers' own tests call outputs closer than this the same
MAX_MEAN_DIFFERENCE: Final = 1.0  # of 255 levels; diffusers allows < 10 across hardware
# A step's latents "diverge" past this cosine distance: identical runs give 0, float noise ~1e-7.
DIVERGENCE_COSINE_DISTANCE: Final = 1e-5
# Run settings that decide outputs (a change makes every item `changed`), and those that only decide what
# was recorded.
OUTPUT_SETTINGS: Final = ("scheduler", "dtype")
MADE_ANOTHER_WAY: Final = "made another way: "


@dataclass(frozen=True)
class Thresholds:
    """How far two outputs (and two steps' latents) may be apart and still count as the same; each a
    finite number >= 0 (UsageError otherwise)."""

    max_cosine_distance: float = MAX_COSINE_DISTANCE
    max_mean_difference: float = MAX_MEAN_DIFFERENCE
    divergence_cosine_distance: float = DIVERGENCE_COSINE_DISTANCE

    def __post_init__(self) -> None:
        for name in ("max_cosine_distance", "max_mean_difference", "divergence_cosine_distance"):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value < 0:
                raise UsageError(f"{name.replace('_', '-')} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class StepDivergence:
    step: int
    rms: float
    cosine_distance: float


@dataclass
class ItemComparison:
    id: str
    status: str
    notes: list[str] = field(default_factory=list)
    image: ImageDifference | None = None
    size: tuple[list[int] | None, list[int] | None] = (None, None)  # (baseline, new) width x height
    params_changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    adherence_change: dict[str, float] = field(default_factory=dict)  # new - baseline
    divergence: list[StepDivergence] = field(default_factory=list)
    first_divergent_step: int | None = None
    baseline_png: Path | None = None
    new_png: Path | None = None
    baseline_rrd: Path | None = None
    new_rrd: Path | None = None


@dataclass
class Comparison:
    baseline: Path
    new: Path
    thresholds: Thresholds
    items: list[ItemComparison]  # worst first
    settings_changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # model, libraries
    new_outputs: str = ""  # the new run's outputs as compared (outputs.records.outputs_fingerprint)

    def counts(self) -> dict[str, int]:
        return {status: sum(1 for item in self.items if item.status == status) for status in STATUSES}

    @property
    def passed(self) -> bool:
        """Every item within the thresholds: nothing changed, missing or failed (new items are fine)."""
        return all(item.status in ("same", "new") for item in self.items)


def read_run(path: Path, role: str) -> tuple[OutputFolder, BatchSummary]:
    """An output folder of this tool and what it records, or CompareError naming the `role` it plays."""
    folder = OutputFolder(path)
    if not folder.path.is_dir():
        raise CompareError(f"{role} {folder.path}: not a folder")
    writers = folder.running_writers()
    if writers:
        shard, holder = writers[0]
        who = holder.describe() if holder is not None else "another run"
        raise CompareError(
            f"{role} {folder.path}: a batch is still writing it ({shard}: {who}); compare once it is done"
        )
    try:
        return folder, folder.read()
    except OutputFolderError as exc:
        raise CompareError(f"{role} {folder.path}: {exc}") from None


def compare_folders(
    baseline: Path,
    new: Path,
    thresholds: Thresholds = Thresholds(),
    first_baseline: bool = False,
    shown_from: Path | None = None,
) -> Comparison:
    """Compare every item of two output folders; items come worst first.

    With `first_baseline`, a baseline that does not exist yet compares as an empty folder with the new
    run's settings: every item is new (the first run of a job that keeps one). With `shown_from` (the report's
    folder), a custom model's paths and unit maps are named relative to it, as the report's files show them.
    """
    if not isinstance(thresholds, Thresholds):
        raise UsageError(f"thresholds must be a Thresholds, got {type(thresholds).__name__}")
    if Path(baseline).resolve() == Path(new).resolve():
        raise CompareError(f"baseline and new are the same folder, {Path(new).resolve()}: compare two runs")
    new_folder, after = read_run(new, "new")
    if first_baseline and _absent_or_empty(Path(baseline)):
        baseline_folder, before = OutputFolder(baseline), replace(after, items=[])
    else:
        baseline_folder, before = read_run(baseline, "baseline")
    before, after = _shown_paths(before, shown_from), _shown_paths(after, shown_from)
    before_items, after_items = before.by_id(), after.by_id()
    ids = list(after_items) + [item_id for item_id in before_items if item_id not in after_items]
    run_changes = _differences(_output_settings(before), _output_settings(after))
    items = [
        compare_item(
            item_id,
            before_items.get(item_id),
            after_items.get(item_id),
            baseline_folder,
            new_folder,
            thresholds,
            run_changes,
        )
        for item_id in ids
    ]
    order = {item_id: index for index, item_id in enumerate(ids)}
    items.sort(key=lambda item: (WORST_FIRST.index(item.status), -_badness(item), order[item.id]))
    settings = _differences(
        {"model": before.model, "versions": before.versions, "settings": before.settings},
        {"model": after.model, "versions": after.versions, "settings": after.settings},
    )

    return Comparison(Path(baseline), Path(new), thresholds, items, settings, outputs_fingerprint(after))


def _shown_paths(summary: BatchSummary, folder: Path | None) -> BatchSummary:
    """`summary` with its model's local paths and its units' maps relative to `folder` (both runs alike, so
    that they still compare equal exactly when they name the same files)."""
    if folder is None:
        return summary
    items = [replace(outcome, params=unit_paths_relative(outcome.params, folder)) for outcome in summary.items]
    return replace(summary, model=model_paths_relative(summary.model, folder), items=items)


def _absent_or_empty(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def _output_settings(summary: BatchSummary) -> dict[str, Any]:
    """What of a run, beside each item's parameters and input, decides its outputs. Settings a summary from
    before they were recorded lacks are left out, so they never count as changed."""
    known = {name: summary.settings[name] for name in OUTPUT_SETTINGS if name in summary.settings}
    return {"model": summary.model, **known}


def _badness(item: ItemComparison) -> float:
    return item.image.cosine_distance if item.image is not None else 0.0


def compare_item(
    item_id: str,
    before: ItemOutcome | None,
    after: ItemOutcome | None,
    baseline: OutputFolder,
    new: OutputFolder,
    thresholds: Thresholds,
    run_changes: dict[str, tuple[Any, Any]] | None = None,
) -> ItemComparison:
    """One item's status, differences and divergence. `run_changes`: what of the runs' model and settings
    that decide outputs differs (every item made another way is `changed`)."""
    if after is None:
        return ItemComparison(
            item_id,
            "missing",
            ["only the baseline has this item"],
            baseline_png=before.file(baseline.path, IMAGE_SUFFIX),
        )
    if after.status != "done":
        reason = f"not finished in the new run: {after.status}" + (f" ({after.error})" if after.error else "")
        finished_before = before is not None and before.status == "done"
        baseline_png = before.file(baseline.path, IMAGE_SUFFIX) if finished_before else None
        return ItemComparison(item_id, "failed", [reason], baseline_png=baseline_png)  # shown beside the reason
    comparison = ItemComparison(item_id, "same")
    comparison.new_png, comparison.new_rrd = after.file(new.path, IMAGE_SUFFIX), after.file(new.path, RECORDING_SUFFIX)
    damage = new.damage(after)
    if damage is not None:
        comparison.status = "failed"
        comparison.notes.append(f"damaged in the new run: {damage}")
        return comparison
    if before is None or before.status != "done":
        comparison.status = "new"
        comparison.notes.append("the baseline has no finished output for this item")
        return comparison
    comparison.baseline_png, comparison.baseline_rrd = (
        before.file(baseline.path, IMAGE_SUFFIX),
        before.file(baseline.path, RECORDING_SUFFIX),
    )
    damage = baseline.damage(before)
    if damage is not None:
        comparison.status = "failed"
        comparison.notes.append(f"damaged in the baseline: {damage}")
        return comparison
    comparison.params_changed = _differences(judged_params(before.params), judged_params(after.params))
    comparison.adherence_change = _adherence_change(before.adherence, after.adherence)
    made_differently = made_another_way(before, after, comparison.params_changed, run_changes or {})
    if made_differently:
        comparison.status = "changed"
        comparison.notes.append(f"{MADE_ANOTHER_WAY}{made_differently}")
    _compare_images(comparison, thresholds)
    if comparison.status != "failed":
        _compare_latents(comparison, thresholds)
    return comparison


def made_another_way(
    before: ItemOutcome,
    after: ItemOutcome,
    params_changed: dict[str, tuple[Any, Any]],
    run_changes: dict[str, tuple[Any, Any]],
) -> str:
    """What differs in how two runs made an item, in words ("" when nothing does): its effective
    parameters, the model, the output-deciding settings, its input image."""
    reasons = changes_in_words(params_changed) + changes_in_words(run_changes)
    if before.input_sha256 and after.input_sha256 and before.input_sha256 != after.input_sha256:
        reasons.append("the input image's content")
    if not reasons and before.params_hash and after.params_hash and before.params_hash != after.params_hash:
        known = before.input_sha256 and after.input_sha256
        if not known:  # a summary from before inputs were hashed apart: the fingerprint is all there is
            reasons.append("its fingerprint (params hash; the input image or settings)")
    return "; ".join(reasons)


def judged_params(params: dict[str, Any]) -> dict[str, Any]:
    """`params` as compare judges them: a unit's map by its content (map_sha256) where that is recorded, as
    the item's input is, not by its path (the same map named from two folders, or moved, is the same map)."""
    units = params.get("controls")
    if not isinstance(units, dict):
        return params

    def judged(unit: Any) -> Any:
        if not isinstance(unit, dict) or not unit.get("map_sha256"):
            return unit
        return {key: value for key, value in unit.items() if key != "image"}

    return {**params, "controls": {name: judged(unit) for name, unit in units.items()}}


def changes_in_words(changed: dict[str, tuple[Any, Any]]) -> list[str]:
    """Each change as the `made another way` note words it: "name old → new", long values shortened; a
    unit's map as "its map's content"."""
    return [
        f"{name.removesuffix(MAP_CONTENT)}'s map content"
        if name.endswith(MAP_CONTENT)
        else f"{name} {shown_value(old)} → {shown_value(new)}"
        for name, (old, new) in changed.items()
    ]


MAP_CONTENT: Final = ".map_sha256"


def shown_value(value: Any, limit: int = 60) -> str:
    """A parameter's value as a person reads it: `none`, numbers and words as they are, a text quoted,
    mappings as `{key: value, ...}`; cut at `limit` characters."""
    text = _readable(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _readable(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_readable(inner)}" for key, inner in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_readable(inner) for inner in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _compare_images(comparison: ItemComparison, thresholds: Thresholds) -> None:
    before, problem = _load_png(comparison.baseline_png, "baseline")
    after, new_problem = _load_png(comparison.new_png, "new")
    if new_problem:
        comparison.status = "failed"
        comparison.notes.append(new_problem)
        return
    if problem:
        comparison.status = "changed"
        comparison.notes.append(problem)
        return
    comparison.size = ([before.shape[1], before.shape[0]], [after.shape[1], after.shape[0]])
    if before.shape != after.shape:
        comparison.status = "changed"
        (width, height), (new_width, new_height) = comparison.size
        comparison.notes.append(f"sizes differ: {width}x{height} in the baseline, {new_width}x{new_height} now")
        return
    comparison.image = output_difference(before, after)
    image = comparison.image
    apart = image.cosine_distance > thresholds.max_cosine_distance or image.mean_abs > thresholds.max_mean_difference
    if apart:
        comparison.status = "changed"
        comparison.notes.append(
            f"output differs: mean {image.mean_abs:.2f} levels (limit {thresholds.max_mean_difference:g}), cosine "
            f"distance {image.cosine_distance:.2e} (limit {thresholds.max_cosine_distance:g})"
        )


def _load_png(path: Path | None, role: str) -> tuple[np.ndarray | None, str | None]:

    if path is None or not path.is_file():
        return None, f"{role} output missing: {path.name if path else 'no image listed'}"
    try:
        pixels = load_image(path).pixels
    except ItemFailed as exc:
        return None, f"{role} output unreadable: {exc}"
    return (pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2))[:, :, :3], None


def _compare_latents(comparison: ItemComparison, thresholds: Thresholds) -> None:
    if comparison.baseline_rrd is None or comparison.new_rrd is None:
        comparison.notes.append("no recordings to compare the steps of")
        return
    try:
        before = recorded_latents(comparison.baseline_rrd, comparison.id)
        after = recorded_latents(comparison.new_rrd, comparison.id)
    except (OSError, RuntimeError, ValueError, KeyError, Warning) as exc:  # Rerun warns of a missing footer
        comparison.notes.append(
            f"recordings unreadable, steps not compared: {str(exc).splitlines()[0] if str(exc) else exc}"
        )
        return
    for step in sorted(set(before) & set(after)):
        if before[step].shape != after[step].shape:
            break
        difference = before[step].astype(np.float64) - after[step].astype(np.float64)
        divergence = StepDivergence(
            step, float(np.sqrt(np.mean(difference**2))), cosine_distance(before[step], after[step])
        )
        comparison.divergence.append(divergence)
        if (
            comparison.first_divergent_step is None
            and divergence.cosine_distance > thresholds.divergence_cosine_distance
        ):
            comparison.first_divergent_step = step


def _differences(before: Any, after: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Flattened keys whose values differ between two nested mappings: {"model.base": (old, new)}."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return {} if before == after else {prefix.rstrip("."): (before, after)}
    changed = {}
    for key in list(before) + [key for key in after if key not in before]:
        changed |= _differences(before.get(key), after.get(key), f"{prefix}{key}.")
    return changed


def _adherence_change(before: Adherence | None, after: Adherence | None) -> dict[str, float]:
    """new - baseline, per control adherence score."""
    if before is None or after is None:
        return {}
    old, new = before.scalars(), after.scalars()
    return {name: round(new[name] - old[name], 6) for name in old}
