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

from rr_controlnet.models import random_configs as configs

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

RANDOM_KINDS: Final = ("tiny-sd15", "tiny-sdxl", "random-sd15", "random-sdxl")


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
            configs.TINY_SD15_UNET,
            configs.TINY_SD15_CONTROLNET,
            configs.TINY_VAE,
            configs.TINY_CLIP_TEXT,
            DDIMScheduler(**configs.TINY_DDIM),
            dtype,
        )
    if kind == "tiny-sdxl":
        return _sdxl_pipeline(
            configs.TINY_SDXL_UNET,
            configs.TINY_SDXL_CONTROLNET,
            configs.TINY_VAE,
            (configs.TINY_SDXL_CLIP_TEXT, configs.TINY_SDXL_CLIP_TEXT),
            DDIMScheduler(**configs.TINY_DDIM),
            dtype,
        )
    if kind == "random-sd15":
        return _sd15_pipeline(
            configs.SD15_UNET,
            configs.SD15_CONTROLNET,
            configs.SD15_VAE,
            configs.CLIP_VIT_L_TEXT,
            PNDMScheduler(**configs.SD15_PNDM),
            dtype,
        )
    return _sdxl_pipeline(
        configs.SDXL_UNET,
        configs.SDXL_CONTROLNET,
        configs.SDXL_VAE,
        (configs.CLIP_VIT_L_TEXT, configs.CLIP_BIGG_TEXT),
        EulerDiscreteScheduler(**configs.SDXL_EULER),
        dtype,
    )


def save_random_pipeline(kind: str, folder: Path) -> Path:
    """Build the `kind` pipeline and save it as a diffusers folder (safetensors) at `folder`.

    Load it back with ``<PipelineClass>.from_pretrained(folder,
    controlnet=ControlNetModel.from_pretrained(folder / "controlnet"))``. The folder appears
    complete or not at all: it is written beside it, then renamed into place. Raises
    FileExistsError if `folder` already exists.
    """
    return save_folder(lambda: build_random_pipeline(kind), Path(folder), f"random model {kind!r}")


def save_folder(build: Any, folder: Path, what: str) -> Path:
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
        text_encoder=clip_text_encoder(CLIPTextModel, text_config, "text_encoder", dtype),
        tokenizer=toy_clip_tokenizer(),
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
        text_encoder=clip_text_encoder(CLIPTextModel, text_config, "text_encoder", dtype),
        text_encoder_2=clip_text_encoder(CLIPTextModelWithProjection, text_config_2, "text_encoder_2", dtype),
        tokenizer=toy_clip_tokenizer(),
        tokenizer_2=toy_clip_tokenizer(),
        unet=_unet(unet_config, dtype),
        controlnet=_controlnet(controlnet_config, dtype),
        scheduler=scheduler,
        add_watermarker=False,  # keep outputs as generated (and invisible-watermark optional)
    )


def built_component(component: str, build, dtype, seed: int | None = None):
    """Run `build()` under `component`'s seed (or `seed`), then cast the result to `dtype` if one is given."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(configs.COMPONENT_SEEDS[component] if seed is None else seed)
        model = build().eval()
    if dtype is None or dtype == torch.float32:
        return model
    # Not model.to(dtype): diffusers 0.42's ModelMixin.to() warns about "modules that should be
    # kept in float32" whenever it is given a dtype, even when there are none (as here).
    return torch.nn.Module.to(model, dtype)


def _unet(config, dtype):
    from diffusers import UNet2DConditionModel

    return built_component("unet", lambda: UNet2DConditionModel(**config), dtype)


def build_random_controlnet(config: dict[str, Any], seed: int, dtype: Any = None) -> Any:
    """A ControlNet of the architecture `config` with random weights drawn under `seed` (a control unit's
    stand-in: the same seed always gives the same weights)."""
    return _controlnet(dict(config), dtype, seed)


def _controlnet(config, dtype, seed: int | None = None):
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

    return built_component("controlnet", build, dtype, seed)


def _vae(config, dtype):
    from diffusers import AutoencoderKL

    return built_component("vae", lambda: AutoencoderKL(**config), dtype)


def clip_text_encoder(model_class, config, component, dtype):
    from transformers import CLIPTextConfig

    return built_component(component, lambda: model_class(CLIPTextConfig(**config)), dtype)


def toy_clip_tokenizer():
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
        return CLIPTokenizer.from_pretrained(folder, model_max_length=configs.TOKENIZER_MAX_LENGTH)


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
def build_random_preview_decoder(kind: str, dtype: Any = None) -> Any:
    """A random-weight AutoencoderTiny for `kind`: tiny for the tiny kinds, TAESD's layout otherwise."""
    if kind not in RANDOM_KINDS:
        raise ValueError(f"unknown random model kind {kind!r}: expected one of {RANDOM_KINDS}")
    from diffusers import AutoencoderTiny

    config = configs.TINY_TAESD if kind.startswith("tiny") else {}
    return built_component("taesd", lambda: AutoencoderTiny(**config), dtype)
