"""FLUX.1-dev and SD3.5 Large with their Canny ControlNets at full size with random weights (`random-flux`,
`random-sd3`), and what every preset's ControlNet weighs, computed rather than downloaded.

- build_on_device(kind, device, dtype): each component is made directly on `device` in `dtype`, its weights
  drawn there by the layers' own initialisers under the component's seed. The 17 billion parameters of
  `random-flux` never pass through the CPU: building them there and copying would take many minutes.
  `tiny-flux` and `tiny-sd3` build the same way from their small configs (for tests of this path).
- parameter_counts(kind) and controlnet_parameters(preset): the architectures built on the meta device
  (shapes only, no memory), their parameters counted.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from rr_controlnet.models import large_configs as large
from rr_controlnet.models import random_configs as configs
from rr_controlnet.models import random_transformer_models as tiny
from rr_controlnet.models.random_models import toy_clip_tokenizer

LARGE_KINDS: Final = ("random-flux", "random-sd3")


@dataclass(frozen=True)
class Component:
    name: str  # the pipeline's argument
    library: str  # "diffusers" or "transformers"
    class_name: str
    config: dict[str, Any]
    seed: str  # its key in random_configs.COMPONENT_SEEDS


@dataclass(frozen=True)
class Architecture:
    pipeline: str  # the diffusers ControlNet pipeline class
    components: tuple[Component, ...]
    tokenizers: tuple[str, ...]  # "clip" or "t5", for tokenizer, tokenizer_2, ... in order
    flow: dict[str, Any]  # FlowMatchEulerDiscreteScheduler's settings


def _flux(transformer: dict, controlnet: dict, vae: dict, clip: dict, t5: dict) -> Architecture:
    return Architecture(
        "FluxControlNetPipeline",
        (
            Component("transformer", "diffusers", "FluxTransformer2DModel", transformer, "unet"),
            Component("controlnet", "diffusers", "FluxControlNetModel", controlnet, "controlnet"),
            Component("vae", "diffusers", "AutoencoderKL", vae, "vae"),
            Component("text_encoder", "transformers", "CLIPTextModel", clip, "text_encoder"),
            Component("text_encoder_2", "transformers", "T5EncoderModel", t5, "text_encoder_2"),
        ),
        ("clip", "t5"),
        tiny.FLUX_FLOW,
    )


def _sd3(transformer: dict, controlnet: dict, vae: dict, clips: tuple[dict, dict], t5: dict) -> Architecture:
    return Architecture(
        "StableDiffusion3ControlNetPipeline",
        (
            Component("transformer", "diffusers", "SD3Transformer2DModel", transformer, "unet"),
            Component("controlnet", "diffusers", "SD3ControlNetModel", controlnet, "controlnet"),
            Component("vae", "diffusers", "AutoencoderKL", vae, "vae"),
            Component("text_encoder", "transformers", "CLIPTextModelWithProjection", clips[0], "text_encoder"),
            Component("text_encoder_2", "transformers", "CLIPTextModelWithProjection", clips[1], "text_encoder_2"),
            Component("text_encoder_3", "transformers", "T5EncoderModel", t5, "text_encoder_3"),
        ),
        ("clip", "clip", "t5"),
        tiny.SD3_FLOW,
    )


ARCHITECTURES: Final = {
    "random-flux": _flux(
        large.FLUX_DEV_TRANSFORMER,
        large.INSTANTX_FLUX_CANNY,
        large.FLUX_VAE,
        configs.CLIP_VIT_L_TEXT,
        large.T5_XXL_ENCODER,
    ),
    "random-sd3": _sd3(
        large.SD35_LARGE_TRANSFORMER,
        large.SD35_LARGE_CANNY,
        large.SD3_VAE,
        (configs.CLIP_VIT_L_TEXT, configs.CLIP_BIGG_TEXT),
        large.T5_XXL_ENCODER,
    ),
    "tiny-flux": _flux(
        tiny.TINY_FLUX_TRANSFORMER,
        tiny.TINY_FLUX_CONTROLNET,
        dict(tiny.TINY_VAE_16, **tiny.FLUX_VAE_SCALING),
        tiny.TINY_CLIP_PROJECTED,
        tiny.TINY_T5,
    ),
    "tiny-sd3": _sd3(
        tiny.TINY_SD3_TRANSFORMER,
        tiny.TINY_SD3_CONTROLNET,
        dict(tiny.TINY_VAE_16, **tiny.SD3_VAE_SCALING),
        (tiny.TINY_CLIP_PROJECTED, tiny.TINY_CLIP_PROJECTED),
        dict(tiny.TINY_T5, d_model=64),
    ),
}

# Each preset's ControlNet: (diffusers class, config). The random presets carry their published twin's.
PRESET_CONTROLNETS: Final = {
    "sd15": ("ControlNetModel", configs.SD15_CONTROLNET),
    "sdxl": ("ControlNetModel", configs.SDXL_CONTROLNET),
    "sdxl-union": ("ControlNetUnionModel", dict(configs.SDXL_BLOCKS, **large.SDXL_UNION_LAYERS)),
    "flux": ("FluxControlNetModel", large.INSTANTX_FLUX_CANNY),
    "flux-union": ("FluxControlNetModel", large.FLUX_UNION_PRO),
    "sd35": ("SD3ControlNetModel", large.SD35_LARGE_CANNY),
}


def build_on_device(kind: str, device: str, dtype: Any) -> Any:
    """The ControlNet pipeline of `kind` (a key of ARCHITECTURES) with random weights, made on `device` in
    `dtype`. The same kind, device and dtype give the same weights."""
    return build_architecture(ARCHITECTURES[kind], device, dtype)


def build_architecture(architecture: Architecture, device: str, dtype: Any) -> Any:
    """build_on_device for any Architecture."""
    import diffusers

    modules = {component.name: _built_on(component, device, dtype) for component in architecture.components}
    names = ["tokenizer", *(f"tokenizer_{index}" for index in range(2, len(architecture.tokenizers) + 1))]
    tokenizers = {
        name: toy_clip_tokenizer() if which == "clip" else tiny.toy_t5_tokenizer()
        for name, which in zip(names, architecture.tokenizers, strict=True)
    }
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, **architecture.flow)
    return getattr(diffusers, architecture.pipeline)(scheduler=scheduler, **modules, **tokenizers)


def parameter_counts(kind: str) -> dict[str, int]:
    """Parameters per component of `kind`'s architecture, built on the meta device (no memory used)."""
    import torch

    with torch.device("meta"):
        return {component.name: _parameters(_module(component)) for component in ARCHITECTURES[kind].components}


