"""Small image files for the review page: JPEG thumbnails, low-bit PNG edge maps, one filmstrip per item.

Pillow and numpy only. Edge maps keep every edge when they shrink (a block is an edge when any of its
pixels is), where a smooth resize would fade one-pixel lines to nothing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Final

import numpy as np
from PIL import Image

from rr_controlnet.review.tiles import display_rgb

THUMB_SIDE: Final = 160  # the table's and the sweep grids' thumbnails, longer side
INPUT_SIDE: Final = 256  # the input, shown small in the table and larger in an item's detail
EDGE_SIDE: Final = 512  # edge maps and overlays: full size up to this, shrunk by max-pooling past it
LARGE_SIDE: Final = 512  # compare page: both outputs and their difference, same size, for flicking
FRAME_HEIGHT: Final = 96  # a filmstrip frame's height at most (x0 previews are 1/8 of the output: often smaller)
JPEG_QUALITY: Final = 82


def rgb_image(pixels: np.ndarray) -> Image.Image:
    """An RGB image of gray, RGB or RGBA uint8 pixels; transparency shows over mid grey."""

    return display_rgb(pixels)


def jpeg(image: Image.Image, side: int, quality: int = JPEG_QUALITY) -> tuple[bytes, tuple[int, int]]:
    """`image` shrunk (never enlarged) to fit side x side, as JPEG bytes, with its size."""
    image = image.convert("RGB")
    if max(image.size) > side:
        image = image.copy()
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue(), image.size


def max_pooled(pixels: np.ndarray, side: int) -> np.ndarray:
    """`pixels` (HxW or HxWxC) shrunk by a whole factor to fit `side`, each block its maximum."""
    height, width = pixels.shape[:2]
    factor = -(-max(height, width) // side)  # ceiling division
    if factor <= 1:
        return pixels
    padded_height, padded_width = -(-height // factor) * factor, -(-width // factor) * factor
    padding = [(0, padded_height - height), (0, padded_width - width)] + [(0, 0)] * (pixels.ndim - 2)
    padded = np.pad(pixels, padding)
    blocks = padded.reshape(padded_height // factor, factor, padded_width // factor, factor, *pixels.shape[2:])
    return blocks.max(axis=(1, 3))


def edge_png(edges: np.ndarray) -> tuple[bytes, tuple[int, int]]:
    """A Canny edge map (HxW, 0 or 255; or HxWx3) as a 1-bit PNG, at most EDGE_SIDE on its longer side."""
    edges = np.asarray(edges)
    if edges.ndim == 3:
        edges = edges.max(axis=2)
    binary = max_pooled(edges > 0, EDGE_SIDE)
    image = Image.fromarray(binary.astype(np.uint8) * 255).convert("1")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), image.size


def palette_png(pixels: np.ndarray) -> tuple[bytes, tuple[int, int]]:
    """An RGB image of few colours (an adherence overlay: black, white, red, blue) as a palette PNG, at
    most EDGE_SIDE on its longer side; an RGB PNG when it has more than 256 colours."""
    pixels = max_pooled(np.asarray(pixels, dtype=np.uint8)[:, :, :3], EDGE_SIDE)
    keys = (pixels[..., 0].astype(np.uint32) << 16) | (pixels[..., 1].astype(np.uint32) << 8) | pixels[..., 2]
    colours, indices = np.unique(keys.ravel(), return_inverse=True)
    if len(colours) <= 256:
        height, width = keys.shape
        image = Image.frombytes("P", (width, height), indices.astype(np.uint8).tobytes())
        palette = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(np.uint8)
        image.putpalette(palette.ravel().tolist())
        bits = max(1, int(np.ceil(np.log2(max(2, len(colours))))))
        options = {"bits": 2 if bits <= 2 else 4 if bits <= 4 else 8}
    else:
        image, options = Image.fromarray(pixels), {}
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue(), image.size


def filmstrip(frames: Sequence[np.ndarray], height: int = FRAME_HEIGHT) -> tuple[bytes, tuple[int, int]] | None:
    """Frames side by side in one JPEG, each scaled to one size (at most `height` tall); with the size of
    one frame. None without frames."""
    if not frames:
        return None
    images = [rgb_image(frame) for frame in frames]
    width, frame_height = images[-1].size
    if frame_height > height:
        width, frame_height = max(1, round(width * height / frame_height)), height
    strip = Image.new("RGB", (width * len(images), frame_height))
    for index, image in enumerate(images):
        if image.size != (width, frame_height):
            image = image.resize((width, frame_height), Image.Resampling.LANCZOS)
        strip.paste(image, (index * width, 0))
    buffer = io.BytesIO()
    strip.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue(), (width, frame_height)
