"""Flux, SD3 and SDXL ControlNet-Union pipelines with random weights, built offline and deterministically.

- ``tiny-flux`` / ``tiny-sd3``: a few MB, the shapes of the published families where it matters (16 latent
  channels, a VAE scale of 8, Flux's 2x2 packing and SD3's patch 2), with CLIP and T5 text encoders from
  small configs and a toy T5 tokenizer built here (every printable character is a token).
- ``tiny-flux-control``: tiny-flux without its ControlNet, its transformer taking twice the input channels
  (the control image's latents beside the noisy ones), as FLUX.1 Canny [dev] (FluxControlPipeline).
- ``tiny-sdxl-union``: tiny-sdxl with a ControlNet-Union model (ControlNetUnionModel) in place of its ControlNet.
- ``tiny-flux-union``: tiny-flux with a union ControlNet (FluxControlNetModel with a mode embedding, `num_mode`).

build_pipeline() and save_pipeline() take every kind, random_models' included (ALL_KINDS). Each component is
built under its own seed (random_configs.COMPONENT_SEEDS), so a kind always gives the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rr_controlnet.models import random_configs as configs
from rr_controlnet.models.families import FAMILIES
from rr_controlnet.models.random_models import (
    RANDOM_KINDS,
    build_random_pipeline,
    build_random_preview_decoder,
    built_component,
    clip_text_encoder,
    save_folder,
    toy_clip_tokenizer,
)

TRANSFORMER_KINDS: Final = ("tiny-flux", "tiny-flux-control", "tiny-sd3", "tiny-sdxl-union", "tiny-flux-union")
ALL_KINDS: Final = (*RANDOM_KINDS, *TRANSFORMER_KINDS)
# The preview decoders (TAESD layout) of the 16-channel families take 16 latent channels.
SIXTEEN_CHANNEL_KINDS: Final = (
    "tiny-flux",
    "tiny-flux-control",
    "tiny-sd3",
    "tiny-flux-union",
    "random-flux",
    "random-sd3",
)

# diffusers' tests (tests/pipelines/controlnet_flux, controlnet_sd3) scaled to real latent shapes.
TINY_FLUX_TRANSFORMER: Final = {
    "patch_size": 1,
    "in_channels": 64,  # 16 latent channels x a 2x2 patch, packed into each token
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,  # the T5 encoder's width
    "pooled_projection_dim": 32,  # the CLIP encoder's width
    "guidance_embeds": True,  # FLUX.1-dev: guidance distilled into the transformer
    "axes_dims_rope": (4, 4, 8),
}
# FLUX.1 Canny [dev]'s shape: the control image's packed latents concatenated to the noisy ones (64 + 64
# input channels), the prediction for the noisy ones alone (64).
TINY_FLUX_CONTROL_TRANSFORMER: Final = dict(TINY_FLUX_TRANSFORMER, in_channels=128, out_channels=64)
TINY_FLUX_CONTROLNET: Final = {
    key: value for key, value in TINY_FLUX_TRANSFORMER.items() if key != "num_single_layers"
} | {"num_single_layers": 1}
TINY_SD3_TRANSFORMER: Final = {
    "sample_size": 32,
    "patch_size": 2,
    "in_channels": 16,
    "num_layers": 2,
    "attention_head_dim": 8,
    "num_attention_heads": 4,
    "joint_attention_dim": 64,  # the T5 encoder's width; the two CLIP encoders' (2 x 32) are padded to it
    "caption_projection_dim": 32,
    "pooled_projection_dim": 64,  # the two CLIP projections, concatenated
    "out_channels": 16,
}
TINY_SD3_CONTROLNET: Final = dict(TINY_SD3_TRANSFORMER, num_layers=1)
TINY_VAE_16: Final = dict(
    configs.TINY_VAE,
    latent_channels=16,
    use_quant_conv=False,
    use_post_quant_conv=False,
)
# The published VAEs' scaling and shift (black-forest-labs/FLUX.1-dev and SD3.5's vae/config.json).
FLUX_VAE_SCALING: Final = {"scaling_factor": 0.3611, "shift_factor": 0.1159}
SD3_VAE_SCALING: Final = {"scaling_factor": 1.5305, "shift_factor": 0.0609}
TINY_CLIP_PROJECTED: Final = dict(configs.TINY_CLIP_TEXT, hidden_act="gelu", projection_dim=32)
TINY_T5: Final = {
    "vocab_size": 128,
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 37,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "dropout_rate": 0.0,
    "is_encoder_decoder": False,
}
T5_MAX_LENGTH: Final = 64
# The union model's own layers at the tiny SDXL's width; six control types as xinsir's model has.
TINY_UNION_EXTRA: Final = {"num_control_type": 6, "num_trans_channel": 32, "num_trans_head": 2, "num_proj_channel": 32}
# Seven modes, those Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro's card names (the config it follows, InstantX's
# Union's, embeds ten: large_configs.FLUX_UNION_PRO).
TINY_FLUX_UNION_CONTROLNET: Final = dict(TINY_FLUX_CONTROLNET, num_mode=7)
# FlowMatchEulerDiscreteScheduler as FLUX.1-dev (dynamic shifting) and SD3.5 (shift 3) configure it.
FLUX_FLOW: Final = {
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}
SD3_FLOW: Final = {"shift": 3.0}
# Each pipeline's text encoders in order: (component, transformers class, the T5's width; None for a CLIP).
FLUX_TEXT_ENCODERS: Final = (("text_encoder", "CLIPTextModel", None), ("text_encoder_2", "T5EncoderModel", 32))
SD3_TEXT_ENCODERS: Final = (
    ("text_encoder", "CLIPTextModelWithProjection", None),
    ("text_encoder_2", "CLIPTextModelWithProjection", None),
    ("text_encoder_3", "T5EncoderModel", 64),  # as wide as the transformer's joint attention
)


@dataclass(frozen=True)
class TinyTransformerModel:
    """A tiny flow-matching kind: its family (which names the pipeline and ControlNet classes) and the rest."""

    family: str
    transformer: str  # the diffusers transformer class
    transformer_config: dict[str, Any]
    controlnet_config: dict[str, Any] | None  # None where the family has no ControlNet
    text_encoders: tuple[tuple[str, str, int | None], ...]
    flow: dict[str, Any]
    vae_scaling: dict[str, float]


TINY_TRANSFORMER_MODELS: Final = {
    "tiny-flux": TinyTransformerModel(
        "flux",
        "FluxTransformer2DModel",
        TINY_FLUX_TRANSFORMER,
        TINY_FLUX_CONTROLNET,
        FLUX_TEXT_ENCODERS,
        FLUX_FLOW,
        FLUX_VAE_SCALING,
    ),
    "tiny-flux-control": TinyTransformerModel(
        "flux-control",
        "FluxTransformer2DModel",
        TINY_FLUX_CONTROL_TRANSFORMER,
        None,
        FLUX_TEXT_ENCODERS,
        FLUX_FLOW,
        FLUX_VAE_SCALING,
    ),
    "tiny-sd3": TinyTransformerModel(
        "sd3",
        "SD3Transformer2DModel",
        TINY_SD3_TRANSFORMER,
        TINY_SD3_CONTROLNET,
        SD3_TEXT_ENCODERS,
        SD3_FLOW,
        SD3_VAE_SCALING,
    ),
    "tiny-flux-union": TinyTransformerModel(
        "flux-union",
        "FluxTransformer2DModel",
        TINY_FLUX_TRANSFORMER,
        TINY_FLUX_UNION_CONTROLNET,
        FLUX_TEXT_ENCODERS,
        FLUX_FLOW,
        FLUX_VAE_SCALING,
    ),
}


def build_pipeline(kind: str, dtype: Any = None) -> Any:
    """The ControlNet pipeline of any kind in ALL_KINDS, with random weights (see build_random_pipeline)."""
    if kind in RANDOM_KINDS:
        return build_random_pipeline(kind, dtype)
    if kind in TINY_TRANSFORMER_MODELS:
        return _transformer_pipeline(kind, dtype)
    if kind == "tiny-sdxl-union":
        return _sdxl_union_pipeline(dtype)
    raise ValueError(f"unknown random model kind {kind!r}: expected one of {ALL_KINDS}")


def save_pipeline(kind: str, folder: Path) -> Path:
    """build_pipeline(kind) saved as a diffusers folder, complete or not at all (FileExistsError if it exists)."""
    return save_folder(lambda: build_pipeline(kind), Path(folder), f"random model {kind!r}")


def build_preview_decoder(kind: str, dtype: Any = None) -> Any:
    """A random-weight AutoencoderTiny for any kind, with the latent channels of its family."""
    if kind not in SIXTEEN_CHANNEL_KINDS:
        return build_random_preview_decoder("tiny-sdxl" if kind == "tiny-sdxl-union" else kind, dtype)
    from diffusers import AutoencoderTiny

    # The random kinds: the published layout of madebyollin/taef1 and taesd3 (AutoencoderTiny's defaults).
    config = dict(configs.TINY_TAESD if kind.startswith("tiny") else {}, latent_channels=16)
    return built_component("taesd", lambda: AutoencoderTiny(**config), dtype)


def save_preview_decoder(kind: str, folder: Path) -> Path:
    return save_folder(lambda: build_preview_decoder(kind), Path(folder), f"preview decoder {kind!r}")


def _transformer_pipeline(kind: str, dtype: Any) -> Any:
    """A tiny Flux or SD3 pipeline: its family's pipeline and ControlNet classes, the kind's transformer, a CLIP
    or T5 encoder with a toy tokenizer per text encoder, each component under its own seed."""
    import diffusers
    import transformers

    model = TINY_TRANSFORMER_MODELS[kind]
    family = FAMILIES[model.family]
    components: dict[str, Any] = {"scheduler": _flow_scheduler(model.flow), "vae": _vae(model.vae_scaling, dtype)}
    for number, (component, class_name, t5_width) in enumerate(model.text_encoders, start=1):
        tokenizer = "tokenizer" if number == 1 else f"tokenizer_{number}"
        encoder_class = getattr(transformers, class_name)
        if t5_width is None:
            components[component] = clip_text_encoder(encoder_class, TINY_CLIP_PROJECTED, component, dtype)
            components[tokenizer] = toy_clip_tokenizer()
        else:
            components[component] = _t5(encoder_class, component, dtype, d_model=t5_width)
            components[tokenizer] = toy_t5_tokenizer()
    transformer_class = getattr(diffusers, model.transformer)
    components["transformer"] = built_component("unet", lambda: transformer_class(**model.transformer_config), dtype)
    if family.controlnet is not None:
        controlnet_class = getattr(diffusers, family.controlnet)
        components["controlnet"] = _controlnet(lambda: controlnet_class(**model.controlnet_config), dtype)
    return getattr(diffusers, family.pipeline)(**components)


def _sdxl_union_pipeline(dtype: Any) -> Any:
    from diffusers import ControlNetUnionModel, StableDiffusionXLControlNetUnionPipeline

    plain = build_random_pipeline("tiny-sdxl", dtype)
    union = _controlnet(
        lambda: ControlNetUnionModel(**configs.TINY_SDXL_CONTROLNET, **TINY_UNION_EXTRA), dtype, embedding=True
    )
    components = {name: module for name, module in plain.components.items() if name != "controlnet"}
    return StableDiffusionXLControlNetUnionPipeline(**components, controlnet=union)


def _vae(scaling: dict[str, float], dtype: Any) -> Any:
    from diffusers import AutoencoderKL

    return built_component("vae", lambda: AutoencoderKL(**TINY_VAE_16, **scaling), dtype)


def _t5(model_class: Any, component: str, dtype: Any, **changes: Any) -> Any:
    from transformers import T5Config

    config = dict(TINY_T5, **changes)
    return built_component(component, lambda: model_class(T5Config(**config)), dtype)


def _flow_scheduler(settings: dict[str, Any]) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, **settings)


def build_random_transformer_controlnet(controlnet_class: Any, config: dict[str, Any], seed: int, dtype: Any) -> Any:
    """A Flux, SD3 or union ControlNet of the architecture `config` with random weights drawn under `seed` (a
    control unit's stand-in: the same seed always gives the same weights)."""
    embedding = controlnet_class.__name__ == "ControlNetUnionModel"  # as the tiny union model is built
    return _controlnet(lambda: controlnet_class(**config), dtype, embedding, seed)


def _controlnet(build: Any, dtype: Any, embedding: bool = False, seed: int | None = None) -> Any:
    """A ControlNet whose zero-initialised layers get the default init, so that with random weights the
    control image changes the output (as it does with trained weights). `embedding`: the control image's
    stack of small convolutions gets He init too (as random_models does for ControlNetModel), or it fades."""

    def built() -> Any:
        import torch

        controlnet = build()
        for module in controlnet.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and not module.weight.any():
                module.reset_parameters()
        if embedding:
            for conv in controlnet.controlnet_cond_embedding.modules():
                if isinstance(conv, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        return controlnet

    return built_component("controlnet", built, dtype, seed)


def toy_t5_tokenizer() -> Any:
    """A T5 tokenizer whose vocabulary is the printable ASCII characters (and "▁", SentencePiece's space):
    any text tokenizes, and the ids fit TINY_T5's vocabulary."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    pieces += [(chr(code), -1.0) for code in range(33, 127)]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_LENGTH)
