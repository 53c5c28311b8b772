"""The comparison's review page: COMPARE/index.html beside compare.json (NEW/compare by default), and
the batch page's link to it, NEW/review/links.js.

    COMPARE/index.html                 statuses worst first with their reasons, per item both outputs,
                                       their difference heatmap, the latents' divergence by step
    COMPARE/review/data.js             sets window.RR_COMPARE
    COMPARE/review/items/<id>/         baseline.jpg, new.jpg (same size, for flicking), heatmap.jpg

The outputs are copied in (LARGE_SIDE at most), so the page works wherever the folder is moved; it
links back to NEW's own page when it lives inside NEW. NEW's page links to NEW/compare with its counts
while NEW's outputs are the ones compared (compare.json's `new_outputs`, outputs_fingerprint); once a
rerun changes them, links.js marks the comparison `stale`, with when it was made and when the outputs
last changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import numpy as np

from rr_controlnet.errors import ItemFailed
from rr_controlnet.images import load_image
from rr_controlnet.outputs.files import write_atomic, write_failure
from rr_controlnet.outputs.records import shown_path
from rr_controlnet.review.compare import MADE_ANOTHER_WAY, WORST_FIRST, changes_in_words
from rr_controlnet.review.differences import difference_heatmap, metric_rows
from rr_controlnet.review.pages.encode import LARGE_SIDE, jpeg, rgb_image
from rr_controlnet.review.pages.html import DATA_NAME, PAGE_NAME, copy_page_assets, data_script, page_html
from rr_controlnet.review.pages.items import REVIEW_FOLDER, is_plain_id, write_review_file
from rr_controlnet.review.pages.links import write_review_links

COMPARE_SCRIPTS: Final = ("page.js", "compare.js", "decisions.js", "open_viewer.js")
COMPARE_ASSETS: Final = (*COMPARE_SCRIPTS, "review.css")


def write_compare_page(comparison: Any, out_dir: Path) -> Path:
    """index.html and review/ for a compare.Comparison in `out_dir` (where compare.json is); returns the
    page's path. When `out_dir` is inside the new run's folder, that folder's own page links to it."""
    out_dir = Path(out_dir)
    review = out_dir / REVIEW_FOLDER
    items = []
    for item in comparison.items:
        assets = write_item_images(review / "items" / item.id, item) if is_plain_id(item.id) else {}
        items.append(compare_item_data(item, assets))
    new = Path(comparison.new)
    inside_new = _is_within(out_dir, new)
    batch_page = _relative(new / PAGE_NAME, out_dir) if inside_new and (new / PAGE_NAME).is_file() else None
    data = compare_data(comparison, items, batch_page, out_dir)
    copy_page_assets(review, COMPARE_ASSETS)
    write_atomic(review / DATA_NAME, data_script("RR_COMPARE", data))
    page = write_atomic(out_dir / PAGE_NAME, page_html(data["title"], [DATA_NAME, *COMPARE_SCRIPTS]))
    if inside_new:
        write_review_links(new)
    return page


def compare_data(
    comparison: Any, items: Sequence[Mapping[str, Any]], batch_page: str | None, out_dir: Path | None = None
) -> dict[str, Any]:
    """What the comparison page shows: header (the folders relative to `out_dir`), then items worst first
    (as compare orders them)."""
    counts = comparison.counts()
    ordered = sorted(
        items, key=lambda item: WORST_FIRST.index(item["status"]) if item["status"] in WORST_FIRST else len(WORST_FIRST)
    )
    baseline, new = _names(Path(comparison.baseline), Path(comparison.new))
    return {
        "format": 1,
        "title": f"rr-controlnet compare: {baseline} → {new}",
        "baseline": shown_path(comparison.baseline, out_dir),
        "new": shown_path(comparison.new, out_dir),
        "statuses": list(WORST_FIRST),
        "counts": counts,
        "passed": comparison.passed,
        "thresholds": asdict(comparison.thresholds),
        "settings_changed": _jsonable({key: list(pair) for key, pair in comparison.settings_changed.items()}),
        "batch_page": batch_page,
        "items": list(ordered),
    }


