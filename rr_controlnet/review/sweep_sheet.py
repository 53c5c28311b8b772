"""A sweep's page of the contact sheet: its input and edge map beside a labelled grid of the variants.

Rows follow the first swept field and columns the second, each labelled with its values (shortened:
summary.md has them in full); under each output, its control adherence or status. Further swept
fields give further pages, as do grids of more than SWEEP_GRID_ROWS rows. When the sweep changes the
edge map (canny thresholds, size, resize), each cell shows its variant's own beside its output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image, ImageDraw

from rr_controlnet.manifest.sweep_names import axis_label
from rr_controlnet.manifest.sweeps import EDGE_MAP_FIELDS
from rr_controlnet.outputs import ItemOutcome
from rr_controlnet.outputs.names import IMAGE_SUFFIX
from rr_controlnet.recording.layout import sweep_page, sweep_tab_name
from rr_controlnet.review.tiles import (
    BACKGROUND,
    LINE_HEIGHT,
    MUTED,
    PAD,
    STATUS_COLOURS,
    TEXT,
    display_rgb,
    f1s,
    file_tile,
    fit_within,
    font,
    outcome_tile,
    placeholder,
    shorten,
    status_colour,
    thumbnail,
)
from rr_controlnet.spec import SweepPlace

CELL: Final = 160  # output thumbnails of a sweep grid
LABEL_CHARS: Final = 24


def sweep_pages(variants: Sequence[ItemOutcome]) -> list[list[ItemOutcome]]:
    """Sweep variants' outcomes grouped into pages: by source item, by the values of further swept fields,
    and SWEEP_GRID_ROWS rows at a time; in the order the sources first appear."""
    pages: dict[tuple, list[ItemOutcome]] = {}
    for outcome in variants:
        pages.setdefault((outcome.sweep.source, *sweep_page(outcome.sweep)), []).append(outcome)
    return list(pages.values())


def sweep_sheet(
    entries: Sequence[ItemOutcome], out_dir: Path, canny_for: Callable[[str], np.ndarray | None] | None
) -> Image.Image:
    """One page: header, input and edge map on the left, the grid of outputs on the right."""
    places = [entry.sweep for entry in entries]
    first = places[0]
    rows = sorted({place.coordinates[0] for place in places})
    columns = sorted({place.coordinates[1] if len(place.coordinates) > 1 else 0 for place in places})
    cells = {(place.coordinates[0], place.coordinates[1] if len(place.coordinates) > 1 else 0): (entry, place)
             for entry, place in zip(entries, places, strict=True)}  # fmt: skip
    typeface = font()
    own_edge_maps = canny_for is not None and any(field in EDGE_MAP_FIELDS for fields in first.axes for field in fields)
    cell_width = 2 * CELL + PAD if own_edge_maps else CELL
    row_label_width = max(round(typeface.getlength(shorten(_row_label(cells, row), LABEL_CHARS))) for row in rows) + PAD
    cell_height = CELL + LINE_HEIGHT + PAD
    header = 2 * LINE_HEIGHT + 2 * PAD
    side_column = CELL + 2 * PAD
    width = side_column + row_label_width + len(columns) * (cell_width + PAD) + PAD
    height = header + LINE_HEIGHT + max(len(rows) * cell_height, 2 * (CELL + LINE_HEIGHT)) + PAD
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, PAD), sweep_tab_name(first.source, first), fill=TEXT, font=typeface)
    counts = ", ".join(f"{sum(entry.status == status for entry in entries)} {status}" for status in STATUS_COLOURS)
    draw.text((PAD, PAD + LINE_HEIGHT), f"{len(entries)} variants: {counts}", fill=MUTED, font=typeface)

    top = header
    input_path = Path(entries[0].image) if entries[0].image else None
    draw.text((PAD, top), "input", fill=MUTED, font=typeface)
    sheet.paste(fit_within(file_tile(input_path, "no input", CELL), CELL), (PAD, top + LINE_HEIGHT))
    if not own_edge_maps:
        draw.text((PAD, top + LINE_HEIGHT + CELL + PAD), "canny", fill=MUTED, font=typeface)
        sheet.paste(_edge_tile(canny_for, entries[0].id), (PAD, top + 2 * LINE_HEIGHT + CELL + PAD))

    grid_left = side_column + row_label_width
    for index, column in enumerate(columns):
        label = _column_label(cells, column)
        draw.text((grid_left + index * (cell_width + PAD), top), shorten(label, LABEL_CHARS), fill=MUTED, font=typeface)
    for row_index, row in enumerate(rows):
        y = top + LINE_HEIGHT + row_index * cell_height
        draw.text((side_column, y + CELL // 2), shorten(_row_label(cells, row), LABEL_CHARS), fill=MUTED, font=typeface)
        for index, column in enumerate(columns):
            if (row, column) not in cells:
                continue
            entry, _ = cells[(row, column)]
            x = grid_left + index * (cell_width + PAD)
            if own_edge_maps:
                edges = _edge_tile(canny_for, entry.id)
                sheet.paste(edges, (x + (CELL - edges.width) // 2, y + (CELL - edges.height) // 2))
                x += CELL + PAD
            tile = _cell_tile(entry, out_dir)
            sheet.paste(tile, (x + (CELL - tile.width) // 2, y + (CELL - tile.height) // 2))
            caption = f"F1 {f1s(entry.adherence)}" if entry.adherence else entry.status
            draw.text((x, y + CELL + 2), caption, fill=status_colour(entry.status), font=typeface)
    return sheet


def _row_label(cells: Mapping[tuple[int, int], tuple[ItemOutcome, SweepPlace]], row: int) -> str:
    place = next(place for (cell_row, _), (_, place) in cells.items() if cell_row == row)
    return axis_label(place, 0)


def _column_label(cells: Mapping[tuple[int, int], tuple[ItemOutcome, SweepPlace]], column: int) -> str:
    place = next(place for (_, cell_column), (_, place) in cells.items() if cell_column == column)
    return axis_label(place, 1) if len(place.axes) > 1 else ""


def _edge_tile(canny_for: Callable[[str], np.ndarray | None] | None, item_id: str) -> Image.Image:
    canny = canny_for(item_id) if canny_for else None
    tile = thumbnail(display_rgb(canny), CELL) if canny is not None else placeholder("no edge map", side=CELL)
    return fit_within(tile, CELL)


def _cell_tile(entry: ItemOutcome, out_dir: Path) -> Image.Image:
    return fit_within(outcome_tile(entry.status, entry.error, entry.file(out_dir, IMAGE_SUFFIX), CELL), CELL)
