"""Input images: any mode in, exact sizes out, aspect kept where the mode promises it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rr_controlnet.images import canny_edges, load_image, model_rgb, resize, target_size


def bars(width: int, height: int) -> np.ndarray:
    """A white image with a black vertical bar in the middle third."""
    rgb = np.full((height, width, 3), 255, dtype=np.uint8)
    rgb[:, width // 3 : 2 * width // 3] = 0
    return rgb


@pytest.mark.parametrize("mode", ["crop", "fit", "stretch"])
@pytest.mark.parametrize("size", [(64, 64), (128, 64), (64, 128), (96, 40)])
def test_every_resize_mode_produces_the_requested_size(mode: str, size: tuple[int, int]) -> None:
    resized = resize(bars(300, 200), size, mode)
    assert resized.shape == (size[1], size[0], 3)


def test_crop_keeps_aspect_by_cutting_the_centre() -> None:
    wide = np.zeros((100, 300, 3), dtype=np.uint8)
    wide[:, 100:200] = 255  # the centre third is white
    cropped = resize(wide, (100, 100), "crop")
    assert (cropped > 128).all()  # only the white centre survives, unstretched


def test_fit_keeps_aspect_by_padding() -> None:
    fitted = resize(np.full((100, 200, 3), 255, dtype=np.uint8), (200, 200), "fit")
    assert (fitted[:50] == 0).all() and (fitted[150:] == 0).all()  # black bands above and below
    assert (fitted[50:150] == 255).all()


def test_stretch_fills_without_keeping_aspect() -> None:
    stretched = resize(np.full((100, 200, 3), 255, dtype=np.uint8), (200, 200), "stretch")
    assert (stretched == 255).all()


def test_target_size_keeps_the_image_aspect_and_rounds_to_multiples_of_8() -> None:
    assert target_size((600, 400), None, None, 512) == (512, 344)
    assert target_size((400, 600), None, None, 1024) == (680, 1024)
    assert target_size((600, 400), 768, None, 512) == (768, 512)
    assert target_size((600, 400), None, 256, 512) == (384, 256)
    assert target_size((600, 400), 256, 256, 512) == (256, 256)


def test_grayscale_input_is_expanded_for_the_model(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(np.arange(64 * 48, dtype=np.uint32).reshape(48, 64).astype(np.uint8), "L").save(path)
    source = load_image(path)
    assert source.pixels.shape == (48, 64)
    rgb = model_rgb(source.pixels)
    assert rgb.shape == (48, 64, 3) and (rgb[:, :, 0] == source.pixels).all()


def test_palette_input_is_decoded_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    Image.fromarray(bars(64, 48)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    source = load_image(path)
    assert source.pixels.shape == (48, 64, 3)
    assert model_rgb(source.pixels).shape == (48, 64, 3)


def test_rgba_input_is_masked_for_the_model_but_kept_as_given(tmp_path: Path) -> None:
    rgba = np.full((32, 32, 4), 200, dtype=np.uint8)
    rgba[:, :16, 3] = 0  # left half transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    source = load_image(path)
    np.testing.assert_array_equal(source.pixels, rgba)
    rgb = model_rgb(source.pixels)
    assert (rgb[:, :16] == 0).all() and (rgb[:, 16:] == 200).all()


def test_canny_finds_the_edges_of_a_bar() -> None:
    edges = canny_edges(bars(90, 60), 100, 200)
    assert edges.shape == (60, 90) and set(np.unique(edges)) == {0, 255}
    columns = np.nonzero(edges.any(axis=0))[0]
    assert {29, 30}.intersection(columns) and {59, 60}.intersection(columns)


def test_fit_padding_adds_no_edges_to_the_canny_map(tmp_path: Path) -> None:
    from rr_controlnet.images import control_images

    path = tmp_path / "white.png"
    Image.fromarray(np.full((50, 200, 3), 255, dtype=np.uint8)).save(path)
    control = control_images(load_image(path).pixels, (128, 128), "fit", 100, 200)
    assert control.rgb.shape == (128, 128, 3) and control.canny.shape == (128, 128)
    assert not control.canny.any()  # a flat white image has no edges, padded or not
