"""ControlNet (Canny) pipelines with random weights, built offline and deterministically.

- ``tiny-sd15`` / ``tiny-sdxl``: diffusers' own test configs, a few MB, for fast tests.
- ``random-sd15`` / ``random-sdxl``: the published SD1.5 / SDXL architectures (ControlNet canny
  included), for benchmarks without downloading weights. Never saved by tests: too big.

Usage::

    pipe = build_random_pipeline("tiny-sd15")
    folder = save_random_pipeline("tiny-sdxl", Path("models/tiny-sdxl"))

Each component is built under its own fixed seed, so a kind always gives bit-identical weights;
in another dtype, the weights are the float32 ones cast.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

RANDOM_KINDS: Final = ("tiny-sd15", "tiny-sdxl", "random-sd15", "random-sdxl")

# One fixed seed per component: adding or changing one component leaves the others' weights alone.
_COMPONENT_SEEDS: Final = {
    "unet": 1,
    "controlnet": 2,
    "vae": 3,
    "text_encoder": 4,
    "text_encoder_2": 5,
    "taesd": 6,
}

_TOKENIZER_MAX_LENGTH: Final = 77

# --- tiny configs: diffusers' tests (tests/pipelines/controlnet/test_controlnet*.py) -------------

# Three stride-2 convolutions bring the control image down to the latent size (scale factor 8).
_TINY_CONDITIONING_CHANNELS: Final = (4, 8, 16, 32)

# The down blocks a ControlNet shares with its UNet.
_TINY_SD15_BLOCKS: Final = {
    "block_out_channels": (4, 8),
    "layers_per_block": 2,
    "in_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "cross_attention_dim": 32,
    "norm_num_groups": 1,
}
_TINY_SD15_UNET: Final = dict(
    _TINY_SD15_BLOCKS, sample_size=32, out_channels=4, up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")
)
_TINY_SD15_CONTROLNET: Final = dict(_TINY_SD15_BLOCKS, conditioning_embedding_out_channels=_TINY_CONDITIONING_CHANNELS)
# Four VAE blocks instead of diffusers' two: a VAE scale factor of 8, as in the real models, keeps
# latent shapes and size rules the same as theirs and keeps the tiny models fast at real resolutions.
_TINY_VAE: Final = {
    "block_out_channels": (4, 8, 8, 8),
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "norm_num_groups": 2,
}
_TINY_CLIP_TEXT: Final = {
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
    "hidden_size": 32,
    "intermediate_size": 37,
    "layer_norm_eps": 1e-05,
    "num_attention_heads": 4,
    "num_hidden_layers": 5,
    "vocab_size": 1000,
}

_TINY_SDXL_BLOCKS: Final = {
    "block_out_channels": (32, 64),
    "layers_per_block": 2,
    "in_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "attention_head_dim": (2, 4),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "transformer_layers_per_block": (1, 2),
    "projection_class_embeddings_input_dim": 80,  # 6 * addition_time_embed_dim + projection_dim
    "cross_attention_dim": 64,  # the two text encoders' hidden sizes, concatenated
}
_TINY_SDXL_UNET: Final = dict(
    _TINY_SDXL_BLOCKS,
    sample_size=32,
    out_channels=4,
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
)
_TINY_SDXL_CONTROLNET: Final = dict(_TINY_SDXL_BLOCKS, conditioning_embedding_out_channels=_TINY_CONDITIONING_CHANNELS)
_TINY_SDXL_CLIP_TEXT: Final = dict(_TINY_CLIP_TEXT, hidden_act="gelu", projection_dim=32)

_TINY_DDIM: Final = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}

# --- published configs ----------------------------------------------------------------------------

# stable-diffusion-v1-5/stable-diffusion-v1-5 unet/config.json (the rest are library defaults).
_SD15_UNET: Final = {
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
    "in_channels": 4,
    "out_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 64,
}
# lllyasviel/control_v11p_sd15_canny config.json.
_SD15_CONTROLNET: Final = {
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": _SD15_UNET["down_block_types"],
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
    "in_channels": 4,
    "norm_num_groups": 32,
    "conditioning_embedding_out_channels": (16, 32, 96, 256),
}
_SD_VAE_BLOCKS: Final = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
}
_SD15_VAE: Final = dict(_SD_VAE_BLOCKS, sample_size=512, scaling_factor=0.18215)
# openai/clip-vit-large-patch14, text half (as in SD1.5's and SDXL's text_encoder/config.json).
_CLIP_VIT_L_TEXT: Final = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "layer_norm_eps": 1e-05,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
# scheduler/scheduler_config.json of SD1.5 (PNDM) and SDXL base (Euler).
_SD15_PNDM: Final = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}
_SDXL_EULER: Final = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "use_karras_sigmas": False,
}

# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json.
_SDXL_BLOCKS: Final = {
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "in_channels": 4,
    "norm_num_groups": 32,
}
_SDXL_UNET: Final = dict(
    _SDXL_BLOCKS,
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    out_channels=4,
    sample_size=128,
)
# diffusers/controlnet-canny-sdxl-1.0 config.json.
_SDXL_CONTROLNET: Final = dict(_SDXL_BLOCKS, conditioning_embedding_out_channels=(16, 32, 96, 256))
# stabilityai/stable-diffusion-xl-base-1.0 vae/config.json.
_SDXL_VAE: Final = dict(_SD_VAE_BLOCKS, sample_size=1024, scaling_factor=0.13025)
# laion/CLIP-ViT-bigG-14 (OpenCLIP), text half: SDXL's text_encoder_2/config.json.
_CLIP_BIGG_TEXT: Final = dict(
    _CLIP_VIT_L_TEXT,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    hidden_act="gelu",
    projection_dim=1280,
)


def build_random_pipeline(kind: str, dtype: torch.dtype | None = None) -> DiffusionPipeline:
    """Return a ControlNet pipeline of `kind` (one of RANDOM_KINDS) with random weights.

    SD1.5 kinds give a StableDiffusionControlNetPipeline, SDXL kinds a
    StableDiffusionXLControlNetPipeline. The same kind always gives bit-identical weights;
    `dtype` (a torch dtype, default float32) casts them after building.
    """
    if kind not in RANDOM_KINDS:
        raise ValueError(f"unknown random model kind {kind!r}: expected one of {RANDOM_KINDS}")
    import torch
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler

    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float16, not {dtype!r}")

    if kind == "tiny-sd15":
        return _sd15_pipeline(
            _TINY_SD15_UNET,
            _TINY_SD15_CONTROLNET,
            _TINY_VAE,
            _TINY_CLIP_TEXT,
            DDIMScheduler(**_TINY_DDIM),
            dtype,
        )
    if kind == "tiny-sdxl":
        return _sdxl_pipeline(
            _TINY_SDXL_UNET,
            _TINY_SDXL_CONTROLNET,
            _TINY_VAE,
            (_TINY_SDXL_CLIP_TEXT, _TINY_SDXL_CLIP_TEXT),
            DDIMScheduler(**_TINY_DDIM),
            dtype,
        )
    if kind == "random-sd15":
        return _sd15_pipeline(
            _SD15_UNET,
            _SD15_CONTROLNET,
            _SD15_VAE,
            _CLIP_VIT_L_TEXT,
            PNDMScheduler(**_SD15_PNDM),
            dtype,
        )
    return _sdxl_pipeline(
        _SDXL_UNET,
        _SDXL_CONTROLNET,
        _SDXL_VAE,
        (_CLIP_VIT_L_TEXT, _CLIP_BIGG_TEXT),
        EulerDiscreteScheduler(**_SDXL_EULER),
        dtype,
    )


def save_random_pipeline(kind: str, folder: Path) -> Path:
    """Build the `kind` pipeline and save it as a diffusers folder (safetensors) at `folder`.

    Load it back with ``<PipelineClass>.from_pretrained(folder,
    controlnet=ControlNetModel.from_pretrained(folder / "controlnet"))``. The folder appears
    complete or not at all: it is written beside it, then renamed into place. Raises
    FileExistsError if `folder` already exists.
    """
    return _save_folder(lambda: build_random_pipeline(kind), Path(folder), f"random model {kind!r}")


def _save_folder(build: Any, folder: Path, what: str) -> Path:
    """Build a diffusers object and save it at `folder`, which appears complete or not at all."""
    if folder.exists():
        raise FileExistsError(f"cannot save {what}: {folder} already exists")
    built = build()
    folder.parent.mkdir(parents=True, exist_ok=True)
    # A sibling, so the rename stays on one file system; hidden, so nobody takes it for a model.
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        built.save_pretrained(partial, safe_serialization=True)
        try:
            os.rename(partial, folder)
        except OSError as error:  # another process saved the same folder meanwhile
            raise FileExistsError(f"cannot save {what}: {folder} appeared while saving") from error
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _sd15_pipeline(unet_config, controlnet_config, vae_config, text_config, scheduler, dtype):
    from diffusers import StableDiffusionControlNetPipeline
    from transformers import CLIPTextModel

    return StableDiffusionControlNetPipeline(
        vae=_vae(vae_config, dtype),
        text_encoder=_text_encoder(CLIPTextModel, text_config, "text_encoder", dtype),
        tokenizer=_toy_clip_tokenizer(),
        unet=_unet(unet_config, dtype),
        controlnet=_controlnet(controlnet_config, dtype),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _sdxl_pipeline(unet_config, controlnet_config, vae_config, text_configs, scheduler, dtype):
    from diffusers import StableDiffusionXLControlNetPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    text_config, text_config_2 = text_configs
    return StableDiffusionXLControlNetPipeline(
        vae=_vae(vae_config, dtype),
        text_encoder=_text_encoder(CLIPTextModel, text_config, "text_encoder", dtype),
        text_encoder_2=_text_encoder(CLIPTextModelWithProjection, text_config_2, "text_encoder_2", dtype),
        tokenizer=_toy_clip_tokenizer(),
        tokenizer_2=_toy_clip_tokenizer(),
        unet=_unet(unet_config, dtype),
        controlnet=_controlnet(controlnet_config, dtype),
        scheduler=scheduler,
        add_watermarker=False,  # keep outputs as generated (and invisible-watermark optional)
    )


def _built(component: str, build, dtype):
    """Run `build()` under `component`'s seed, then cast the result to `dtype` if one is given."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_COMPONENT_SEEDS[component])
        model = build().eval()
    if dtype is None or dtype == torch.float32:
        return model
    # Not model.to(dtype): diffusers 0.42's ModelMixin.to() warns about "modules that should be
    # kept in float32" whenever it is given a dtype, even when there are none (as here).
    return torch.nn.Module.to(model, dtype)


