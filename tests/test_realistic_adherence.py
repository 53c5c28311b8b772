"""Control adherence on outputs that look like a working ControlNet's: near-copies of real photos.

Scores must rank outputs by how closely they follow their control, and every map, real or built to be
hard, must be scored: the one-to-one matching once ran for hours on two nearly parallel edge maps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from near_copies import adversarial_maps, canny, near_copy, square_photo

from rr_controlnet.api import adherence
from rr_controlnet.errors import UsageError
from rr_controlnet.review.adherence import (
    ONE_TO_ONE,
    ScoringStopped,
    control_adherence,
    tolerant_scores,
)

# A hang guard, not a performance figure (those are in bench/benchmark.py): the old matching never
# returned on some of these maps.
HANG_SECONDS = 120


def finished(work: Callable[[], Any]) -> Any:
    """work()'s result; fails the test if it has not returned within HANG_SECONDS."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(HANG_SECONDS)
    if thread.is_alive():
        pytest.fail(f"still scoring after {HANG_SECONDS} s")
    return result[0]


def scores_of(photo: np.ndarray, kind: str):
    return finished(lambda: control_adherence(canny(photo), canny(near_copy(photo, kind)))[0])


@pytest.mark.parametrize("side", [256, 512])
@pytest.mark.parametrize("name", ["astronaut.png", "chelsea.png", "coffee.png"])
def test_closer_copies_score_higher(name: str, side: int) -> None:
    photo = square_photo(name, side)
    scores = {kind: scores_of(photo, kind) for kind in ("identical", "shift", "blur", "pure_noise")}
    tolerant = {kind: score.tolerant.f1 for kind, score in scores.items()}
    assert tolerant["identical"] == 1.0
    assert tolerant["identical"] >= tolerant["shift"] >= tolerant["blur"] > tolerant["pure_noise"]
    assert tolerant["shift"] > 0.98  # one pixel is well inside the tolerance
    assert tolerant["pure_noise"] < 0.6
    # Pixel-exact F1 punishes a one-pixel shift as hard as noise: why the tolerant score exists.
    assert scores["shift"].strict.f1 < 0.5 < scores["identical"].strict.f1
    assert all(scores[kind].matching == ONE_TO_ONE for kind in ("identical", "shift", "blur"))


def test_every_near_copy_of_a_textured_photo_is_scored_at_1024() -> None:
    photo = square_photo("astronaut.png", 1024)  # about 37,000 edge pixels
    control = canny(photo)
    for kind in ("shift", "jpeg", "rescale", "warp"):
        scores = finished(lambda kind=kind: control_adherence(control, canny(near_copy(photo, kind)))[0])
        assert scores.matching == ONE_TO_ONE
        assert 0.8 < scores.tolerant.f1 <= 1.0, kind


def test_a_blank_output_follows_nothing() -> None:
    photo = square_photo("horse.png", 512)
    scores = scores_of(photo, "blank")
    assert scores.output_edges == 0
    assert scores.strict.f1 == scores.tolerant.f1 == 0.0
    # SSIM of edge maps rewards agreeing on empty space: a blank output scores well there.
    assert scores.ssim > 0.5


@pytest.mark.parametrize("name", ["grid", "stripes", "every pixel", "random dots", "noise against other noise"])
def test_maps_built_to_be_hard_are_matched_one_to_one(name: str) -> None:
    control, output = adversarial_maps(512)[name]
    scores = finished(lambda: control_adherence(control, output)[0])
    assert max(scores.control_edges, scores.output_edges) > 40_000  # past the old exact-matching budget
    assert scores.matching == ONE_TO_ONE
    # Both maps have as many edge pixels, nearly all within reach of one another.
    assert 0.95 < scores.tolerant.f1 <= 1.0


