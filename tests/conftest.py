"""Shared fixtures: a model cache per test session, sample images and manifest writing."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import yaml

IMAGES = Path(__file__).resolve().parent.parent / "manifests" / "images"


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny models are built once per session into a private cache, never into the user's home."""
    cache = tmp_path_factory.mktemp("model-cache")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("RR_CONTROLNET_CACHE", str(cache))
    patcher.setenv("HF_HUB_OFFLINE", "1")
    patcher.setenv("CI", "1")
    yield cache
    patcher.undo()


def sample_image(name: str, folder: Path) -> str:
    """Copy a bundled sample image into `folder` and return its name."""
    shutil.copy(IMAGES / name, folder / name)
    return name


def write_manifest(folder: Path, document: dict, name: str = "manifest.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def tiny_manifest(folder: Path, model: str = "tiny-sd15", items: list[dict] | None = None, **defaults) -> Path:
    """A small manifest over two bundled photos: 64x64, 3 steps, on a tiny model."""
    sample_image("astronaut.png", folder)
    sample_image("horse.png", folder)
    document = {
        "version": 1,
        "model": model,
        "defaults": {"prompt": "a futuristic research complex", "steps": 3, "size": 64, **defaults},
        "items": items if items is not None else [{"image": "astronaut.png"}, {"image": "horse.png", "seed": 5}],
    }
    return write_manifest(folder, document)


def free_port() -> int:
    """A port nothing listens on now, for a viewer or server that must not meet another test's."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
