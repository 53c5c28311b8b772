"""Flux, SD3 and SDXL ControlNet-Union pipelines with random weights, built offline and deterministically.

- ``tiny-flux`` / ``tiny-sd3``: a few MB, the shapes of the published families where it matters (16 latent
  channels, a VAE scale of 8, Flux's 2x2 packing and SD3's patch 2), with CLIP and T5 text encoders from
  small configs and a toy T5 tokenizer built here (every printable character is a token).
- ``tiny-sdxl-union``: tiny-sdxl with a ControlNet-Union model (ControlNetUnionModel) in place of its ControlNet.

build_pipeline() and save_pipeline() take every kind, random_models' included (ALL_KINDS). Each component is
built under its own seed (random_configs.COMPONENT_SEEDS), so a kind always gives the same weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from rr_controlnet.models import random_configs as configs
from rr_controlnet.models.random_models import (
    RANDOM_KINDS,
    build_random_pipeline,
    build_random_preview_decoder,
    built_component,
    clip_text_encoder,
    save_folder,
    toy_clip_tokenizer,
)

TRANSFORMER_KINDS: Final = ("tiny-flux", "tiny-sd3", "tiny-sdxl-union")
ALL_KINDS: Final = (*RANDOM_KINDS, *TRANSFORMER_KINDS)
# The preview decoders (TAESD layout) of the 16-channel families take 16 latent channels.
SIXTEEN_CHANNEL_KINDS: Final = ("tiny-flux", "tiny-sd3", "random-flux", "random-sd3")

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


def build_pipeline(kind: str, dtype: Any = None) -> Any:
    """The ControlNet pipeline of any kind in ALL_KINDS, with random weights (see build_random_pipeline)."""
    if kind in RANDOM_KINDS:
        return build_random_pipeline(kind, dtype)
    if kind == "tiny-flux":
        return _flux_pipeline(dtype)
    if kind == "tiny-sd3":
        return _sd3_pipeline(dtype)
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


def _flux_pipeline(dtype: Any) -> Any:
    from diffusers import FluxControlNetModel, FluxControlNetPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    return FluxControlNetPipeline(
        scheduler=_flow_scheduler(FLUX_FLOW),
        vae=_vae(FLUX_VAE_SCALING, dtype),
        text_encoder=clip_text_encoder(CLIPTextModel, TINY_CLIP_PROJECTED, "text_encoder", dtype),
        tokenizer=toy_clip_tokenizer(),
        text_encoder_2=_t5(T5EncoderModel, "text_encoder_2", dtype),
        tokenizer_2=toy_t5_tokenizer(),
        transformer=built_component("unet", lambda: FluxTransformer2DModel(**TINY_FLUX_TRANSFORMER), dtype),
        controlnet=_controlnet(lambda: FluxControlNetModel(**TINY_FLUX_CONTROLNET), dtype),
    )


def _sd3_pipeline(dtype: Any) -> Any:
    from diffusers import SD3ControlNetModel, SD3Transformer2DModel, StableDiffusion3ControlNetPipeline
    from transformers import CLIPTextModelWithProjection, T5EncoderModel

    return StableDiffusion3ControlNetPipeline(
        scheduler=_flow_scheduler(SD3_FLOW),
        vae=_vae(SD3_VAE_SCALING, dtype),
        text_encoder=clip_text_encoder(CLIPTextModelWithProjection, TINY_CLIP_PROJECTED, "text_encoder", dtype),
        tokenizer=toy_clip_tokenizer(),
        text_encoder_2=clip_text_encoder(CLIPTextModelWithProjection, TINY_CLIP_PROJECTED, "text_encoder_2", dtype),
        tokenizer_2=toy_clip_tokenizer(),
        text_encoder_3=_t5(T5EncoderModel, "text_encoder_3", dtype, d_model=64),
        tokenizer_3=toy_t5_tokenizer(),
        transformer=built_component("unet", lambda: SD3Transformer2DModel(**TINY_SD3_TRANSFORMER), dtype),
        controlnet=_controlnet(lambda: SD3ControlNetModel(**TINY_SD3_CONTROLNET), dtype),
    )


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
