"""The model families, one table: what differs between SD1.5, SDXL, SD3 and Flux pipelines, as data.

Every place that depends on the family (the loader, the pipeline call, the step latents, the previews,
the manifest's checks) reads it from FAMILIES rather than testing family names. Data only: nothing here
imports torch or diffusers; pipelines are named as `diffusers` exports them, ControlNets as
`diffusers.models.controlnets` does (MultiControlNetUnionModel is not exported at the top).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Family:
    name: str
    title: str  # how docs and messages name it
    pipeline: str  # the diffusers pipeline class
    # The diffusers ControlNet class, and the class several are combined into (for several control units);
    # None for a control model: the base model reads the control image itself (FLUX.1 Canny [dev]), so
    # there is no ControlNet, no control units, and no conditioning scale or range.
    controlnet: str | None
    multi_controlnet: str | None
    native_size: int  # the side length the models were trained at
    defaults: dict[str, Any]  # parameters that differ from the manifest's built-in defaults
    size_multiple: int  # the VAE's downscale times the transformer's patch size
    latent_channels: int
    latent_rgb: tuple[RGB, ...]  # x0 latent (as the denoiser sees it) -> RGB in -1..1, per channel
    latent_rgb_bias: RGB
    schedulers: tuple[str, ...]  # the manifest's scheduler names this family can run
    preview_decoder: str  # the tiny autoencoder (TAESD family) for --preview taesd
    control_argument: str = "image"  # the pipeline call's argument for the control image
    true_cfg: bool = True  # classifier-free guidance with a negative prompt; False: guidance is distilled
    packed_latents: bool = False  # latents come as 2x2 patches packed into tokens (Flux)
    # Union models: one ControlNet for many control types, each unit's type given to it as a mode (the model's
    # own table, below); None for a ControlNet of one type. A unit of a type missing from it is refused.
    union_modes: Mapping[str, int] | None = None
    # How the pipeline takes several units of the one union model: "lists" (the union pipeline: a control
    # image and a mode per unit, in lists) or "multi" (one unit as the ControlNet itself with an int mode;
    # several as a multi-ControlNet of it, a mode per unit, as Flux's model cards load it).
    union_call: str = "lists"
    # Components of the base repo that loading never reads, and the pipeline's own options.
    unloaded: tuple[str, ...] = ()
    pipeline_options: dict[str, Any] = field(default_factory=dict)
    # A control model's denoiser class: a single-file base holds only it (the other components come from
    # the model's config folder or repo).
    denoiser: str | None = None
    # The family whose base weights this one runs, where it is a variant (a union or control model's): a
    # custom base folder of either fits it.
    variant_of: str | None = None

    @property
    def has_controlnet(self) -> bool:
        return self.controlnet is not None

    @property
    def base_family(self) -> str:
        return self.variant_of or self.name


# xinsir/controlnet-union-sdxl-1.0 (its model card; diffusers' ControlNetUnionModel and ComfyUI's union types
# number them alike): a mode per group of map types, with the names this project's units use beside them.
XINSIR_UNION_MODES: Final[Mapping[str, int]] = {
    "openpose": 0, "pose": 0,
    "depth": 1,
    "hed": 2, "pidi": 2, "scribble": 2, "ted": 2, "softedge": 2,
    "canny": 3, "lineart": 3, "anime_lineart": 3, "mlsd": 3,
    "normal": 4,
    "segment": 5, "seg": 5,
}  # fmt: skip
# Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro (its model card: canny 0, tile 1, depth 2, blur 3, pose 4,
# gray 5, low quality 6).
SHAKKER_FLUX_UNION_MODES: Final[Mapping[str, int]] = {
    "canny": 0,
    "tile": 1,
    "depth": 2,
    "blur": 3,
    "pose": 4, "openpose": 4,
    "gray": 5,
    "low_quality": 6, "lq": 6,
}  # fmt: skip

EPSILON_SCHEDULERS: Final = ("ddim", "euler", "euler_a", "dpmpp_2m", "unipc", "pndm", "ddpm")
FLOW_SCHEDULERS: Final = ("flow_euler",)

# Latent-to-RGB factors: ComfyUI's comfy/latent_formats.py (SD15, SDXL, SD3, Flux classes), the same
# factors its live previews use; they apply to latents as the denoiser sees them (scaled and shifted).
_SD15_RGB: Final = (
    (0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177),
)  # fmt: skip
_SDXL_RGB: Final = (
    (0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188),
)  # fmt: skip
_SD3_RGB: Final = (
    (-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458), (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309), (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669), (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293), (-0.1448, -0.1463, -0.1189),
)  # fmt: skip
_FLUX_RGB: Final = (
    (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433), (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115), (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180), (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499), (-0.1262, -0.0982, -0.0778),
)  # fmt: skip

_SDXL: Final = Family(
    "sdxl",
    "Stable Diffusion XL",
    "StableDiffusionXLControlNetPipeline",
    "ControlNetModel",
    "MultiControlNetModel",
    native_size=1024,
    defaults={"guidance_scale": 5.0},
    size_multiple=8,
    latent_channels=4,
    latent_rgb=_SDXL_RGB,
    latent_rgb_bias=(0.1084, -0.0175, -0.0011),
    schedulers=EPSILON_SCHEDULERS,
    preview_decoder="madebyollin/taesdxl",
    pipeline_options={"add_watermarker": False},  # outputs as generated (and invisible-watermark optional)
)

_FLUX: Final = Family(
    "flux",
    "FLUX.1",
    "FluxControlNetPipeline",
    "FluxControlNetModel",
    "FluxMultiControlNetModel",
    native_size=1024,
    # FLUX.1-dev's model card and FluxPipeline's default guidance (distilled, not CFG); 28 steps as diffusers.
    defaults={"guidance_scale": 3.5, "steps": 28},
    size_multiple=16,  # VAE 8 x 2x2 packing
    latent_channels=16,
    latent_rgb=_FLUX_RGB,
    latent_rgb_bias=(-0.0329, -0.0718, -0.0851),
    schedulers=FLOW_SCHEDULERS,
    preview_decoder="madebyollin/taef1",
    control_argument="control_image",
    true_cfg=False,
    packed_latents=True,
)

FAMILIES: Final[dict[str, Family]] = {
    "sd15": Family(
        "sd15",
        "Stable Diffusion 1.5",
        "StableDiffusionControlNetPipeline",
        "ControlNetModel",
        "MultiControlNetModel",
        native_size=512,
        defaults={"guidance_scale": 7.5},  # diffusers' own default for the pipeline class
        size_multiple=8,
        latent_channels=4,
        latent_rgb=_SD15_RGB,
        latent_rgb_bias=(0.0, 0.0, 0.0),
        schedulers=EPSILON_SCHEDULERS,
        preview_decoder="madebyollin/taesd",
        unloaded=("safety_checker", "feature_extractor"),
        pipeline_options={"requires_safety_checker": False},
    ),
    "sdxl": _SDXL,
    # SDXL itself, run by the union pipeline with one model for many control types (its mode says which).
    "sdxl-union": replace(
        _SDXL,
        name="sdxl-union",
        variant_of="sdxl",
        title="Stable Diffusion XL with a ControlNet-Union model",
        pipeline="StableDiffusionXLControlNetUnionPipeline",
        controlnet="ControlNetUnionModel",
        multi_controlnet="MultiControlNetUnionModel",
        control_argument="control_image",
        union_modes=XINSIR_UNION_MODES,
    ),
    "sd3": Family(
        "sd3",
        "Stable Diffusion 3 / 3.5",
        "StableDiffusion3ControlNetPipeline",
        "SD3ControlNetModel",
        "SD3MultiControlNetModel",
        native_size=1024,
        defaults={"guidance_scale": 7.0, "steps": 28},  # diffusers' defaults for the pipeline class
        size_multiple=16,  # VAE 8 x patch 2
        latent_channels=16,
        latent_rgb=_SD3_RGB,
        latent_rgb_bias=(0.2394, 0.2135, 0.1925),
        schedulers=FLOW_SCHEDULERS,
        preview_decoder="madebyollin/taesd3",
        control_argument="control_image",
    ),
    "flux": _FLUX,
    # FLUX.1 with a union ControlNet (FluxControlNetModel with a mode embedding): the same pipeline, a mode per unit.
    "flux-union": replace(
        _FLUX,
        name="flux-union",
        variant_of="flux",
        title="FLUX.1 with a ControlNet-Union model",
        union_modes=SHAKKER_FLUX_UNION_MODES,
        union_call="multi",
    ),
    # FLUX.1 itself with the control image's latents beside the noisy ones (a transformer of 128 input
    # channels): black-forest-labs/FLUX.1-Canny-dev, run by FluxControlPipeline. Its model card runs it at
    # guidance 30 and 50 steps.
    "flux-control": replace(
        _FLUX,
        name="flux-control",
        variant_of="flux",
        title="FLUX.1 control model",
        pipeline="FluxControlPipeline",
        controlnet=None,
        multi_controlnet=None,
        defaults={"guidance_scale": 30.0, "steps": 50},
        denoiser="FluxTransformer2DModel",
    ),
}

FAMILY_NAMES: Final = tuple(FAMILIES)
# The parameters only a ControlNet has (how strongly and over which steps it acts): a control model has none.
CONTROLNET_PARAMS: Final = ("controlnet_conditioning_scale", "control_guidance_start", "control_guidance_end")


def union_mode(family: str, unit_type: str) -> int | None:
    """The mode a union model of `family` runs a unit of `unit_type` in; None off a union family, or for a type
    its model has no mode for."""
    modes = FAMILIES[family].union_modes
    return None if modes is None else modes.get(unit_type)


def canny_mode(family: str) -> int | None:
    """The mode of an item without units (its one Canny map) on a union family; None elsewhere."""
    return union_mode(family, "canny")


def family_for_pipeline(class_name: str, controlnet_config: Mapping[str, Any] | None = None) -> str | None:
    """The family whose pipeline (or whose base text-to-image pipeline) a model_index.json names; its union
    family where the ControlNet's config is a union model's (SDXL's class, or Flux's mode embedding)."""
    family = _pipeline_family(class_name)
    config = controlnet_config or {}
    if family == "sdxl" and config.get("_class_name") == FAMILIES["sdxl-union"].controlnet:
        return "sdxl-union"
    if family == "flux" and config.get("num_mode"):
        return "flux-union"
    return family


def _pipeline_family(class_name: str) -> str | None:
    for entry in FAMILIES.values():
        if class_name == entry.pipeline:
            return entry.name
    for prefix, name in (("StableDiffusion3", "sd3"), ("Flux", "flux"), ("StableDiffusionXL", "sdxl")):
        if class_name.startswith(prefix):
            return name
    return "sd15" if class_name.startswith("StableDiffusion") else None


def controlnet_family(config: Mapping[str, Any]) -> str | None:
    """The family of a ControlNet from its config.json: its class, a Flux mode embedding (`num_mode`: a union
    model), SDXL's text-time embeddings; None for a class no family runs."""
    class_name = config.get("_class_name")
    if class_name == "FluxControlNetModel":
        return "flux-union" if config.get("num_mode") else "flux"
    if class_name == "ControlNetModel":
        return "sdxl" if config.get("addition_embed_type") == "text_time" else "sd15"
    named = (entry.name for entry in FAMILIES.values() if class_name and entry.controlnet == class_name)
    return next(named, None)
