"""Regression tests for the defects of the original Rerun controlnet example: one test per defect, each named for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import decoded_image, read_recording, run_batch, run_cli, write_manifest
from PIL import Image


def run_one(tmp_path: Path, image_name: str, **item: object) -> Path:
    manifest = write_manifest(
        tmp_path,
        {
            "version": 1,
            "model": "tiny-sd15",
            "defaults": {"steps": 2, "size": 64},
            "items": [{"image": image_name, **item}],
        },
    )
    run_batch(manifest, tmp_path / "out")
    return tmp_path / "out"


def test_timestep_tensors_are_recorded_as_integer_sequences(tmp_path: Path) -> None:
    """diffusers hands the callback a 0-d tensor; the original passed it to set_time as a duration."""
    Image.fromarray(np.full((64, 64, 3), 128, dtype=np.uint8)).save(tmp_path / "flat.png")
    out = run_one(tmp_path, "flat.png")
    rows = read_recording(out / "flat.rrd").timed("/items/flat/latent")
    assert [row.step for row in rows] == [0, 1]
    assert all(type(row.timestep) is int for row in rows)
    assert rows[0].timestep > rows[1].timestep >= 0


@pytest.mark.parametrize("mode", ["L", "P", "LA", "I;16"])
def test_grayscale_and_palette_inputs_generate(tmp_path: Path, mode: str) -> None:
    """The original crashed on image.shape[2] for single-channel input."""
    gradient = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    image = Image.fromarray(gradient, "L")
    image = image.convert("I;16") if mode == "I;16" else image.convert(mode)
    image.save(tmp_path / "input.png")
    out = run_one(tmp_path, "input.png")
    assert np.asarray(Image.open(out / "input.png")).shape == (64, 64, 3)


def test_rgba_input_is_recorded_unchanged(tmp_path: Path) -> None:
    """The original blacked out transparent pixels in the logged raw image too."""
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    Image.fromarray(rgba, "RGBA").save(tmp_path / "logo.png")
    out = run_one(tmp_path, "logo.png")
    recording = read_recording(out / "logo.rrd")
    logged = decoded_image(recording.static("/items/logo/input/image"))
    np.testing.assert_array_equal(logged, rgba)


def test_no_float_images_are_logged_per_step(tmp_path: Path) -> None:
    """The original logged a float32 HxWx3 image every step (about 9 MB a step at 1024x1024)."""
    Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8)).save(tmp_path / "flat.png")
    out = run_one(tmp_path, "flat.png")
    rows = read_recording(out / "flat.rrd").timed("/items/flat/preview")
    assert [row.step for row in rows] == [0, 1]
    assert all(row.columns["EncodedImage:media_type"] == ["image/jpeg"] for row in rows)


def test_cpu_only_machines_run(tmp_path: Path) -> None:
    """The original aborted without CUDA; --device auto falls back to the CPU."""
    Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8)).save(tmp_path / "flat.png")
    manifest = write_manifest(
        tmp_path, {"version": 1, "model": "tiny-sd15", "defaults": {"steps": 1}, "items": [{"image": "flat.png"}]}
    )
    run_cli("batch", manifest, "--device", "auto")
    assert (tmp_path / "manifest-output" / "flat.png").exists()