def _unet(config, dtype):
    from diffusers import UNet2DConditionModel

    return _built("unet", lambda: UNet2DConditionModel(**config), dtype)


def _controlnet(config, dtype):
    import torch
    from diffusers import ControlNetModel

    def build():
        controlnet = ControlNetModel(**config)
        # ControlNetModel starts its output convolutions at zero (a fresh ControlNet must not
        # disturb the UNet it is trained against), so with random weights the control image
        # would change nothing. The default init makes it matter, as it does with trained weights.
        zero_convs = [
            *controlnet.controlnet_down_blocks,
            controlnet.controlnet_mid_block,
            controlnet.controlnet_cond_embedding.conv_out,
        ]
        for conv in zero_convs:
            conv.reset_parameters()
        # PyTorch's default init shrinks activations at every layer; through the embedding's
        # stack of small convolutions the control image would fade to almost nothing.
        for conv in controlnet.controlnet_cond_embedding.modules():
            if isinstance(conv, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        return controlnet

    return _built("controlnet", build, dtype)


def _vae(config, dtype):
    from diffusers import AutoencoderKL

    return _built("vae", lambda: AutoencoderKL(**config), dtype)


def _text_encoder(model_class, config, component, dtype):
    from transformers import CLIPTextConfig

    return _built(component, lambda: model_class(CLIPTextConfig(**config)), dtype)


def _toy_clip_tokenizer():
    """A character-level CLIP BPE tokenizer: every byte is a token, so any text tokenizes.

    Its 514 ids fit both the tiny (1000) and the real (49408) text encoder vocabularies. As in
    CLIP, the end-of-text token has the highest id: text encoders whose config says
    eos_token_id=2 (SD's, and diffusers' tiny ones) pool at the highest id in the sequence.
    """
    from transformers import CLIPTokenizer

    byte_chars = _bytes_to_unicode()
    tokens = [*byte_chars, *(char + "</w>" for char in byte_chars)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    with tempfile.TemporaryDirectory(prefix="toy-clip-tokenizer-") as folder:
        Path(folder, "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        Path(folder, "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        # Without model_max_length the pipeline would pad prompts to an effectively infinite length.
        return CLIPTokenizer.from_pretrained(folder, model_max_length=_TOKENIZER_MAX_LENGTH)


def _bytes_to_unicode() -> list[str]:
    """The 256 printable characters that byte-level BPE (GPT-2, CLIP) uses for bytes 0..255."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in chars:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[byte] for byte in range(256)]


# TAESD-style preview decoders (AutoencoderTiny): the published layout for the random kinds, a
# tiny one for the tiny kinds; both upsample latents by 8 like the VAEs they stand beside.
_TINY_TAESD: Final = {
    "encoder_block_out_channels": (4, 4, 4, 4),
    "decoder_block_out_channels": (4, 4, 4, 4),
    "num_encoder_blocks": (1, 1, 1, 1),
    "num_decoder_blocks": (1, 1, 1, 1),
    "latent_channels": 4,
}


def build_random_preview_decoder(kind: str, dtype: Any = None) -> Any:
    """A random-weight AutoencoderTiny for `kind`: tiny for the tiny kinds, TAESD's layout otherwise."""
    if kind not in RANDOM_KINDS:
        raise ValueError(f"unknown random model kind {kind!r}: expected one of {RANDOM_KINDS}")
    from diffusers import AutoencoderTiny

    config = _TINY_TAESD if kind.startswith("tiny") else {}
    return _built("taesd", lambda: AutoencoderTiny(**config), dtype)


def save_random_preview_decoder(kind: str, folder: Path) -> Path:
    """Save build_random_preview_decoder(kind) as a diffusers folder, complete or not at all."""
    return _save_folder(lambda: build_random_preview_decoder(kind), Path(folder), f"preview decoder {kind!r}")
