"""The published architectures of FLUX.1-dev and Stable Diffusion 3.5 Large with their Canny ControlNets, and
of every preset's ControlNet, as data: the values of each repo's config.json that differ from the library's
defaults. Built with random weights by large_models.py (`random-flux`, `random-sd3`) and counted there.
Data only: nothing here imports torch or diffusers.

Where each comes from (the values, not the weights, were read):

- FLUX_DEV_TRANSFORMER: black-forest-labs/FLUX.1-dev transformer/config.json.
- INSTANTX_FLUX_CANNY: InstantX/FLUX.1-dev-Controlnet-Canny config.json: FLUX.1-dev's values with 5 double
  blocks and no single block (1.79 B parameters, which its 3.58 GB bf16 weight file confirms).
- FLUX_UNION_PRO: Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro, whose card calls it a Pro version of
  InstantX/FLUX.1-dev-Controlnet-Union "trained with more steps and datasets": InstantX's Union config.json
  (FLUX.1-dev's values with 5 double blocks, 10 single blocks and a 10-mode embedding). The Pro repo's own
  config.json was not read; its one weights file, 6.6 GB in bf16 as InstantX's Union's, confirms the 3.30 B
  parameters.
- FLUX_VAE / SD3_VAE: the two repos' vae/config.json: SDXL's VAE blocks with 16 latent channels and no
  quant convolutions, each with its scaling and shift.
- T5_XXL_ENCODER: google/t5-v1_1-xxl (text_encoder_2 of FLUX.1-dev, text_encoder_3 of SD3.5), encoder half.
- SD35_LARGE_TRANSFORMER: stabilityai/stable-diffusion-3.5-large transformer/config.json.
- SD35_LARGE_CANNY: stabilityai/stable-diffusion-3.5-large-controlnet-canny config.json, as diffusers'
  scripts/convert_sd3_controlnet_to_diffusers.py writes it (19 blocks without a context stream; 2.15 B
  parameters, which its 8.61 GB float32 weight file confirms).
- CLIP-L and CLIP-G: random_configs.CLIP_VIT_L_TEXT and CLIP_BIGG_TEXT (the SDXL text encoders' configs).
- SDXL_UNION_LAYERS: xinsir/controlnet-union-sdxl-1.0's own layers on SDXL's ControlNet blocks, as diffusers'
  ControlNetUnionModel defaults them (written for that checkpoint).
"""

from __future__ import annotations

from typing import Final

from rr_controlnet.models.random_configs import SD_VAE_BLOCKS

FLUX_DEV_TRANSFORMER: Final = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
INSTANTX_FLUX_CANNY: Final = dict(FLUX_DEV_TRANSFORMER, num_layers=5, num_single_layers=0)
FLUX_UNION_PRO: Final = dict(FLUX_DEV_TRANSFORMER, num_layers=5, num_single_layers=10, num_mode=10)
FLUX_VAE: Final = dict(
    SD_VAE_BLOCKS,
    latent_channels=16,
    use_quant_conv=False,
    use_post_quant_conv=False,
    sample_size=1024,
    scaling_factor=0.3611,
    shift_factor=0.1159,
)
T5_XXL_ENCODER: Final = {
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "feed_forward_proj": "gated-gelu",
    "dropout_rate": 0.0,
    "is_encoder_decoder": False,
    "tie_word_embeddings": False,
}

SD35_LARGE_TRANSFORMER: Final = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "num_layers": 38,
    "attention_head_dim": 64,
    "num_attention_heads": 38,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 2432,
    "pooled_projection_dim": 2048,
    "out_channels": 16,
    "pos_embed_max_size": 192,
    "qk_norm": "rms_norm",
}
SD35_LARGE_CANNY: Final = {
    "patch_size": 2,
    "in_channels": 16,
    "num_layers": 19,
    "attention_head_dim": 64,
    "num_attention_heads": 38,
    "joint_attention_dim": None,
    "caption_projection_dim": 2048,
    "pooled_projection_dim": 2048,
    "out_channels": 16,
    "pos_embed_max_size": None,
    "pos_embed_type": None,
    "use_pos_embed": False,
    "force_zeros_for_pooled_projection": False,
}
SD3_VAE: Final = dict(FLUX_VAE, scaling_factor=1.5305, shift_factor=0.0609)

SDXL_UNION_LAYERS: Final = {
    "num_control_type": 6,
    "num_trans_channel": 320,
    "num_trans_head": 8,
    "num_trans_layer": 1,
    "num_proj_channel": 320,
    "conditioning_embedding_out_channels": (48, 96, 192, 384),
}

# Each preset's ControlNet's parameter count, as large_models.controlnet_parameters counts it from the configs
# above and random_configs' (tests/test_large_models.py keeps the two equal): `rr-controlnet models` shows
# them without building anything. The random presets carry their published twin's ControlNet.
CONTROLNET_PARAMETERS: Final = {
    "sd15": 361_279_120,
    "sdxl": 1_251_014_160,
    "sdxl-union": 1_257_287_280,
    "flux": 1_791_605_248,
    "flux-union": 3_301_956_608,
    "sd35": 2_153_518_976,
}
RANDOM_TWINS: Final = {"random-sd15": "sd15", "random-sdxl": "sdxl", "random-flux": "flux", "random-sd3": "sd35"}
