"""Tiles of the contact sheets: thumbnails, labelled placeholders, fonts and colours (Pillow only)."""

from __future__ import annotations

import textwrap
from functools import cache
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rr_controlnet.errors import ItemFailed
from rr_controlnet.images import load_image
from rr_controlnet.outputs.records import Adherence

THUMB_HEIGHT: Final = 192
MAX_THUMB_ASPECT: Final = 2  # panoramas shrink rather than widen the sheet
PAD: Final = 8
FONT_SIZE: Final = 14
LINE_HEIGHT: Final = 20
ERROR_LIMIT: Final = 200
BACKGROUND: Final = (255, 255, 255)
TRANSPARENT_BACKDROP: Final = (128, 128, 128)
PLACEHOLDER_FILL: Final = (224, 224, 224)
TEXT: Final = (36, 41, 47)
MUTED: Final = (101, 109, 118)
STATUS_COLOURS: Final = {"done": (26, 127, 55), "failed": (207, 34, 46), "pending": (101, 109, 118)}


def file_tile(path: Path | None, absent: str, height: int = THUMB_HEIGHT) -> Image.Image:
    """The image at `path` as a thumbnail, or a tile saying why there is none."""
    if path is None:
        return placeholder(absent, side=height)
    if not path.is_file():
        return placeholder(f"missing: {path.name}", side=height)
    try:
        return thumbnail(display_rgb(load_image(path).pixels), height)
    except ItemFailed:
        return placeholder(f"unreadable: {path.name}", side=height)


def display_rgb(pixels: np.ndarray) -> Image.Image:
    """An RGB view of gray, RGB or RGBA pixels; transparency shows a grey backdrop."""
    pixels = np.asarray(pixels)
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8) * 255
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if image.mode == "RGBA":
        backdrop = Image.new("RGBA", image.size, TRANSPARENT_BACKDROP)
        return Image.alpha_composite(backdrop, image).convert("RGB")
    return image.convert("RGB")


def thumbnail(image: Image.Image, height: int = THUMB_HEIGHT) -> Image.Image:
    """`image` scaled to `height`, aspect kept, at most MAX_THUMB_ASPECT times as wide."""
    scale = min(height / image.height, MAX_THUMB_ASPECT * height / image.width)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def outcome_tile(status: str, error: str | None, output: Path | None, side: int = THUMB_HEIGHT) -> Image.Image:
    """An item's output as a tile: the image once done; otherwise its status, a failure with its reason."""
    if status == "failed":
        return placeholder(f"failed: {error or 'no reason given'}", STATUS_COLOURS["failed"], side)
    if status == "pending":
        return placeholder("pending", side=side)
    return file_tile(output, "no output", side)


def fit_within(tile: Image.Image, side: int) -> Image.Image:
    """`tile` scaled down, aspect kept, to fit a side x side square (a grid cell)."""
    scale = min(1.0, side / tile.width, side / tile.height)
    if scale == 1.0:
        return tile
    size = (max(1, round(tile.width * scale)), max(1, round(tile.height * scale)))
    return tile.resize(size, Image.Resampling.LANCZOS)


def placeholder(message: str, colour: tuple[int, int, int] = MUTED, side: int = THUMB_HEIGHT) -> Image.Image:
    """A square grey tile with `message` wrapped inside it."""
    tile = Image.new("RGB", (side, side), PLACEHOLDER_FILL)
    draw = ImageDraw.Draw(tile)
    typeface = font()
    chars_per_line = max(1, int((side - 2 * PAD) / typeface.getlength("n")))
    max_lines = max(1, (side - 2 * PAD) // LINE_HEIGHT)
    lines = textwrap.wrap(shorten(message, ERROR_LIMIT), chars_per_line, max_lines=max_lines, placeholder=" …")
    for number, line in enumerate(lines):
        draw.text((PAD, PAD + number * LINE_HEIGHT), line, fill=colour, font=typeface)
    return tile


def f1s(adherence: Adherence) -> str:
    """Pixel-exact / tolerant F1, as the sheets label an output."""
    return f"{adherence.strict.f1:.0%} / {adherence.tolerant.f1:.0%}"


def status_colour(status: str) -> tuple[int, int, int]:
    return STATUS_COLOURS.get(status, TEXT)


@cache
def font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at a readable size; its small bitmap font where FreeType is missing."""
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except ImportError:
        return ImageFont.load_default()


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "…"
