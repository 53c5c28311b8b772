"""FLUX.1-dev and SD3.5 Large at full size (random-flux, random-sd3), and every preset's ControlNet, checked on
the CPU without allocating them: their architectures built on the meta device and counted."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import run_cli, tiny_manifest

from rr_controlnet.models import loading
from rr_controlnet.models.large_configs import CONTROLNET_PARAMETERS, SD35_LARGE_CANNY
from rr_controlnet.models.large_models import (
    ARCHITECTURES,
    LARGE_KINDS,
    build_architecture,
    build_on_device,
    controlnet_parameters,
    parameter_counts,
)
from rr_controlnet.models.loading import load_model, load_preview_decoder, resolve_runtime
from rr_controlnet.models.presets import PRESETS, model_spec_from_preset
from rr_controlnet.models.random_transformer_models import TINY_FLUX_CONTROLNET, build_preview_decoder

DOCS = Path(__file__).resolve().parent.parent / "docs" / "models.md"
BILLION = 1e9


def test_random_flux_counts_what_flux_1_dev_publishes() -> None:
    counts = parameter_counts("random-flux")
    # FLUX.1-dev: a 12 B transformer (11.9 B), T5-XXL's encoder 4.76 B, CLIP-L's text half 0.12 B.
    assert counts["transformer"] / BILLION == pytest.approx(11.9, abs=0.05)
    assert counts["text_encoder_2"] / BILLION == pytest.approx(4.76, abs=0.01)
    assert counts["text_encoder"] / BILLION == pytest.approx(0.123, abs=0.001)
    assert counts["vae"] / BILLION == pytest.approx(0.084, abs=0.001)
    # InstantX's Canny ControlNet: its bf16 weight file is 3.58 GB.
    assert 2 * counts["controlnet"] / BILLION == pytest.approx(3.58, abs=0.01)


def test_random_sd3_counts_what_sd3_5_large_publishes() -> None:
    counts = parameter_counts("random-sd3")
    assert counts["transformer"] / BILLION == pytest.approx(8.1, abs=0.05)  # "8B parameters"
    assert counts["text_encoder_3"] / BILLION == pytest.approx(4.76, abs=0.01)  # T5-XXL's encoder
    assert counts["text_encoder_2"] / BILLION == pytest.approx(0.695, abs=0.001)  # CLIP-G (OpenCLIP bigG)
    # Stability's Canny ControlNet in diffusers' format: a float32 weight file of 8.61 GB.
    assert 4 * counts["controlnet"] / BILLION == pytest.approx(8.61, abs=0.01)


def test_the_large_presets_are_built_in_memory_at_1024() -> None:
    for kind, family in zip(LARGE_KINDS, ("flux", "sd3"), strict=True):
        preset = PRESETS[kind]
        assert (preset.family, preset.weights, preset.native_size) == (family, "random", 1024)
        assert model_spec_from_preset(kind).family == family
        assert kind in ARCHITECTURES


def test_every_presets_controlnet_is_counted_from_its_config() -> None:
    """The figures `models` and docs/models.md show are the counts of the architectures themselves."""
    for preset, parameters in CONTROLNET_PARAMETERS.items():
        assert controlnet_parameters(preset) == parameters, preset
    assert controlnet_parameters("random-flux") == CONTROLNET_PARAMETERS["flux"]
    assert controlnet_parameters("tiny-sd15") is None


def test_the_flux_union_controlnet_counts_what_its_weights_file_weighs() -> None:
    """Shakker Labs' ControlNet-Union-Pro: InstantX's Union architecture, whose one bf16 file on the hub is 6.6 GB."""
    parameters = controlnet_parameters("flux-union")
    assert 2 * parameters / BILLION == pytest.approx(6.6, abs=0.05)
    assert parameters - controlnet_parameters("flux") > 1.5 * BILLION  # its ten single blocks


def test_docs_show_every_presets_controlnet_size() -> None:
    text = DOCS.read_text()
    for preset, parameters in CONTROLNET_PARAMETERS.items():
        row = re.search(rf"^\| `{re.escape(preset)}` \| `{re.escape(PRESETS[preset].controlnet)}` \|.*$", text, re.M)
        assert row, f"docs/models.md has no ControlNet size row for {preset}"
        assert f"| {parameters / BILLION:.2f} B | {2 * parameters / BILLION:.2f} GB |" in row.group(0), preset


@pytest.mark.parametrize("kind", ["tiny-flux", "tiny-sd3"])
def test_building_on_the_device_gives_the_same_weights_in_the_asked_dtype(kind: str) -> None:
    first = build_on_device(kind, "cpu", torch.bfloat16)
    second = build_on_device(kind, "cpu", torch.bfloat16)
    for name in ("transformer", "controlnet", "text_encoder"):
        ours, theirs = getattr(first, name).state_dict(), getattr(second, name).state_dict()
        assert all(torch.equal(ours[key], theirs[key]) for key in ours), name
        assert {tensor.dtype for tensor in ours.values() if tensor.is_floating_point()} == {torch.bfloat16}
    # The ControlNet's zero-initialised output layers were given weights: the control image matters.
    layers = [module for module in first.controlnet.modules() if isinstance(module, torch.nn.Linear)]
    assert all(layer.weight.any() for layer in layers)
    assert torch.get_default_dtype() == torch.float32  # the build's default dtype did not leak


def test_the_large_presets_preview_with_sixteen_channels() -> None:
    assert build_preview_decoder("random-flux").config.latent_channels == 16


@pytest.mark.parametrize(
    ("kind", "controlnet"),
    [
        # InstantX's layout: double blocks only.
        ("tiny-flux", dict(TINY_FLUX_CONTROLNET, num_layers=2, num_single_layers=0)),
        # Stability's SD3.5 layout: blocks without a text stream, no position table of its own; at tiny-sd3's width.
        (
            "tiny-sd3",
            dict(
                SD35_LARGE_CANNY,
                num_layers=2,
                attention_head_dim=8,
                num_attention_heads=4,
                caption_projection_dim=32,
                pooled_projection_dim=64,
            ),
        ),
    ],
)
def test_the_published_controlnets_layouts_generate_in_their_pipelines(kind: str, controlnet: dict) -> None:
    architecture = ARCHITECTURES[kind]
    components = tuple(
        replace(component, config=controlnet) if component.name == "controlnet" else component
        for component in architecture.components
    )
    pipe = build_architecture(replace(architecture, components=components), "cpu", torch.float32)
    pipe.set_progress_bar_config(disable=True)
    output = pipe("a cat", control_image=torch.rand(1, 3, 64, 64), height=64, width=64, num_inference_steps=2)
    assert output.images[0].size == (64, 64)


def test_a_batch_loads_random_flux_by_building_it_on_its_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_model routes the large presets to build_on_device (here with tiny-flux's architecture standing in
    for FLUX.1-dev's 19 billion parameters), and their preview decoder takes 16 latent channels."""
    monkeypatch.setitem(ARCHITECTURES, "random-flux", ARCHITECTURES["tiny-flux"])
    monkeypatch.setattr(loading, "refuse_large_off_cuda", lambda spec, runtime: None)  # tiny: the CPU can
    spec, runtime = model_spec_from_preset("random-flux"), resolve_runtime("cpu", "fp32")
    model = load_model(spec, runtime)
    assert type(model.pipe).__name__ == "FluxControlNetPipeline" and model.native_size == 1024
    assert model.pipe.transformer.config.num_layers == ARCHITECTURES["tiny-flux"].components[0].config["num_layers"]
    assert load_preview_decoder(spec, runtime).config.latent_channels == 16


@pytest.mark.parametrize(("model", "stand_in"), [("random-flux", "tiny-flux"), ("random-sd3", "tiny-sd3")])
def test_the_large_presets_are_refused_off_cuda_in_one_line(tmp_path: Path, model: str, stand_in: str) -> None:
    result = run_cli("batch", str(tiny_manifest(tmp_path, model=model)), "--device", "cpu", exit_code=None)
    assert result.exit_code == 2
    assert f"error: {model} builds the full-size model on its device and needs a CUDA device" in result.output
    assert f"this run is on cpu: {stand_in} is its small stand-in" in result.output


def test_models_shows_what_each_presets_controlnet_weighs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the sizes come from the configs, not from the hub
    output = run_cli("models", "sd15", "flux", "random-sd3").output
    line = "ControlNets in fp16/bf16, computed from their configs: sd15 722.6 MB (0.36 B parameters), flux 3.6 GB"
    assert f"{line} (1.79 B parameters), random-sd3 4.3 GB (2.15 B parameters)\n" in output  # its twin's
