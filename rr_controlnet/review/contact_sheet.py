"""The contact sheet: overview.png, or overview-001.png, ... for large batches (ROWS_PER_PAGE items a
page), and a labelled grid page per sweep (sweep_sheet). Pillow and numpy only: drawn from the batch's
outcomes and the item files, never from a model.

    write_overview_pages(folder, summary, canny_for=lambda item_id: edges[item_id])
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image, ImageDraw

from rr_controlnet.outputs import BatchSummary, ItemOutcome, OutputFolder
from rr_controlnet.outputs.files import write_atomic
from rr_controlnet.outputs.names import IMAGE_SUFFIX, OVERVIEW_NAME, is_overview_page
from rr_controlnet.outputs.records import Adherence
from rr_controlnet.review.sweep_sheet import sweep_pages, sweep_sheet
from rr_controlnet.review.tiles import (
    BACKGROUND,
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
EdgeMaps = Callable[[str], np.ndarray | None]  # an item's edge map by id, or None


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
    adherence: Adherence | None = None  # the item's control adherence scores, when computed


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


def write_overview_pages(folder: OutputFolder, summary: BatchSummary, canny_for: EdgeMaps | None = None) -> list[Path]:
    """The contact sheet of a batch, one page in memory at a time: items ROWS_PER_PAGE a page, then a
    labelled grid page for each sweep (sweep_sheet).

    A page whose items are as they were when it was drawn (a fingerprint in its PNG) is kept as it is,
    so a rerun of a large batch redraws only the pages of the items it changed.
    """

    out_dir = folder.path
    plain = [outcome for outcome in summary.items if outcome.sweep is None]
    pages: list[tuple[str, list[ItemOutcome]]] = [
        ("rows", plain[start : start + ROWS_PER_PAGE]) for start in range(0, len(plain), ROWS_PER_PAGE)
    ]
    pages += [("sweep", page) for page in sweep_pages([outcome for outcome in summary.items if outcome.sweep])]
    names = overview_page_names(len(pages))
    paths = []
    for name, (kind, page) in zip(names, pages or [("rows", [])], strict=False):
        fingerprint = _page_fingerprint(page, kind)
        path = out_dir / name
        if _recorded_fingerprint(path) != fingerprint:
            if kind == "sweep":
                _save_page(sweep_sheet(page, out_dir, canny_for), out_dir, name, fingerprint)
            else:
                write_overview(out_dir, sheet_rows(folder, page, canny_for), name, fingerprint)
        paths.append(path)
    for stale in out_dir.iterdir():
        if is_overview_page(stale.name) and stale.name not in names:
            stale.unlink(missing_ok=True)
    return paths


def _page_fingerprint(outcomes: Sequence[ItemOutcome], kind: str = "rows") -> str:
    keys = ("id", "status", "seed", "params_hash", "error", "image", "files", "checksums", "adherence", "sweep")
    described = [{key: document[key] for key in keys} for document in map(ItemOutcome.to_document, outcomes)]
    text = json.dumps([SHEET_LAYOUT_VERSION, kind, described], sort_keys=True, default=str)
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


# --- rows from the outcomes ---------------------------------------------------------------------


def sheet_rows(
    folder: OutputFolder, outcomes: Sequence[ItemOutcome], canny_for: EdgeMaps | None = None
) -> list[SheetRow]:
    """One row per outcome, in order: its recorded input image, its edge map from `canny_for(item_id)` ("no
    edge map" without it), and the output `.png` it lists in the folder."""
    return [
        SheetRow(
            item_id=outcome.id,
            status=outcome.status,
            seed=outcome.seed,
            prompt=outcome.params.get("prompt", ""),
            input_path=Path(outcome.image) if outcome.image else None,
            canny=canny_for(outcome.id) if canny_for else None,
            output_path=outcome.file(folder.path, IMAGE_SUFFIX),
            error=outcome.error,
            adherence=outcome.adherence,
        )
        for outcome in outcomes
    ]
