"""The batch's review page: OUT/index.html, built from summary.json and the items' review files.

    OUT/index.html          the page (static: opens from file:// with no server, offline)
    OUT/review/data.js      every item, compact: sets window.RR_REVIEW (pages opened from file:// may
                            not fetch files, so data travels as a script)
    OUT/review/links.js     pages made after the batch: the comparison, marked when out of date
                            (links.py); sets window.RR_REVIEW_LINKS
    OUT/review/*.js, review.css         the page's own code, shipped in the package as they are
    OUT/review/items/<id>/  each item's thumbnails, filmstrip and info.js (items.py)

Items whose review files are missing or no longer match their output get them made from the item's own
files (recorded.py) while the page is written.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from rr_controlnet.manifest.sweep_names import alias, axis_label, value_text
from rr_controlnet.outputs import BatchSummary, ItemOutcome
from rr_controlnet.outputs.files import write_atomic
from rr_controlnet.outputs.names import OVERVIEW_NAME, is_overview_page
from rr_controlnet.outputs.records import Adherence, folder_relative, model_paths_relative, unit_paths_relative
from rr_controlnet.review.pages.from_files import images_from_files, input_image
from rr_controlnet.review.pages.html import DATA_NAME, LINKS_NAME, PAGE_NAME, copy_page_assets, data_script, page_html
from rr_controlnet.review.pages.items import (
    ASSET_NAMES,
    REVIEW_FOLDER,
    ItemImages,
    is_plain_id,
    output_made_from,
    page_lock,
    read_item_info,
    write_item_assets,
)
from rr_controlnet.review.pages.links import write_review_links

# page.js and open_viewer.js: shared with the comparison
PAGE_SCRIPTS: Final = ("page.js", "sweeps.js", "detail.js", "review.js", "open_viewer.js")
PAGE_ASSETS: Final = (*PAGE_SCRIPTS, "review.css")
STATUS_ORDER: Final = ("failed", "pending", "done")
# Failed items show their input beside the reason; past this many, the rest show the reason alone
# (each costs decoding an input image).
FAILED_INPUTS_LIMIT: Final = 200
DATA_FORMAT: Final = 1
# The scores each item carries, as a list in this order (compact for 20,000 items); data.js names them.
SCORE_NAMES: Final = ("f1", "f1_tolerant", "precision", "recall", "ssim")


def write_review_page(
    out_dir: Path,
    summary: BatchSummary,
    log: Callable[[str], None] | None = None,
    overview: Sequence[str] | None = None,
) -> Path:
    """index.html and review/ for a batch in `out_dir`; returns the page's path. `overview`: the contact
    sheet's pages (those in the folder without it).

    One process writes a folder's page at a time (page_lock). Raises OutputWriteError when the page cannot
    be written, OutputFolderError when another process holds the page too long; an item whose review files
    cannot be made is shown without them.
    """
    out_dir = Path(out_dir)
    log = log or (lambda message: None)
    review = out_dir / REVIEW_FOLDER
    with page_lock(review):
        infos = current_item_infos(out_dir, summary.items, log)
        overview = list(overview) if overview is not None else overview_pages(out_dir)
        data = page_data(summary, infos, overview, out_dir)
        copy_page_assets(review, PAGE_ASSETS)
        write_atomic(review / DATA_NAME, data_script("RR_REVIEW", data))
        write_review_links(out_dir, summary)
        return write_atomic(out_dir / PAGE_NAME, page_html(data["title"], [DATA_NAME, LINKS_NAME, *PAGE_SCRIPTS]))


# --- the items' review files -------------------------------------------------------------------------


def current_item_infos(
    out_dir: Path, outcomes: Sequence[ItemOutcome], log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Each item's info.js where it matches the item's outcome; missing or stale ones are made again from
    the item's files (done items) or its input image (failed items, up to FAILED_INPUTS_LIMIT)."""

    infos: dict[str, dict[str, Any]] = {}
    made = 0
    failed_inputs = 0
    for outcome in outcomes:
        item_id, status = outcome.id, outcome.status
        if not is_plain_id(item_id) or status not in ("done", "failed"):
            continue
        info = read_item_info(out_dir, item_id)
        if status == "done":
            wanted = output_made_from(outcome)
            if info is None or (wanted is not None and info.get("made_from") != wanted):
                made_now = _made(
                    out_dir, item_id, lambda outcome=outcome: images_from_files(out_dir, outcome), wanted or "", log
                )
                info = made_now
                made += info is not None
        else:
            wanted = _input_stamp(outcome.image, out_dir)
            if wanted is None:
                continue
            if info is None or info.get("made_from") != wanted:
                if failed_inputs >= FAILED_INPUTS_LIMIT:
                    continue
                failed_inputs += 1
                pixels = input_image(Path(outcome.image))
                if pixels is None:
                    continue
                info = _made(out_dir, item_id, lambda pixels=pixels: ItemImages(input=pixels), wanted, log)
        if info is not None:
            infos[item_id] = info
    if made:
        log(f"note: review images made from the item files of {made} item{'s' if made != 1 else ''}")
    return infos


