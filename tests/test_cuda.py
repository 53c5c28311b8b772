"""The CUDA path on tiny models: half precision, batching, --compile, --offload, NaN, reproducibility.

Marked `cuda` and skipped without a GPU, so CI stays green; bench/gpu_run.sh runs them first on a GPU
machine (`python -m pytest tests/test_cuda.py -m cuda`) and runs the suite only when they pass.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import read_recording, tensor, tiny_manifest
from PIL import Image

from rr_controlnet.api import (
    BatchOptions,
    RecordingOptions,
    generate_and_record,
    load_manifest,
    plan_items,
    run_manifest,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

# Control adherence needs scikit-image and SciPy, which a bare GPU image may lack; it is tested on the CPU.
ADHERENCE = all(importlib.util.find_spec(name) is not None for name in ("skimage", "scipy"))
# A batched item on CUDA against its solo run, in uint8 levels. On the CPU the two are within 2 levels;
# in half precision a different batch shape may choose other kernels, which round differently.
BATCHED_MAX_DIFFERENCE = 8
BATCHED_MEAN_DIFFERENCE = 1.0
NAN_FAILURE = "the output has NaN or infinite values (try --dtype fp32 or bf16)"


def run_on_cuda(manifest: Path, out: Path, **options) -> dict[str, str]:
    """A batch on the GPU through the Python API: item id -> status."""
    options = {"device": "cuda", "dtype": "fp16", "adherence": ADHERENCE, **options}
    report = run_manifest(load_manifest(manifest), BatchOptions(out_dir=out, **options))
    return {item.id: item.status for item in report.summary.items}


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int16)


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_batch_on_cuda_writes_complete_files_with_finite_outputs(tmp_path: Path, model: str, dtype: str) -> None:
    statuses = run_on_cuda(tiny_manifest(tmp_path, model=model), tmp_path / "out", dtype=dtype)
    assert statuses == {"astronaut": "done", "horse": "done"}  # a NaN or infinite output fails its item
    for item_id in statuses:
        recording = read_recording(tmp_path / "out" / f"{item_id}.rrd")  # the reader refuses incomplete files
        root = f"/items/{item_id}"
        latents = recording.timed(f"{root}/latent")
        assert len(latents) == 3
        assert all(np.isfinite(tensor(row)).all() for row in latents)  # copied from the GPU at every step
        params = recording.static(f"{root}/params").columns["TextDocument:text"][0]
        assert "| device | cuda |" in params and f"| dtype | {dtype} |" in params
        assert pixels(tmp_path / "out" / f"{item_id}.png").shape == (64, 64, 3)


def test_batch_size_2_matches_solo_runs(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    assert set(run_on_cuda(manifest, tmp_path / "solo").values()) == {"done"}
    assert set(run_on_cuda(manifest, tmp_path / "batched", batch_size=2).values()) == {"done"}
    for name in ("astronaut.png", "horse.png"):
        difference = np.abs(pixels(tmp_path / "solo" / name) - pixels(tmp_path / "batched" / name))
        assert difference.max() <= BATCHED_MAX_DIFFERENCE, name
        assert difference.mean() <= BATCHED_MEAN_DIFFERENCE, name


@pytest.mark.parametrize("flag", ["compile_models", "offload"])
def test_compile_and_offload_complete(tmp_path: Path, flag: str) -> None:
    manifest = tiny_manifest(tmp_path, items=[{"image": "horse.png"}], steps=2)
    assert run_on_cuda(manifest, tmp_path / "out", **{flag: True}) == {"horse": "done"}
    assert read_recording(tmp_path / "out" / "horse.rrd").timed("/items/horse/latent")


def test_an_induced_nan_fails_its_item(tmp_path: Path) -> None:
    from rr_controlnet.models.loading import load_model, resolve_runtime

    manifest = load_manifest(tiny_manifest(tmp_path))
    runtime = resolve_runtime("cuda", "fp16")
    model = load_model(manifest.model, runtime)
    with torch.no_grad():
        model.pipe.unet.conv_out.bias.fill_(float("nan"))  # every latent is NaN from the first step
    outcomes = generate_and_record(
        model, plan_items(manifest, runtime.dtype_name), tmp_path / "out", "nan", RecordingOptions(adherence=ADHERENCE)
    )
    assert [(outcome.status, outcome.error) for outcome in outcomes] == [("failed", NAN_FAILURE)] * 2
    assert not list((tmp_path / "out").glob("*.png")) and not list((tmp_path / "out").glob("*.rrd"))


def test_seeds_reproduce_on_the_same_card(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    for run in ("first", "second"):
        assert set(run_on_cuda(manifest, tmp_path / run).values()) == {"done"}
    for name in ("astronaut.png", "horse.png"):
        np.testing.assert_array_equal(pixels(tmp_path / "first" / name), pixels(tmp_path / "second" / name))


@pytest.mark.parametrize("kind", ["tiny-flux", "tiny-sd3"])
def test_the_large_presets_way_of_building_works_on_the_card(kind: str) -> None:
    """random-flux and random-sd3 draw their weights on the card (large_models.build_on_device); the same path
    on the tiny configs, in bf16: on the card, the same weights twice, generating resident and offloaded."""
    from rr_controlnet.models.large_models import build_on_device

    pipe = build_on_device(kind, "cuda", torch.bfloat16)
    weights = list(pipe.transformer.parameters())
    assert all(weight.is_cuda and weight.dtype == torch.bfloat16 for weight in weights)
    again = build_on_device(kind, "cuda", torch.bfloat16)
    assert all(torch.equal(ours, theirs) for ours, theirs in zip(weights, again.transformer.parameters(), strict=True))
    del again
    pipe.set_progress_bar_config(disable=True)
    call = {"prompt": "a cat", "height": 64, "width": 64, "num_inference_steps": 2, "output_type": "np"}
    resident = pipe(**call, control_image=torch.rand(1, 3, 64, 64)).images
    pipe.enable_model_cpu_offload()
    offloaded = pipe(**call, control_image=torch.rand(1, 3, 64, 64)).images
    assert resident.shape == offloaded.shape == (1, 64, 64, 3)
    assert np.isfinite(resident).all() and np.isfinite(offloaded).all()
