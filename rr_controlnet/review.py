"""Artifacts for reviewing a batch in CI: a contact sheet (overview.png) and a markdown job summary.

Pure Pillow and numpy: nothing here imports torch or rerun, so a CI step can build both from an
output folder alone:

    summary_json = json.loads((out_dir / "summary.json").read_text())
    inputs = {item.id: item.image for item in load_manifest(manifest_path, check_images=False).items}
    write_overview(out_dir, sheet_rows_from_summary(out_dir, summary_json, inputs=inputs))
    append_summary(summary_markdown(summary_json), Path(os.environ["GITHUB_STEP_SUMMARY"]))  # from markdown.py
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image, ImageDraw

from rr_controlnet.files import write_atomic
from rr_controlnet.markdown import TABLE_ROW_LIMIT, bounded, cell
from rr_controlnet.outputs import OVERVIEW_NAME, OVERVIEW_PAGE_PATTERN, STATUSES, listed_file
from rr_controlnet.sweeps import value_text
from rr_controlnet.tiles import (
    BACKGROUND,
    ERROR_LIMIT,
    LINE_HEIGHT,
    MUTED,
    PAD,
    TEXT,
    THUMB_HEIGHT,
    display_rgb,
    f1s,
    file_tile,
    font,
    outcome_tile,
    placeholder,
    shorten,
    status_colour,
    thumbnail,
)

HEADER_HEIGHT: Final = LINE_HEIGHT + 2 * PAD
LABEL_HEIGHT: Final = 2 * LINE_HEIGHT + PAD
PROMPT_LIMIT: Final = 60
# A page of the contact sheet: about 12,000 pixels tall, well within what image viewers open.
ROWS_PER_PAGE: Final = 50
PAGE_FINGERPRINT_KEY: Final = "rr-controlnet-page"
SHEET_LAYOUT_VERSION: Final = 2
COLUMNS: Final = ("input", "canny", "output")


@dataclass(frozen=True)
class SheetRow:
    """One item of the contact sheet; None marks what is not available (shown as a labelled grey tile)."""

    item_id: str
    status: str  # one of outputs.STATUSES
    seed: int
    prompt: str
    input_path: Path | None = None
    canny: np.ndarray | None = field(default=None, compare=False, repr=False)  # HxW or HxWx3, uint8
    output_path: Path | None = None
    error: str | None = None
    adherence: Mapping[str, Any] | None = None  # the item's control adherence scores, when computed


# --- contact sheet ----------------------------------------------------------------------------


def contact_sheet(rows: Sequence[SheetRow]) -> Image.Image:
    """An RGB image: a header with the column names, then per item a label and input, canny and output tiles."""
    tiles = [_row_tiles(row) for row in rows]
    widths = [max([THUMB_HEIGHT] + [row[column].width for row in tiles]) for column in range(len(COLUMNS))]
    row_height = LABEL_HEIGHT + THUMB_HEIGHT + 2 * PAD
    sheet = Image.new("RGB", (PAD + sum(w + PAD for w in widths), HEADER_HEIGHT + len(rows) * row_height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    lefts = [PAD + sum(w + PAD for w in widths[:column]) for column in range(len(COLUMNS))]
    for left, name in zip(lefts, COLUMNS, strict=True):
        draw.text((left, PAD), name, fill=MUTED, font=font())
    for index, (row, row_tiles) in enumerate(zip(rows, tiles, strict=True)):
        top = HEADER_HEIGHT + index * row_height
        _draw_label(draw, (PAD, top), row)
        for left, width, tile in zip(lefts, widths, row_tiles, strict=True):
            sheet.paste(
                tile, (left + (width - tile.width) // 2, top + LABEL_HEIGHT + (THUMB_HEIGHT - tile.height) // 2)
            )
    return sheet


def write_overview(
    out_dir: Path, rows: Sequence[SheetRow], name: str = OVERVIEW_NAME, fingerprint: str | None = None
) -> Path:
    """Write the contact sheet of `rows` to `<out_dir>/<name>` atomically; return its path."""
    return _save_page(contact_sheet(rows), out_dir, name, fingerprint)


def _save_page(page: Image.Image, out_dir: Path, name: str, fingerprint: str | None) -> Path:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if fingerprint is not None:
        info.add_text(PAGE_FINGERPRINT_KEY, fingerprint)
    buffer = io.BytesIO()
    # A moderate compression level: a page of a large batch encodes in under a second, at 10% more bytes.
    page.save(buffer, format="PNG", compress_level=3, pnginfo=info)
    return write_atomic(Path(out_dir) / name, buffer.getvalue())


def overview_page_names(page_count: int) -> list[str]:
    """overview.png for a batch that fits one page, else overview-001.png, overview-002.png, ..."""
    pages = max(1, page_count)
    return [OVERVIEW_NAME] if pages == 1 else [f"overview-{number:03d}.png" for number in range(1, pages + 1)]


def write_overview_pages(
    out_dir: Path,
    summary_json: Mapping[str, Any],
    *,
    inputs: Mapping[str, Path] | None = None,
    canny_for: Callable[[str], np.ndarray | None] | None = None,
) -> list[Path]:
    """The contact sheet of a summary, one page in memory at a time: items ROWS_PER_PAGE a page, then a
    labelled grid page for each sweep (sweep_sheet).

    A page whose items are as they were when it was drawn (a fingerprint in its PNG) is kept as it is,
    so a rerun of a large batch redraws only the pages of the items it changed.
    """
    from rr_controlnet.sweep_sheet import sweep_pages, sweep_sheet

    out_dir = Path(out_dir)
    entries = list(summary_json.get("items", []))
    plain = [entry for entry in entries if not entry.get("sweep")]
    pages: list[tuple[str, list]] = [
        ("rows", plain[start : start + ROWS_PER_PAGE]) for start in range(0, len(plain), ROWS_PER_PAGE)
    ]
    pages += [("sweep", page) for page in sweep_pages([entry for entry in entries if entry.get("sweep")])]
    names = overview_page_names(len(pages))
    paths = []
    for name, (kind, page) in zip(names, pages or [("rows", [])], strict=False):
        fingerprint = _page_fingerprint(page, inputs, kind)
        path = out_dir / name
        if _recorded_fingerprint(path) != fingerprint:
            if kind == "sweep":
                _save_page(sweep_sheet(page, out_dir, canny_for), out_dir, name, fingerprint)
            else:
                rows = sheet_rows_from_summary(out_dir, {"items": page}, inputs=inputs, canny_for=canny_for)
                write_overview(out_dir, rows, name, fingerprint)
        paths.append(path)
    for stale in out_dir.iterdir():
        if (stale.name == OVERVIEW_NAME or OVERVIEW_PAGE_PATTERN.match(stale.name)) and stale.name not in names:
            stale.unlink(missing_ok=True)
    return paths


def _page_fingerprint(
    entries: Sequence[Mapping[str, Any]], inputs: Mapping[str, Path] | None, kind: str = "rows"
) -> str:
    keys = ("id", "status", "seed", "params_hash", "error", "image", "files", "checksums", "adherence", "sweep")
    described = [{key: entry.get(key) for key in keys} for entry in entries]
    extra = {item_id: str(path) for item_id, path in (inputs or {}).items()}
    text = json.dumps([SHEET_LAYOUT_VERSION, kind, described, extra], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _recorded_fingerprint(path: Path) -> str | None:
    try:
        with Image.open(path) as page:
            return page.info.get(PAGE_FINGERPRINT_KEY)
    except (OSError, SyntaxError):
        return None


def _row_tiles(row: SheetRow) -> tuple[Image.Image, Image.Image, Image.Image]:
    canny = thumbnail(display_rgb(row.canny)) if row.canny is not None else placeholder("no edge map")
    return file_tile(row.input_path, "no input"), canny, outcome_tile(row.status, row.error, row.output_path)


def _draw_label(draw: ImageDraw.ImageDraw, origin: tuple[int, int], row: SheetRow) -> None:
    """Two lines: id, status (in its colour), seed and control adherence; then the shortened prompt."""
    left, top = origin
    typeface = font()
    parts = [(row.item_id, TEXT), (f"  {row.status}", status_colour(row.status)), (f"  seed {row.seed}", MUTED)]
    if row.adherence:
        parts.append((f"  edges F1 {f1s(row.adherence)}", MUTED))
    for text, colour in parts:
        draw.text((left, top), text, fill=colour, font=typeface)
        left += round(typeface.getlength(text))
    prompt = shorten(row.prompt, PROMPT_LIMIT) if row.prompt.strip() else "(empty prompt)"
    draw.text((origin[0], top + LINE_HEIGHT), prompt, fill=MUTED, font=typeface)


# --- rows from summary.json -------------------------------------------------------------------


def sheet_rows_from_summary(
    out_dir: Path,
    summary_json: Mapping[str, Any],
    *,
    inputs: Mapping[str, Path] | None = None,
    canny_for: Callable[[str], np.ndarray | None] | None = None,
) -> list[SheetRow]:
    """One row per item of a parsed summary.json, in its order; outputs are the `.png` files it lists in `out_dir`.

    Inputs are the items' recorded `image` paths unless `inputs` maps item ids to others, and
    `canny_for(item_id)` returns an item's edge map; without them the sheet shows "no input" / "no edge map".
    """
    inputs = dict(inputs or {})
    for entry in summary_json.get("items", []):
        if entry.get("image") and entry["id"] not in inputs:
            inputs[entry["id"]] = Path(entry["image"])
    rows = []
    for entry in summary_json.get("items", []):
        item_id = entry["id"]
        rows.append(
            SheetRow(
                item_id=item_id,
                status=entry["status"],
                seed=entry["seed"],
                prompt=(entry.get("params") or {}).get("prompt", ""),
                input_path=inputs.get(item_id),
                canny=canny_for(item_id) if canny_for else None,
                output_path=listed_file(out_dir, entry.get("files") or [], ".png"),
                error=entry.get("error"),
                adherence=entry.get("adherence"),
            )
        )
    return rows


# --- job summary ------------------------------------------------------------------------------


def summary_markdown(summary_json: Mapping[str, Any]) -> str:
    """A GitHub job summary of a parsed summary.json: heading, counts line and one table row per item.

    Past TABLE_ROW_LIMIT items, failed and pending items come first and the rest are counted; the other
    tables stop at that many rows too, and the whole stays within markdown.MAX_BYTES.
    """
    items = summary_json.get("items", [])
    counts = ", ".join(f"{sum(1 for e in items if e['status'] == s)} {s}" for s in STATUSES)
    model = (summary_json.get("model") or {}).get("name", "?")
    lines = [
        f"## rr-controlnet: {cell(summary_json.get('manifest', 'batch'))}",
        "",
        f"{counts} (model {cell(model)})",
        "",
        "| item | status | seed | seconds | files |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    by_status = sorted(items, key=lambda entry: entry["status"] == "done")  # stable: failed and pending first
    shown = list(items) if len(items) <= TABLE_ROW_LIMIT else by_status[:TABLE_ROW_LIMIT]
    lines += [_table_row(entry) for entry in shown]
    if len(items) > len(shown):
        lines += ["", _left_out(by_status[TABLE_ROW_LIMIT:])]
    lines += _adherence_table(items)
    lines += _sweep_tables(items)
    warned = [entry for entry in items if entry.get("warnings")]
    if warned:
        lines += ["", "### Warnings", ""]
        for entry in warned[:TABLE_ROW_LIMIT]:
            lines += [f"- {cell(entry['id'])}: {cell(shorten(warning, ERROR_LIMIT))}" for warning in entry["warnings"]]
        if len(warned) > TABLE_ROW_LIMIT:
            lines.append(f"- ... and {len(warned) - TABLE_ROW_LIMIT:,} more items with warnings (see summary.json)")
    return bounded(lines, "summary.json")


def _left_out(entries: Sequence[Mapping[str, Any]]) -> str:
    statuses = Counter(entry["status"] for entry in entries)
    if set(statuses) == {"done"}:
        return f"... and {len(entries):,} more done items: summary.json lists every item."
    by_status = ", ".join(f"{statuses[status]:,} {status}" for status in STATUSES if statuses[status])
    return f"... and {len(entries):,} more items ({by_status}): summary.json lists every item."


def _adherence_table(items: Sequence[Mapping[str, Any]]) -> list[str]:
    scored = [entry for entry in items if entry.get("adherence")]
    if not scored:
        return []
    lines = [
        "",
        "### Control adherence",
        "",
        "Canny edges of each output against its control map: F1 pixel-exact / within "
        f"{scored[0]['adherence']['tolerance_px']:.1f} px (0.75% of the diagonal), precision, recall, SSIM.",
        "",
        "| item | F1 | F1 (tolerant) | precision | recall | SSIM |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in scored[:TABLE_ROW_LIMIT]:
        strict, tolerant = entry["adherence"]["strict"], entry["adherence"]["tolerant"]
        cells = [f"{strict['f1']:.1%}", f"{tolerant['f1']:.1%}", f"{strict['precision']:.1%}"]
        cells += [f"{strict['recall']:.1%}", f"{entry['adherence']['ssim']:.3f}"]
        lines.append(f"| {cell(entry['id'])} | " + " | ".join(cells) + " |")
    if len(scored) > TABLE_ROW_LIMIT:
        lines += ["", f"... and {len(scored) - TABLE_ROW_LIMIT:,} more scored items: summary.json has every score."]
    return lines


def _sweep_tables(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each sweep's variants under its source item, with the full swept values; TABLE_ROW_LIMIT rows in all."""
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for entry in items:
        if entry.get("sweep"):
            by_source.setdefault(entry["sweep"]["source"], []).append(entry)
    if not by_source:
        return []
    lines = ["", "### Sweeps"]
    rows_left = TABLE_ROW_LIMIT
    for number, (source, variants) in enumerate(by_source.items()):
        if rows_left == 0:
            rest = list(by_source.values())[number:]
            lines += [
                "",
                f"... and {len(rest):,} more sweeps ({sum(map(len, rest)):,} variants): summary.json lists every "
                "variant with its values.",
            ]
            break
        fields = list(variants[0]["sweep"]["values"])
        lines += [
            "",
            f"**{cell(source)}**: {len(variants)} variant{'s' if len(variants) != 1 else ''} of {' x '.join(fields)}",
            "",
            "| variant | " + " | ".join(fields) + " | status | F1 | F1 (tolerant) |",
            "| --- | " + " | ".join("---" for _ in fields) + " | --- | ---: | ---: |",
        ]
        for entry in variants[:rows_left]:
            adherence = entry.get("adherence") or {}
            scores = [f"{adherence[kind]['f1']:.1%}" if adherence else "" for kind in ("strict", "tolerant")]
            values = [cell(value_text(entry["sweep"]["values"].get(field, ""))) for field in fields]
            lines.append("| " + " | ".join([cell(entry["id"]), *values, entry["status"], *scores]) + " |")
        if len(variants) > rows_left:
            lines += ["", f"... and {len(variants) - rows_left:,} more variants of {cell(source)}."]
        rows_left = max(0, rows_left - len(variants))
    return lines


def _table_row(entry: Mapping[str, Any]) -> str:
    status = entry["status"]
    if status == "failed":
        status = f"**failed**: {shorten(entry.get('error') or 'no reason given', ERROR_LIMIT)}"
    seconds = entry.get("seconds")
    cells = [
        entry["id"],
        status,
        entry["seed"],
        "" if seconds is None else f"{seconds:.1f}",
        ", ".join(entry.get("files") or []),
    ]
    return "| " + " | ".join(cell(value) for value in cells) + " |"