def _made(
    out_dir: Path, item_id: str, images: Callable[[], ItemImages], made_from: str, log: Callable[[str], None]
) -> dict[str, Any] | None:
    try:
        return write_item_assets(out_dir, item_id, images(), made_from)
    except (OSError, ValueError) as exc:
        log(f"item {item_id!r}: warning: review images not written ({exc})")
        return None


def _input_stamp(image: Any, out_dir: Path) -> str | None:
    """What a failed item's input thumbnail is made from: the input file as it is now (named relative to
    `out_dir`, as info.js shows it)."""
    if not isinstance(image, str) or not image:
        return None
    try:
        stats = os.stat(image)
    except OSError:
        return None
    return f"input:{folder_relative(image, out_dir)}:{stats.st_size}:{stats.st_mtime_ns}"


def overview_pages(out_dir: Path) -> list[str]:
    """The contact sheet's pages in the folder, in order."""
    if (Path(out_dir) / OVERVIEW_NAME).is_file():
        return [OVERVIEW_NAME]
    try:
        names = [entry.name for entry in os.scandir(out_dir) if is_overview_page(entry.name)]
    except OSError:
        return []
    return sorted(names)


# --- the page's data ---------------------------------------------------------------------------------


def page_data(
    summary: BatchSummary,
    infos: Mapping[str, Mapping[str, Any]],
    overview: Sequence[str] = (),
    folder: Path | None = None,
) -> dict[str, Any]:
    """What the page shows, compact: the batch's header (paths relative to the output `folder`), parameters
    common to every item once, then per item what differs; items failed first, then pending, then done,
    each in manifest order."""
    outcomes = summary.items
    # As summary.json names them: a unit's map relative to the folder.
    all_params = [unit_paths_relative(outcome.params, folder) for outcome in outcomes]
    common = common_params(all_params)
    sweeps, sweep_index = sweep_tables(outcomes)
    items = []
    for number, (outcome, params) in enumerate(zip(outcomes, all_params, strict=True)):
        item = item_data(replace(outcome, params=params), common, infos.get(outcome.id))
        item["n"] = number
        if outcome.sweep is not None:
            item["sweep"] = [sweep_index[outcome.sweep.source], list(outcome.sweep.coordinates)]
        items.append(item)
    items.sort(key=lambda item: (_status_rank(item["status"]), item["n"]))
    counts = Counter(outcome.status for outcome in outcomes)
    return {
        "format": DATA_FORMAT,
        "title": f"rr-controlnet: {Path(summary.manifest).name or 'batch'}",
        "manifest": folder_relative(summary.manifest, folder),
        "model": model_paths_relative(summary.model, folder),
        "counts": {status: counts.get(status, 0) for status in STATUS_ORDER[::-1]},
        "versions": summary.versions,
        "run": summary.run,
        "shard": summary.shard,
        "files": {"summary": ["summary.json", "summary.md"], "overview": list(overview)},
        "asset_names": ASSET_NAMES,
        "score_names": list(SCORE_NAMES),
        "param_order": list(next((outcome.params for outcome in outcomes if outcome.params), {})),
        "common": common,
        "sweeps": sweeps,
        "items": items,
    }