def compare_item_data(item: Any, assets: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """One item: status and reasons, image metrics, parameters that differ, the divergence by step."""
    data: dict[str, Any] = {"id": item.id, "status": item.status, "notes": page_notes(item)}
    if item.image is not None:
        data["image"] = asdict(item.image)
        data["image_rows"] = metric_rows(item.image)
    if any(item.size):
        data["size"] = list(item.size)
    if item.params_changed:
        data["params"] = _jsonable({key: list(pair) for key, pair in item.params_changed.items()})
    if item.adherence_change:
        data["adherence"] = dict(item.adherence_change)
    if item.divergence:
        data["steps"] = len(item.divergence)
        # Runs that agree have zeros at every step: the page says so rather than drawing them.
        if any(step.rms or step.cosine_distance for step in item.divergence):
            data["divergence"] = [
                [step.step, float(f"{step.rms:.4g}"), float(f"{step.cosine_distance:.4g}")] for step in item.divergence
            ]
    if item.first_divergent_step is not None:
        data["first_divergent_step"] = item.first_divergent_step
    if assets:
        data["assets"] = {kind: list(size) for kind, size in assets.items()}
    return data


def page_notes(item: Any) -> list[str]:
    """The item's notes, with the parameters the page's table lists in full named rather than repeated."""

    listed = MADE_ANOTHER_WAY + "; ".join(changes_in_words(item.params_changed))
    notes = []
    for note in item.notes:
        if item.params_changed and note.startswith(listed):
            rest = note[len(listed) :].removeprefix("; ")
            note = f"{MADE_ANOTHER_WAY}{', '.join(item.params_changed)} (the parameters that differ, below)"
            note += f"; {rest}" if rest else ""
        notes.append(note)
    return notes


def write_item_images(folder: Path, item: Any) -> dict[str, tuple[int, int]]:
    """baseline.jpg and new.jpg (the outputs, same scale) and heatmap.jpg (their difference, where both
    have one size) in `folder`; returns the size of each written."""
    written: dict[str, tuple[int, int]] = {}
    outputs = {role: _pixels(getattr(item, f"{role}_png")) for role in ("baseline", "new")}
    for role, pixels in outputs.items():
        if pixels is not None:
            written[role] = _save(folder / f"{role}.jpg", pixels)
    before, after = outputs["baseline"], outputs["new"]
    if before is not None and after is not None and before.shape[:2] == after.shape[:2]:
        written["heatmap"] = _save(folder / "heatmap.jpg", difference_heatmap(item.baseline_png, item.new_png))
    for role in ("baseline", "new", "heatmap"):  # an earlier comparison's image this one has none for
        if role not in written:
            (folder / f"{role}.jpg").unlink(missing_ok=True)
    return written


def _pixels(path: Path | None) -> np.ndarray | None:

    if path is None or not Path(path).is_file():
        return None
    try:
        return load_image(Path(path)).pixels
    except ItemFailed:
        return None


def _save(path: Path, pixels: np.ndarray) -> tuple[int, int]:
    data, size = jpeg(rgb_image(pixels), LARGE_SIDE, quality=90)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_review_file(path, data)
    except OSError as exc:  # said as the other compare files say it (a full disk told apart)
        raise write_failure(exc, path) from None
    return size


def _names(baseline: Path, new: Path) -> tuple[str, str]:
    """The two folders as a title names them: by name, or with their parents' where the names are the same."""
    if baseline.name != new.name:
        return baseline.name, new.name
    return (
        f"{baseline.resolve().parent.name}/{baseline.name}",
        f"{new.resolve().parent.name}/{new.name}",
    )


def _is_within(folder: Path, parent: Path) -> bool:
    return Path(folder).resolve().is_relative_to(Path(parent).resolve())


def _relative(target: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(Path(target).resolve(), Path(start).resolve())).as_posix()


def _jsonable(value: Any) -> Any:
    """Parameter values as JSON has them (paths and other objects as text)."""
    return json.loads(json.dumps(value, default=str))
