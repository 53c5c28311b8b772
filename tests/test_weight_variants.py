"""fp16 runs read a repo's fp16 weight files where it publishes them (half the download), the full ones otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rr_controlnet.models.component_sources import weights_variant
from rr_controlnet.models.loading import Runtime, load_model
from rr_controlnet.models.random_models import build_random_pipeline
from rr_controlnet.spec import ModelSpec

# The fp16 files below hold this bias where the full files hold the built one: which files loaded shows.
FP16_MARKER = 0.125


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny SD1.5 diffusers folders (ControlNet in controlnet/): full files only, and full files with
    fp16 files beside them."""
    root = tmp_path_factory.mktemp("variants")
    folders = {"full only": root / "full-only", "with fp16": root / "with-fp16"}
    pipe = build_random_pipeline("tiny-sd15")
    for folder in folders.values():
        pipe.save_pretrained(folder)
        pipe.controlnet.save_pretrained(folder / "controlnet")
    with torch.no_grad():
        pipe.unet.conv_out.bias.fill_(FP16_MARKER)
        pipe.controlnet.controlnet_mid_block.bias.fill_(FP16_MARKER)
    pipe.to(torch.float16)
    pipe.save_pretrained(folders["with fp16"], variant="fp16")
    pipe.controlnet.save_pretrained(folders["with fp16"] / "controlnet", variant="fp16")
    return folders


def load(folder: Path, dtype: str):
    spec = ModelSpec("custom", "sd15", str(folder), str(folder / "controlnet"))
    return load_model(spec, Runtime("cpu", dtype)).pipe


def read_marker(pipe) -> tuple[float, float]:
    return pipe.unet.conv_out.bias[0].item(), pipe.controlnet.controlnet_mid_block.bias[0].item()


def test_saved_folders_have_the_files_the_tests_assume(folders: dict[str, Path]) -> None:
    with_fp16 = sorted(path.name for path in (folders["with fp16"] / "unet").iterdir())
    assert with_fp16 == [
        "config.json",
        "diffusion_pytorch_model.fp16.safetensors",
        "diffusion_pytorch_model.safetensors",
    ]
    assert not list(folders["full only"].rglob("*.fp16.safetensors"))


def test_fp16_run_reads_the_fp16_files(folders: dict[str, Path]) -> None:
    pipe = load(folders["with fp16"], "fp16")
    assert pipe.unet.dtype == pipe.controlnet.dtype == torch.float16
    assert read_marker(pipe) == (FP16_MARKER, FP16_MARKER)  # the pipeline's components and the ControlNet


def test_fp32_run_reads_the_full_files_beside_them(folders: dict[str, Path]) -> None:
    pipe = load(folders["with fp16"], "fp32")
    assert pipe.unet.dtype == torch.float32
    assert FP16_MARKER not in read_marker(pipe)


def test_fp16_run_falls_back_to_the_full_files_without_fp16_ones(folders: dict[str, Path]) -> None:
    pipe = load(folders["full only"], "fp16")
    assert pipe.unet.dtype == torch.float16
    full = load(folders["full only"], "fp32")
    assert torch.equal(pipe.unet.conv_out.bias, full.unet.conv_out.bias.half())


def fake_hub_cache(cache: Path, repo: str, files: list[str]) -> None:
    """The layout huggingface_hub keeps a downloaded repo in: refs/main names a snapshot of its files."""
    commit = "0" * 40
    repo_folder = cache / f"models--{repo.replace('/', '--')}"
    (repo_folder / "refs").mkdir(parents=True)
    (repo_folder / "refs" / "main").write_text(commit)
    for name in files:
        path = repo_folder / "snapshots" / commit / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_hub_ids_offline_go_by_the_files_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no request may reach the hub
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    fake_hub_cache(
        tmp_path,
        "example/with-fp16",
        ["model_index.json", "unet/diffusion_pytorch_model.fp16.safetensors", "text_encoder/model.safetensors"],
    )
    fake_hub_cache(tmp_path, "example/full-only", ["config.json", "diffusion_pytorch_model.safetensors"])
    fake_hub_cache(tmp_path, "example/sharded", ["diffusion_pytorch_model.fp16-00001-of-00002.safetensors"])

    assert weights_variant("example/with-fp16", torch.float16) == "fp16"
    assert weights_variant("example/sharded", torch.float16) == "fp16"
    assert weights_variant("example/full-only", torch.float16) is None
    assert weights_variant("example/not-downloaded", torch.float16) is None
    assert weights_variant("example/with-fp16", torch.bfloat16) is None
    assert weights_variant("example/with-fp16", torch.float32) is None
