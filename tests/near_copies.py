"""Outputs that look like a working ControlNet's: near-copies of the bundled photos whose edges follow the
photo's own Canny edges to known degrees, plus a blank image and pure noise.

    photo = square_photo("horse.png", 512)
    output = near_copy(photo, "blur")         # what a model that followed its control closely might make
    control = canny(photo)                    # the edge map it was conditioned on

The tiny model's outputs are noise, which never exercises what scoring, comparing and drawing real
outputs does; these do, at the sizes real models generate (256, 512 and 1024 px). Deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import cv2
import numpy as np

IMAGES: Final = Path(__file__).resolve().parent.parent / "manifests" / "images"
PHOTOS: Final = ("astronaut.png", "chelsea.png", "coffee.png", "horse.png")
SIDES: Final = (256, 512, 1024)
# From an output that is its control's own photo, through ones that follow it less and less closely,
# to outputs that do not follow it at all.
KINDS: Final = (
    "identical",
    "shift",  # one pixel to the right, the border repeated (no new edge along it)
    "blur",  # Gaussian, sigma 1 px: weak edges fall below Canny's thresholds
    "jpeg",  # re-encoded at quality 50
    "noisy",  # Gaussian noise, sigma 5 levels
    "rescale",  # 1% larger, centre kept
    "colour",  # red and blue swapped: the same shapes, other gray levels
    "warp",  # a smooth local displacement of up to 3 px (at 512) around the centre
    "blank",  # one flat gray: no edges at all
    "pure_noise",  # uniform random pixels: edges everywhere, none on purpose
)


def square_photo(name: str, side: int) -> np.ndarray:
    """A bundled photo, its centre square resized to side x side, RGB uint8."""
    bgr = cv2.imread(str(IMAGES / name), cv2.IMREAD_COLOR)
    height, width = bgr.shape[:2]
    square = min(height, width)
    top, left = (height - square) // 2, (width - square) // 2
    cropped = cv2.cvtColor(bgr[top : top + square, left : left + square], cv2.COLOR_BGR2RGB)
    interpolation = cv2.INTER_AREA if square > side else cv2.INTER_CUBIC
    return cv2.resize(cropped, (side, side), interpolation=interpolation)


def canny(rgb: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """The Canny edge map rr-controlnet conditions on (0 or 255)."""
    return cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), low, high)


def near_copy(rgb: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """`rgb` changed as `kind` says (one of KINDS), same size, RGB uint8."""
    height, width = rgb.shape[:2]
    rng = np.random.default_rng(seed)
    if kind == "identical":
        return rgb.copy()
    if kind == "shift":
        return cv2.warpAffine(rgb, np.float32([[1, 0, 1], [0, 1, 0]]), (width, height), borderMode=cv2.BORDER_REPLICATE)
    if kind == "blur":
        return cv2.GaussianBlur(rgb, (0, 0), 1.0)
    if kind == "jpeg":
        _, encoded = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, 50])
        return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    if kind == "noisy":
        return np.clip(rgb + rng.normal(0, 5, rgb.shape), 0, 255).astype(np.uint8)
    if kind == "rescale":
        larger = cv2.resize(rgb, (round(width * 1.01), round(height * 1.01)), interpolation=cv2.INTER_CUBIC)
        top, left = (larger.shape[0] - height) // 2, (larger.shape[1] - width) // 2
        return larger[top : top + height, left : left + width].copy()
    if kind == "colour":
        return rgb[:, :, ::-1].copy()
    if kind == "warp":
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        bump = np.exp(-((xs - width / 2) ** 2 + (ys - height / 2) ** 2) / (2 * (min(width, height) / 6) ** 2))
        scale = max(width, height) / 512
        return cv2.remap(rgb, xs + 3 * scale * bump, ys + 2 * scale * bump, cv2.INTER_LINEAR)
    if kind == "blank":
        return np.full_like(rgb, 128)
    if kind == "pure_noise":
        return rng.integers(0, 256, rgb.shape, dtype=np.uint8)
    raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")


def adversarial_maps(side: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(control, output) edge maps built to make matching hard: dense grids and stripes against themselves
    shifted by a pixel, every pixel an edge, random dots, a checkerboard against its complement, dots
    against themselves shifted by the tolerance, a dense and a sparse texture in swapped places, and the
    Canny edges of two unrelated noise images (a control made from noise, an output of noise: the densest
    maps Canny itself draws)."""
    ys, xs = np.mgrid[0:side, 0:side]
    rng = np.random.default_rng(1)
    grid = (xs % 4 == 0) | (ys % 4 == 0)
    stripes = xs % 2 == 0
    full = np.ones((side, side), dtype=bool)

    def dots(density: float) -> np.ndarray:
        return rng.random((side, side)) < density

    maps = {
        "grid": (grid, np.roll(grid, (1, 1), axis=(0, 1))),
        "stripes": (stripes, np.roll(stripes, 1, axis=1)),
        "every pixel": (full, full),
        "random dots": (dots(0.3), dots(0.3)),
        "checkerboard": ((xs + ys) % 2 == 0, (xs + ys) % 2 == 1),
        "dots shifted by the tolerance": (shifted := dots(0.3), np.roll(shifted, int(0.0075 * side * 2**0.5), axis=1)),
        "swapped textures": (
            np.hstack([dense := dots(0.35)[:, : side // 2], sparse := dots(0.1)[:, : side // 2]]),
            np.hstack([sparse, dense]),
        ),
        "noise against other noise": tuple(
            canny(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) > 0 for _ in range(2)
        ),
    }
    return {
        name: (control.astype(np.uint8) * 255, output.astype(np.uint8) * 255)
        for name, (control, output) in maps.items()
    }