def controlnet_parameters(preset: str) -> int | None:
    """Parameters of `preset`'s ControlNet, from its architecture built on the meta device; None for the
    tiny presets (a few thousand, not worth a line)."""
    import diffusers
    import torch

    entry = PRESET_CONTROLNETS.get(large.RANDOM_TWINS.get(preset, preset))
    if entry is None:
        return None
    class_name, config = entry
    with torch.device("meta"):
        return _parameters(getattr(diffusers, class_name)(**config))


def _parameters(module: Any) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _built_on(component: Component, device: str, dtype: Any) -> Any:
    import torch

    forked = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=forked), _default_dtype(dtype):
        torch.manual_seed(configs.COMPONENT_SEEDS[component.seed])
        with torch.device(device):
            module = _module(component)
            if component.name == "controlnet":
                _reset_zero_layers(module)
    # Buffers made in float32 whatever the default (SD3's position table) follow the weights.
    return torch.nn.Module.to(module, dtype).eval()


@contextmanager
def _default_dtype(dtype: Any):
    """New floating tensors in `dtype`: weights drawn straight in bf16 take half the memory and time."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _module(component: Component) -> Any:
    if component.library == "transformers":
        import transformers

        config_class = transformers.T5Config if component.class_name.startswith("T5") else transformers.CLIPTextConfig
        return getattr(transformers, component.class_name)(config_class(**component.config))
    import diffusers

    return getattr(diffusers, component.class_name)(**component.config)


def _reset_zero_layers(controlnet: Any) -> None:
    """A fresh ControlNet's output layers start at zero (it must not disturb the model it is trained against),
    so with random weights the control image would change nothing; the default init makes it matter."""
    import torch

    for module in controlnet.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and not module.weight.any():
            module.reset_parameters()