def _status_rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def common_params(all_params: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Each parameter's most frequent value: written once, so that an item carries only what differs (a
    prompt sweep's variants carry their prompts; the rest share the batch's)."""
    counts: dict[str, Counter] = {}
    for params in all_params:
        for key, value in params.items():
            try:
                counts.setdefault(key, Counter())[value] += 1
            except TypeError:  # an unhashable value stays with its item
                counts.setdefault(key, Counter())
    return {key: counter.most_common(1)[0][0] for key, counter in counts.items() if counter}


def item_data(outcome: ItemOutcome, common: Mapping[str, Any], info: Mapping[str, Any] | None) -> dict[str, Any]:
    """One item for the page: its outcome (parameters that differ from `common`) and its review files."""
    params = outcome.params
    item: dict[str, Any] = {"id": outcome.id, "status": outcome.status, "seed": outcome.seed}
    if outcome.error:
        item["error"] = outcome.error
    if outcome.seconds is not None:
        item["seconds"] = outcome.seconds
    differing = {key: value for key, value in params.items() if key not in common or common[key] != value}
    if differing:
        item["params"] = differing
    elif not params:  # an item no run has reported on (a merged shard's): it has no parameters to show
        item["params"] = None
    scores = adherence_scores(outcome.adherence)
    if scores is not None:
        item["scores"] = scores
    if outcome.size:
        item["size"] = outcome.size
    if outcome.params_hash:
        item["hash"] = outcome.params_hash
    if outcome.files:
        item["files"] = [[name, (outcome.checksums.get(name) or {}).get("bytes")] for name in outcome.files]
    if outcome.warnings:
        item["warnings"] = list(outcome.warnings)
    if info is not None:
        assets = dict(info.get("assets") or {})
        if item["status"] != "done":  # a failed item's folder may still hold an earlier run's output
            assets = {kind: size for kind, size in assets.items() if kind == "input"}
        if assets:
            item["assets"] = assets
        if "steps" in assets and info.get("steps"):
            item["steps"] = info["steps"]
    return item


def adherence_scores(adherence: Adherence | None) -> list[float] | None:
    """The scores SCORE_NAMES names, in its order (the page reads them by name), or None when not scored."""
    if adherence is None:
        return None
    scores = adherence.scalars()
    return [scores[name] for name in SCORE_NAMES]


def sweep_tables(outcomes: Sequence[ItemOutcome]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Each swept item's grid: its axes (fields of each), how many values each has and every value's
    label; with the index of each source."""

    tables: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for outcome in outcomes:
        place = outcome.sweep
        if place is None:
            continue
        if place.source not in index:
            index[place.source] = len(tables)
            tables.append(
                {
                    "source": place.source,
                    "axes": [list(fields) for fields in place.axes],
                    "names": ["+".join(alias(field) for field in fields) for fields in place.axes],
                    "shape": list(place.shape),
                    "labels": [[""] * size for size in place.shape],
                    "values": [[""] * size for size in place.shape],
                }
            )
        table = tables[index[place.source]]
        for axis, coordinate in enumerate(place.coordinates[: len(table["shape"])]):
            if 0 <= coordinate < table["shape"][axis] and not table["labels"][axis][coordinate]:
                table["labels"][axis][coordinate] = axis_label(place, axis)
                fields = place.axes[axis]
                table["values"][axis][coordinate] = ", ".join(value_text(place.values[field]) for field in fields)
    return tables, index