def test_an_output_too_small_or_of_another_shape_is_refused_not_scored_perfect() -> None:
    photo = square_photo("horse.png", 512)
    with pytest.raises(UsageError, match="output: 1x1 is too small to score"):
        adherence(photo[:1, :1], photo)
    with pytest.raises(UsageError, match="output: 6x6 is too small to score"):
        control_adherence(canny(photo)[:6, :6], canny(photo)[:6, :6])
    with pytest.raises(UsageError, match="control: 512x512 has another aspect ratio than the output's 256x512"):
        adherence(photo[:, :256], photo)
    # The smallest output scored, and a control of the same proportions at another size.
    assert adherence(photo[:7, :7], photo[:7, :7]).tolerant.f1 == 1.0
    assert adherence(square_photo("horse.png", 256), photo).tolerant.f1 > 0.5


def test_the_matching_is_maximum_on_a_small_case_worked_by_hand() -> None:
    control = np.zeros((64, 64), dtype=np.uint8)
    output = np.zeros_like(control)
    # Control pixels at x 10 and 12, output pixels at 9 and 11. Taking x 10's first nearest (11) would
    # leave x 12 with nothing; a maximum matching pairs 10 with 9 and 12 with 11.
    control[10, 10] = control[10, 12] = 255
    output[10, 9] = output[10, 11] = 255
    assert tolerant_scores(control, output, tolerance_px=1.5).f1 == 1.0
    # One control pixel within reach of both output pixels: one pair only.
    lonely = np.zeros_like(control)
    lonely[10, 10] = 255
    scores = tolerant_scores(lonely, output, tolerance_px=1.5)
    assert (scores.precision, scores.recall) == (0.5, 1.0)


def test_scoring_stops_when_asked() -> None:
    photo = square_photo("horse.png", 256)
    asked = []

    def should_stop() -> bool:
        asked.append(True)
        return len(asked) >= 2

    with pytest.raises(ScoringStopped):
        control_adherence(canny(photo), canny(near_copy(photo, "shift")), should_stop)


def test_users_score_their_own_outputs_from_paths_images_and_arrays(tmp_path) -> None:
    from PIL import Image

    photo = square_photo("coffee.png", 256)
    Image.fromarray(photo).save(tmp_path / "control.png")
    Image.fromarray(near_copy(photo, "jpeg")).save(tmp_path / "output.png")
    from_paths = adherence(tmp_path / "output.png", str(tmp_path / "control.png"))
    from_images = adherence(Image.open(tmp_path / "output.png"), Image.open(tmp_path / "control.png"))
    from_edge_map = adherence(np.asarray(Image.open(tmp_path / "output.png")), canny(photo) > 0)
    assert from_paths == from_images == from_edge_map
    assert 0.8 < from_paths.tolerant.f1 < 1.0
    # A control of another size is resized to the output's; its edges at the given thresholds.
    larger = adherence(near_copy(photo, "shift"), square_photo("coffee.png", 512), low=50, high=150)
    assert larger.tolerant.f1 > 0.8


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"low": 300}, "low must be an integer 0..255, got 300"),
        ({"low": 200, "high": 100}, "low must be below high"),
        ({"resize": "zoom"}, "resize must be one of crop, fit, stretch"),
    ],
)
def test_adherence_names_a_wrong_argument(arguments: dict, message: str) -> None:
    photo = square_photo("horse.png", 64)
    with pytest.raises(UsageError, match=message):
        adherence(photo, photo, **arguments)


def test_adherence_refuses_an_edge_map_of_another_size_and_what_is_not_an_image(tmp_path) -> None:
    photo = square_photo("horse.png", 64)
    with pytest.raises(UsageError, match="edge map must have the output's size, 64x64; got 32x32"):
        adherence(photo, canny(square_photo("horse.png", 32)))
    with pytest.raises(UsageError, match="output: an array must be uint8"):
        adherence(photo.astype(np.float32), photo)
    with pytest.raises(UsageError, match=r"control: cannot decode image .*missing\.png"):
        adherence(photo, tmp_path / "missing.png")
