"""Same manifest and seed: same pixels. An item's output does not depend on its neighbours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import run_batch, tiny_manifest
from PIL import Image


def generate(manifest: Path, out: Path, *args: str) -> Path:
    run_batch(manifest, out, *args)
    return out


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_same_manifest_and_seed_give_identical_images(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    first = generate(manifest, tmp_path / "first")
    second = generate(manifest, tmp_path / "second")
    for name in ("astronaut.png", "horse.png"):
        np.testing.assert_array_equal(pixels(first / name), pixels(second / name))


def test_different_seeds_give_different_images(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    seed_1 = generate(manifest, tmp_path / "seed1", "--seed", "1")
    seed_2 = generate(manifest, tmp_path / "seed2", "--seed", "2")
    assert not np.array_equal(pixels(seed_1 / "astronaut.png"), pixels(seed_2 / "astronaut.png"))


def test_an_item_is_the_same_alone_and_inside_a_larger_batch(tmp_path: Path) -> None:
    (tmp_path / "alone").mkdir()
    (tmp_path / "together").mkdir()
    alone = tiny_manifest(tmp_path / "alone", items=[{"image": "horse.png", "seed": 5}])
    together = tiny_manifest(tmp_path / "together")
    generate(alone, tmp_path / "alone" / "out")
    generate(together, tmp_path / "together" / "out")
    np.testing.assert_array_equal(
        pixels(tmp_path / "alone" / "out" / "horse.png"), pixels(tmp_path / "together" / "out" / "horse.png")
    )


def test_batched_generation_matches_solo_runs(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    solo = generate(manifest, tmp_path / "solo")
    batched = generate(manifest, tmp_path / "batched", "--batch-size", "2")
    for name in ("astronaut.png", "horse.png"):
        difference = np.abs(pixels(solo / name).astype(int) - pixels(batched / name).astype(int))
        assert difference.max() <= 2, name
