"""How two outputs of one item differ: the image metrics, in one table that every report renders, and the
difference heat map.

    difference = output_difference(baseline_pixels, new_pixels)
    rows = metric_rows(difference)  # [("mean difference", "0.42 of 255"), ...]

IMAGE_METRICS is the one list of metrics: compare.md's columns, compare.rrd's item text and the comparison
page's rows all come from it (compare.json holds ImageDifference as is). A new metric is a field of
ImageDifference, a line in output_difference and a row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from rr_controlnet.images import load_image
from rr_controlnet.review.adherence import ssim_window

HEATMAP_FULL_SCALE: Final = 64  # levels of mean absolute difference drawn white hot


@dataclass(frozen=True)
class ImageDifference:
    max_abs: int  # 0..255
    mean_abs: float
    psnr: float | None  # None: identical images (infinite)
    ssim: float
    cosine_distance: float  # 1 - cosine similarity of the flattened images, as diffusers' tests measure


@dataclass(frozen=True)
class ImageMetric:
    field: str  # of ImageDifference
    label: str  # as a row heading (the page, compare.rrd)
    column: str  # as compare.md's column heading
    text: Callable[[float | None], str]  # the value as every report shows it


IMAGE_METRICS: Final = (
    ImageMetric("mean_abs", "mean difference", "mean diff", lambda value: f"{value:.2f} of 255"),
    ImageMetric("max_abs", "max difference", "max diff", lambda value: f"{value}"),
    ImageMetric("psnr", "PSNR", "PSNR", lambda value: "identical" if value is None else f"{value:.1f} dB"),
    ImageMetric("ssim", "SSIM", "SSIM", lambda value: f"{value:.4f}"),
    ImageMetric("cosine_distance", "cosine distance", "cosine distance", lambda value: f"{value:.2e}"),
)


def metric_rows(image: ImageDifference) -> list[tuple[str, str]]:
    """Each metric's label and its value as text, in IMAGE_METRICS' order."""
    return [(metric.label, metric.text(getattr(image, metric.field))) for metric in IMAGE_METRICS]


def output_difference(before: np.ndarray, after: np.ndarray) -> ImageDifference:
    """Max and mean absolute difference (0..255), PSNR, SSIM and cosine distance of two same-size images."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    before, after = np.asarray(before), np.asarray(after)
    difference = np.abs(before.astype(np.int16) - after.astype(np.int16))
    identical = not difference.any()
    window = ssim_window(before.shape)
    ssim = (
        1.0
        if identical or window < 3
        else structural_similarity(before, after, channel_axis=-1, data_range=255, win_size=window)
    )
    return ImageDifference(
        max_abs=int(difference.max()),
        mean_abs=round(float(difference.mean()), 6),
        psnr=None if identical else round(float(peak_signal_noise_ratio(before, after, data_range=255)), 4),
        ssim=round(float(ssim), 6),
        cosine_distance=cosine_distance(before, after),
    )


def cosine_distance(first: np.ndarray, second: np.ndarray) -> float:
    """1 - cosine similarity of two arrays, flattened (diffusers' numpy_cosine_similarity_distance)."""
    a, b = np.asarray(first, dtype=np.float64).ravel(), np.asarray(second, dtype=np.float64).ravel()
    if np.array_equal(a, b):
        return 0.0
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    if norms == 0:
        return 1.0
    return float(max(0.0, 1.0 - float(a @ b) / norms))


def difference_heatmap(baseline_png: Path, new_png: Path) -> np.ndarray:
    """|new - baseline|, averaged over channels, as an RGB heat map (HEATMAP_FULL_SCALE levels and up: white hot)."""
    import cv2

    before = load_image(baseline_png).pixels.astype(np.int16)
    after = load_image(new_png).pixels.astype(np.int16)
    difference = np.abs(after - before)
    difference = difference.mean(axis=2) if difference.ndim == 3 else difference
    scaled = np.clip(difference * (255.0 / HEATMAP_FULL_SCALE), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
