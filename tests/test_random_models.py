"""Random-weight pipelines: built offline, identical on every build, saved and loaded back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionControlNetPipeline,
    StableDiffusionXLControlNetPipeline,
)
from PIL import Image

from rr_controlnet.models.random_models import RANDOM_KINDS, build_random_pipeline, save_random_pipeline

REPO_ROOT = Path(__file__).resolve().parents[1]
PIPELINE_CLASSES = {
    "tiny-sd15": StableDiffusionControlNetPipeline,
    "tiny-sdxl": StableDiffusionXLControlNetPipeline,
}
WEIGHTED_COMPONENTS = ("unet", "controlnet", "vae", "text_encoder", "text_encoder_2")


def canny_like_image(size: int = 64, inverted: bool = False) -> Image.Image:
    """White one-pixel outlines of two rectangles on black, like cv2.Canny's output."""
    edges = np.zeros((size, size), dtype=np.uint8)
    for top, left, bottom, right in [(8, 8, 40, 48), (30, 20, 56, 56)]:
        edges[top, left:right] = edges[bottom, left:right] = 255
        edges[top:bottom, left] = edges[top:bottom, right] = 255
    if inverted:
        edges = 255 - edges
    return Image.fromarray(np.stack([edges] * 3, axis=-1), mode="RGB")


def generate(pipe, control_image: Image.Image, prompt: str = "a house by a lake") -> np.ndarray:
    return pipe(
        prompt,
        negative_prompt="low quality",
        image=control_image,
        height=64,
        width=64,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images


def assert_same_weights(module_a: torch.nn.Module, module_b: torch.nn.Module) -> None:
    state_a, state_b = module_a.state_dict(), module_b.state_dict()
    assert state_a.keys() == state_b.keys()
    different = [name for name in state_a if not torch.equal(state_a[name], state_b[name])]
    assert not different, f"{len(different)} tensors differ, first {different[0]}"


@pytest.fixture(scope="module", params=sorted(PIPELINE_CLASSES))
def saved(request, tmp_path_factory) -> tuple[str, Path]:
    """A tiny kind and the folder it was saved to (shared by the tests of this module)."""
    kind = request.param
    folder = save_random_pipeline(kind, tmp_path_factory.mktemp("models") / kind)
    return kind, folder


def test_importing_the_module_does_not_import_torch():
    code = "import rr_controlnet.models.random_models, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_kinds_are_the_four_documented_ones():
    assert RANDOM_KINDS == ("tiny-sd15", "tiny-sdxl", "random-sd15", "random-sdxl")


def test_unknown_kind_is_refused_by_name():
    with pytest.raises(ValueError, match="'tiny-sd3'"):
        build_random_pipeline("tiny-sd3")


def test_dtype_must_be_a_torch_dtype():
    with pytest.raises(TypeError, match="'float16'"):
        build_random_pipeline("tiny-sd15", dtype="float16")


def test_same_kind_gives_identical_weights():
    first, second = build_random_pipeline("tiny-sd15"), build_random_pipeline("tiny-sd15")

    assert_same_weights(first.unet, second.unet)
    assert_same_weights(first.controlnet, second.controlnet)


def test_building_does_not_disturb_the_callers_random_state():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_random_pipeline("tiny-sd15")
    assert torch.equal(torch.rand(3), expected)


def test_dtype_casts_the_float32_weights():
    pipe_fp32 = build_random_pipeline("tiny-sd15")
    pipe_fp16 = build_random_pipeline("tiny-sd15", dtype=torch.float16)

    for name in ("unet", "controlnet", "vae", "text_encoder"):
        assert {p.dtype for p in getattr(pipe_fp16, name).parameters()} == {torch.float16}
    assert_same_weights(pipe_fp32.unet.to(torch.float16), pipe_fp16.unet)


def test_saved_pipeline_loads_back_identical_and_runs(saved):
    kind, folder = saved
    pipeline_class = PIPELINE_CLASSES[kind]
    built = build_random_pipeline(kind)

    controlnet = ControlNetModel.from_pretrained(folder / "controlnet", use_safetensors=True)
    loaded = pipeline_class.from_pretrained(folder, controlnet=controlnet, use_safetensors=True)

    assert type(loaded) is pipeline_class
    for name in WEIGHTED_COMPONENTS:
        if hasattr(built, name):
            assert_same_weights(getattr(built, name), getattr(loaded, name))
    # Any prompt tokenizes, padded to CLIP's 77 tokens rather than to an endless length.
    assert loaded.tokenizer.model_max_length == 77
    images = generate(loaded, canny_like_image(), prompt="Ein Haus am See, 日本の家 🏠!")
    assert images.shape == (1, 64, 64, 3)
    assert np.isfinite(images).all()


def test_saved_folder_holds_only_safetensors_weights(saved):
    _, folder = saved
    files = [path for path in folder.rglob("*") if path.is_file()]

    assert any(path.suffix == ".safetensors" for path in files)
    assert not [path for path in files if path.suffix in {".bin", ".pt", ".pth", ".ckpt"}]
    assert (folder / "model_index.json").is_file()
    # Written beside the folder and renamed into place: no partial folder is left behind.
    assert [path.name for path in folder.parent.iterdir()] == [folder.name]


def test_save_refuses_an_existing_folder(tmp_path):
    folder = tmp_path / "tiny-sd15"
    folder.mkdir()

    with pytest.raises(FileExistsError, match="already exists"):
        save_random_pipeline("tiny-sd15", folder)
    assert [path.name for path in tmp_path.iterdir()] == ["tiny-sd15"]


def test_control_image_changes_the_output():
    pipe = build_random_pipeline("tiny-sd15")

    edges = generate(pipe, canny_like_image())
    inverted = generate(pipe, canny_like_image(inverted=True))

    assert not np.allclose(edges, inverted, atol=1e-4)


@pytest.mark.slow
def test_random_sd15_has_the_published_size_and_runs():
    # About 25 s to build on a 2-core CPU (random number generation), 6 GB of memory.
    pipe = build_random_pipeline("random-sd15")

    unet_parameters = sum(p.numel() for p in pipe.unet.parameters())
    controlnet_parameters = sum(p.numel() for p in pipe.controlnet.parameters())
    assert 855e6 < unet_parameters < 865e6  # 859.5M, as SD1.5's UNet
    assert 355e6 < controlnet_parameters < 365e6  # 361.3M, as ControlNet 1.1 canny
    images = generate(pipe, canny_like_image())
    assert np.isfinite(images).all()
