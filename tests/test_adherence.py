"""Control adherence and image comparison metrics on synthetic images with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from rr_controlnet.outputs.records import Adherence
from rr_controlnet.review.adherence import (
    EXTRA,
    FOLLOWED,
    MISSED,
    adherence_markdown,
    control_adherence,
    edge_ssim,
    strict_scores,
    tolerant_scores,
)
from rr_controlnet.review.differences import cosine_distance, output_difference


def edge_map(size: int = 512) -> np.ndarray:
    """Outlines of three rectangles and a diagonal: about 4,000 edge pixels on 512 x 512."""
    edges = np.zeros((size, size), dtype=np.uint8)
    for top, left, bottom, right in ((40, 40, 200, 300), (250, 100, 480, 220), (300, 300, 420, 470)):
        edges[top, left:right] = edges[bottom, left:right] = 255
        edges[top:bottom, left] = edges[top:bottom, right] = 255
    edges[np.arange(20, 480), np.arange(30, 490)] = 255
    return edges


def test_identical_maps_score_one_everywhere() -> None:
    edges = edge_map()
    adherence, overlay = control_adherence(edges, edges)
    assert adherence.strict.f1 == adherence.tolerant.f1 == adherence.ssim == 1.0
    assert adherence.strict.precision == adherence.strict.recall == 1.0
    assert adherence.control_edges == adherence.output_edges == int((edges > 0).sum())
    assert {tuple(colour) for colour in overlay[edges > 0]} == {FOLLOWED}


def test_edges_shifted_by_two_pixels_lose_strict_f1_but_keep_tolerant_f1() -> None:
    edges = edge_map()
    shifted = np.roll(edges, 2, axis=1)
    adherence, _ = control_adherence(edges, shifted)
    assert adherence.tolerance_px == pytest.approx(0.0075 * np.hypot(512, 512))  # 5.4 px
    assert adherence.strict.f1 < 0.5  # only the horizontal lines still overlap
    assert adherence.tolerant.f1 > 0.95
    assert adherence.ssim < 0.95
    far = np.roll(edges, 12, axis=1)  # beyond the tolerance
    assert tolerant_scores(edges, far).f1 < adherence.tolerant.f1 - 0.3


def test_missed_and_extra_edges_are_coloured_and_scored() -> None:
    control = np.zeros((512, 512), dtype=np.uint8)
    control[100, 50:450] = 255  # followed
    control[300, 50:450] = 255  # missed
    output = np.zeros_like(control)
    output[100, 50:450] = 255
    output[50:450, 256] = 255  # not in the control (crosses the missed line)
    adherence, overlay = control_adherence(control, output)
    assert adherence.tolerant.recall == pytest.approx(0.5, abs=0.02)
    assert adherence.tolerant.precision == pytest.approx(400 / 800, abs=0.03)
    assert tuple(overlay[100, 200]) == FOLLOWED and tuple(overlay[300, 100]) == MISSED
    assert tuple(overlay[200, 256]) == EXTRA


def test_empty_maps() -> None:
    empty = np.zeros((64, 64), dtype=np.uint8)
    edges = empty.copy()
    edges[10, 5:60] = 255
    assert strict_scores(empty, empty).f1 == 1.0  # nothing to follow, nothing drawn
    assert strict_scores(edges, empty) == strict_scores(edges, empty).__class__(0.0, 0.0, 0.0)
    assert tolerant_scores(empty, edges).precision == 0.0
    assert edge_ssim(empty, empty) == 1.0


def test_image_metrics_of_identical_and_different_images() -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    same = output_difference(image, image.copy())
    assert (same.max_abs, same.mean_abs, same.psnr, same.ssim, same.cosine_distance) == (0, 0.0, None, 1.0, 0.0)
    brighter = np.clip(image.astype(int) + 4, 0, 255).astype(np.uint8)
    shifted = output_difference(image, brighter)
    assert shifted.max_abs == 4 and 3.5 < shifted.mean_abs <= 4
    assert 35 < shifted.psnr < 40  # 20 log10(255 / ~4)
    other = output_difference(image, rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
    assert other.cosine_distance > 0.1 and other.ssim < 0.1
    assert cosine_distance(np.zeros(4), np.zeros(4)) == 0.0


def test_scores_of_an_older_version_past_its_budget_still_read_and_say_what_they_are() -> None:
    edges = edge_map()
    adherence, _ = control_adherence(edges, edges)
    document = {**adherence.as_dict(), "matching": "upper-bound"}  # as older summary.json files hold it
    older = Adherence.from_dict(document)
    assert older.tolerant == adherence.tolerant and older.matching == "upper-bound"
    assert "upper bound" in adherence_markdown(older)
    assert "upper bound" not in adherence_markdown(adherence)
