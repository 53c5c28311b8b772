"""First runs on a connected machine: `batch` downloads what loading reads, says so and shows the hub's bars.
Against a stand-in hub on loopback (tests/hub_stand_in.py) that huggingface_hub's own client downloads from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_manifest, write_manifest
from hub_stand_in import StandInHub, hub_env

from rr_controlnet.hub import needed_files, pipeline_components, variant_for
from rr_controlnet.random_models import build_random_pipeline

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_CONTROLNET = "lllyasviel/control_v11p_sd15_canny"


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny SD1.5 pipeline repo and a ControlNet repo, each with full and fp16 weights, and files no
    loading reads (a pickle, a README)."""
    root = tmp_path_factory.mktemp("hub-repos")
    base, controlnet = root / "base", root / "controlnet"
    pipe = build_random_pipeline("tiny-sd15")
    pipe.save_pretrained(base)
    pipe.controlnet.save_pretrained(controlnet)
    pipe.to(torch.float16)
    pipe.save_pretrained(base, variant="fp16")
    pipe.controlnet.save_pretrained(controlnet, variant="fp16")
    (base / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"a pickle nobody should download")
    (base / "README.md").write_text("# a model card\n")
    return {"base": base, "controlnet": controlnet}


@pytest.fixture
def hub(model_folders: dict[str, Path]):
    """The stand-in hub serving the sd15 preset's repos, and the same folders as a custom model's."""
    repos = {
        SD15: model_folders["base"],
        SD15_CONTROLNET: model_folders["controlnet"],
        "example/tiny-sd15": model_folders["base"],
        "example/tiny-sd15-controlnet": model_folders["controlnet"],
    }
    with StandInHub(repos) as stand_in:
        yield stand_in


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rr_controlnet", *args], env=env, capture_output=True, text=True, timeout=300
    )


# The rule for which files a run reads, as a repo's listing gives them.
SDXL_LIKE_REPO = [
    "model_index.json",
    "README.md",
    "sd_xl_base_1.0.safetensors",  # a single-file checkpoint beside the diffusers folders
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",  # no fp16 copy: the full file loads
    "text_encoder/model.onnx",
    "tokenizer/merges.txt",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
    "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
    "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
    "unet/diffusion_pytorch_model.bin",
    "unet/diffusion_flax_model.msgpack",
    "vae/config.json",
    "vae/diffusion_pytorch_model.fp16.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "vae_1_0/config.json",
    "vae_1_0/diffusion_pytorch_model.fp16.safetensors",
]


def test_an_fp16_run_reads_each_components_fp16_files_where_it_has_them() -> None:
    components = pipeline_components(
        {"_class_name": "X", "unet": ["diffusers", "U"], "text_encoder": ["transformers", "T"], "vae": ["diffusers", "A"],
         "tokenizer": ["transformers", "K"], "scheduler": ["diffusers", "S"], "controlnet": ["diffusers", "C"],
         "image_encoder": [None, None]},
        passed=("controlnet", "vae"),
    )  # fmt: skip
    assert sorted(components) == ["scheduler", "text_encoder", "tokenizer", "unet"]
    variant = variant_for(SDXL_LIKE_REPO, "fp16")
    assert variant == "fp16"
    assert needed_files(SDXL_LIKE_REPO, variant, components) == (
        [
            "model_index.json",
            "scheduler/scheduler_config.json",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            "tokenizer/merges.txt",
            "tokenizer/vocab.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
            "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
            "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
        ],
        [],
    )


def test_other_dtypes_read_the_full_files_and_pickles_never_count() -> None:
    assert variant_for(SDXL_LIKE_REPO, "bf16") is None and variant_for(SDXL_LIKE_REPO, "fp32") is None
    assert needed_files(SDXL_LIKE_REPO, None, ["unet", "vae"])[0] == [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    pickles_only = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.bin"]
    assert needed_files(pickles_only, None, ["unet"]) == (["model_index.json"], ["unet"])


def test_a_single_model_repo_is_its_config_and_weights() -> None:
    vae_repo = [
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.bin",
        "sdxl_vae.safetensors",
        "images/example.png",
    ]
    assert variant_for(vae_repo, "fp16") is None
    assert needed_files(vae_repo, None, None) == (["config.json", "diffusion_pytorch_model.safetensors"], [])


def controlnet_manifest(folder: Path, base: str = "example/tiny-sd15", image: str = "not-there-yet.png") -> Path:
    """A manifest whose model names hub repos, over an image that need not exist for fetching."""
    document = {
        "version": 1,
        "model": {"base": base, "controlnet": "example/tiny-sd15-controlnet", "family": "sd15"},
        "defaults": {"prompt": "a castle", "steps": 1, "size": 64},
        "items": [{"image": image}],
    }
    return write_manifest(folder, document, "hub-model.yaml")


def test_batch_says_what_it_downloads_before_loading_it(hub: StandInHub, tmp_path: Path) -> None:
    tiny_manifest(tmp_path)  # the sample images
    manifest = controlnet_manifest(tmp_path, image="horse.png")
    result = cli(hub_env(hub.url, tmp_path / "hf"), "batch", str(manifest), "--device", "cpu", "--threads", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    notice = next(index for index, line in enumerate(lines) if line.startswith("downloading "))
    assert "example/tiny-sd15 (full weights, " in lines[notice]  # fp32 on the CPU: the full files
    assert "example/tiny-sd15-controlnet (full weights, " in lines[notice]
    assert lines[notice + 1].startswith("downloaded example/tiny-sd15: ")
    assert lines[notice + 2].startswith("downloaded example/tiny-sd15-controlnet: ")
    assert lines[-1].startswith("1 done, 0 failed")
    assert (tmp_path / "hub-model-output" / "horse.png").is_file()
    assert not any(".fp16." in path for path in hub.file_gets())


def test_a_batch_through_the_api_leaves_the_hubs_bars_as_it_found_them(tmp_path: Path) -> None:
    import transformers
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    from rr_controlnet.api import BatchOptions, Overrides, load_manifest, run_batch

    manifest = load_manifest(tiny_manifest(tmp_path), Overrides(steps=1))
    verbosity = transformers.utils.logging.get_verbosity()
    enable_progress_bars()
    run_batch(manifest, BatchOptions(out_dir=tmp_path / "out", threads=1))
    assert not are_progress_bars_disabled()
    assert transformers.utils.logging.get_verbosity() == verbosity

    disable_progress_bars()  # someone's own choice, kept too
    try:
        run_batch(manifest, BatchOptions(out_dir=tmp_path / "again", threads=1))
        assert are_progress_bars_disabled()
    finally:
        enable_progress_bars()
