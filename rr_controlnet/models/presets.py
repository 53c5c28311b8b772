"""Named models: the real SD1.5/SDXL/SD3.5/Flux checkpoints and the random-weight stand-ins built in code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rr_controlnet.models.families import FAMILIES
from rr_controlnet.spec import ModelSpec


@dataclass(frozen=True)
class Preset:
    family: str  # a key of families.FAMILIES
    base: str
    controlnet: str | None  # None: a control model, no ControlNet
    vae: str | None
    native_size: int  # the side length the model was trained at
    # published: downloaded weights; tiny: random weights built in code and saved once to a cache
    # folder, loaded like any diffusers folder; random: the real architecture with random weights,
    # built in memory (benchmarks). Both built kinds make noise, not pictures.
    weights: str
    description: str


PRESETS: Final[dict[str, Preset]] = {
    "sdxl": Preset(
        "sdxl",
        "stabilityai/stable-diffusion-xl-base-1.0",
        "diffusers/controlnet-canny-sdxl-1.0",
        "madebyollin/sdxl-vae-fp16-fix",
        1024,
        "published",
        "SDXL base 1.0 with the SDXL Canny ControlNet and the fp16-safe VAE (the original example)",
    ),
    "sd15": Preset(
        "sd15",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "lllyasviel/control_v11p_sd15_canny",
        None,
        512,
        "published",
        "Stable Diffusion 1.5 with ControlNet 1.1 Canny",
    ),
    "flux": Preset(
        "flux",
        "black-forest-labs/FLUX.1-dev",
        "InstantX/FLUX.1-dev-Controlnet-Canny",
        None,
        1024,
        "published",
        "FLUX.1 [dev] with InstantX's Canny ControlNet (gated: accept the FLUX.1 [dev] licence on the hub)",
    ),
    "flux-canny-dev": Preset(
        "flux-control",
        "black-forest-labs/FLUX.1-Canny-dev",
        None,
        None,
        1024,
        "published",
        "FLUX.1 Canny [dev]: FLUX.1 trained to read a Canny map itself, no ControlNet (gated: accept its licence)",
    ),
    "sd35": Preset(
        "sd3",
        "stabilityai/stable-diffusion-3.5-large",
        "stabilityai/stable-diffusion-3.5-large-controlnet-canny",
        None,
        1024,
        "published",
        "Stable Diffusion 3.5 Large with Stability's Canny ControlNet (gated: accept the licence on the hub)",
    ),
    "sdxl-union": Preset(
        "sdxl-union",
        "stabilityai/stable-diffusion-xl-base-1.0",
        "xinsir/controlnet-union-sdxl-1.0",
        "madebyollin/sdxl-vae-fp16-fix",
        1024,
        "published",
        "SDXL base 1.0 with xinsir's ControlNet-Union (one model, many control types: each unit's type picks its mode)",
    ),
    "flux-union": Preset(
        "flux-union",
        "black-forest-labs/FLUX.1-dev",
        "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro",
        None,
        1024,
        "published",
        "FLUX.1 [dev] with Shakker Labs' ControlNet-Union-Pro (one model, seven control modes; gated: accept the "
        "FLUX.1 [dev] licence on the hub)",
    ),
    "tiny-sd15": Preset("sd15", "tiny-sd15", "tiny-sd15", None, 64, "tiny", "tiny random SD1.5-style model for tests"),
    "tiny-sdxl": Preset("sdxl", "tiny-sdxl", "tiny-sdxl", None, 64, "tiny", "tiny random SDXL-style model for tests"),
    "tiny-flux": Preset("flux", "tiny-flux", "tiny-flux", None, 64, "tiny", "tiny random Flux-style model for tests"),
    "tiny-flux-control": Preset(
        "flux-control", "tiny-flux-control", None, None, 64, "tiny", "tiny random FLUX.1 Canny-style control model"
    ),
    "tiny-sdxl-union": Preset(
        "sdxl-union", "tiny-sdxl-union", "tiny-sdxl-union", None, 64, "tiny", "tiny random SDXL ControlNet-Union model"
    ),
    "tiny-flux-union": Preset(
        "flux-union", "tiny-flux-union", "tiny-flux-union", None, 64, "tiny", "tiny random Flux ControlNet-Union model"
    ),
    "tiny-sd3": Preset("sd3", "tiny-sd3", "tiny-sd3", None, 64, "tiny", "tiny random SD3-style model for tests"),
    "random-sd15": Preset(
        "sd15", "random-sd15", "random-sd15", None, 512, "random", "SD1.5 architecture, random weights (benchmarks)"
    ),
    "random-sdxl": Preset(
        "sdxl", "random-sdxl", "random-sdxl", None, 1024, "random", "SDXL architecture, random weights (benchmarks)"
    ),
    "random-flux": Preset(
        "flux",
        "random-flux",
        "random-flux",
        None,
        1024,
        "random",
        "FLUX.1-dev and InstantX's Canny ControlNet architectures, random weights built on the GPU (benchmarks)",
    ),
    "random-sd3": Preset(
        "sd3",
        "random-sd3",
        "random-sd3",
        None,
        1024,
        "random",
        "SD3.5 Large and its Canny ControlNet architectures, random weights built on the GPU (benchmarks)",
    ),
}

# The presets' repos whose files the hub serves only to accounts that accepted their licence.
GATED_REPOS: Final = frozenset(
    {
        "black-forest-labs/FLUX.1-dev",
        "black-forest-labs/FLUX.1-Canny-dev",
        "stabilityai/stable-diffusion-3.5-large",
        "stabilityai/stable-diffusion-3.5-large-controlnet-canny",
    }
)

FAMILY_NATIVE_SIZE: Final[dict[str, int]] = {name: entry.native_size for name, entry in FAMILIES.items()}

# Tiny autoencoders that decode latents to a preview image (`--preview taesd`).
FAMILY_PREVIEW_DECODER: Final[dict[str, str]] = {name: entry.preview_decoder for name, entry in FAMILIES.items()}


def family_defaults(family: str) -> dict[str, float]:
    return dict(FAMILIES[family].defaults)


def model_spec_from_preset(name: str) -> ModelSpec:
    preset = PRESETS[name]
    return ModelSpec(name, preset.family, preset.base, preset.controlnet, preset.vae)


def native_size(spec: ModelSpec) -> int:
    preset = PRESETS.get(spec.name)
    return preset.native_size if preset else FAMILY_NATIVE_SIZE[spec.family]


def built_weights(spec: ModelSpec) -> str | None:
    """ "tiny" or "random" for the presets built in code (random weights), None for weights to load."""
    preset = PRESETS.get(spec.name)
    return preset.weights if preset is not None and preset.weights != "published" else None


def has_random_weights(spec: ModelSpec) -> bool:
    return built_weights(spec) is not None
