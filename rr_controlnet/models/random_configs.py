"""The component configs of the models built in code with random weights (random_models.py): diffusers'
own test configs for the tiny kinds, the published SD1.5 and SDXL architectures for the random kinds.
Data only: nothing here imports torch or diffusers.
"""

from __future__ import annotations

from typing import Final

# One fixed seed per component: adding or changing one component leaves the others' weights alone.
COMPONENT_SEEDS: Final = {
    "unet": 1,
    "controlnet": 2,
    "vae": 3,
    "text_encoder": 4,
    "text_encoder_2": 5,
    "taesd": 6,
    "text_encoder_3": 7,
}

TOKENIZER_MAX_LENGTH: Final = 77

# --- tiny configs: diffusers' tests (tests/pipelines/controlnet/test_controlnet*.py) -------------

# Three stride-2 convolutions bring the control image down to the latent size (scale factor 8).
TINY_CONDITIONING_CHANNELS: Final = (4, 8, 16, 32)

# The down blocks a ControlNet shares with its UNet.
TINY_SD15_BLOCKS: Final = {
    "block_out_channels": (4, 8),
    "layers_per_block": 2,
    "in_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "cross_attention_dim": 32,
    "norm_num_groups": 1,
}
TINY_SD15_UNET: Final = dict(
    TINY_SD15_BLOCKS, sample_size=32, out_channels=4, up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")
)
TINY_SD15_CONTROLNET: Final = dict(TINY_SD15_BLOCKS, conditioning_embedding_out_channels=TINY_CONDITIONING_CHANNELS)
# Four VAE blocks instead of diffusers' two: a VAE scale factor of 8, as in the real models, keeps
# latent shapes and size rules the same as theirs and keeps the tiny models fast at real resolutions.
TINY_VAE: Final = {
    "block_out_channels": (4, 8, 8, 8),
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "norm_num_groups": 2,
}
TINY_CLIP_TEXT: Final = {
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

TINY_SDXL_BLOCKS: Final = {
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
TINY_SDXL_UNET: Final = dict(
    TINY_SDXL_BLOCKS,
    sample_size=32,
    out_channels=4,
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
)
TINY_SDXL_CONTROLNET: Final = dict(TINY_SDXL_BLOCKS, conditioning_embedding_out_channels=TINY_CONDITIONING_CHANNELS)
TINY_SDXL_CLIP_TEXT: Final = dict(TINY_CLIP_TEXT, hidden_act="gelu", projection_dim=32)

TINY_DDIM: Final = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}

# --- published configs ----------------------------------------------------------------------------

# stable-diffusion-v1-5/stable-diffusion-v1-5 unet/config.json (the rest are library defaults).
SD15_UNET: Final = {
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
SD15_CONTROLNET: Final = {
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": SD15_UNET["down_block_types"],
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
    "in_channels": 4,
    "norm_num_groups": 32,
    "conditioning_embedding_out_channels": (16, 32, 96, 256),
}
SD_VAE_BLOCKS: Final = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
}
SD15_VAE: Final = dict(SD_VAE_BLOCKS, sample_size=512, scaling_factor=0.18215)
# openai/clip-vit-large-patch14, text half (as in SD1.5's and SDXL's text_encoder/config.json).
CLIP_VIT_L_TEXT: Final = {
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
SD15_PNDM: Final = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}
SDXL_EULER: Final = {
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
SDXL_BLOCKS: Final = {
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
SDXL_UNET: Final = dict(
    SDXL_BLOCKS,
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    out_channels=4,
    sample_size=128,
)
# diffusers/controlnet-canny-sdxl-1.0 config.json.
SDXL_CONTROLNET: Final = dict(SDXL_BLOCKS, conditioning_embedding_out_channels=(16, 32, 96, 256))
# stabilityai/stable-diffusion-xl-base-1.0 vae/config.json.
SDXL_VAE: Final = dict(SD_VAE_BLOCKS, sample_size=1024, scaling_factor=0.13025)
# laion/CLIP-ViT-bigG-14 (OpenCLIP), text half: SDXL's text_encoder_2/config.json.
CLIP_BIGG_TEXT: Final = dict(
    CLIP_VIT_L_TEXT,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    hidden_act="gelu",
    projection_dim=1280,
)


TINY_TAESD: Final = {
    "encoder_block_out_channels": (4, 4, 4, 4),
    "decoder_block_out_channels": (4, 4, 4, 4),
    "num_encoder_blocks": (1, 1, 1, 1),
    "num_decoder_blocks": (1, 1, 1, 1),
    "latent_channels": 4,
}
