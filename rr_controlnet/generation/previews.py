"""Readable per-step previews from latents, without running the VAE.

A linear map from the four latent channels to RGB (the factors ComfyUI's latent previewer
publishes) applied to the x0 estimate gives a 1/8-size preview for a fraction of a millisecond.
"""

from __future__ import annotations

from typing import Final

import numpy as np

LATENT_RGB_FACTORS: Final = {
    "sd15": (
        np.array(
            [
                [0.3512, 0.2297, 0.3227],
                [0.3250, 0.4974, 0.2350],
                [-0.2829, 0.1762, 0.2721],
                [-0.2120, -0.2616, -0.7177],
            ],
            dtype=np.float32,
        ),
        np.zeros(3, dtype=np.float32),
    ),
    "sdxl": (
        np.array(
            [
                [0.3651, 0.4232, 0.4341],
                [-0.2533, -0.0042, 0.1068],
                [0.1076, 0.1111, -0.0362],
                [-0.3165, -0.2492, -0.2188],
            ],
            dtype=np.float32,
        ),
        np.array([0.1084, -0.0175, -0.0011], dtype=np.float32),
    ),
}


def latent_to_rgb(latent: np.ndarray, family: str) -> np.ndarray:
    """Map a CxHxW latent (C=4, unscaled as the UNet sees it) to an HxWx3 uint8 image."""
    factors, bias = LATENT_RGB_FACTORS[family]
    if latent.shape[0] != factors.shape[0]:
        raise ValueError(
            f"latent has {latent.shape[0]} channels, the {family} preview factors expect {factors.shape[0]}"
        )
    hwc = np.moveaxis(latent.astype(np.float32), 0, -1)
    rgb = np.clip(hwc @ factors + bias, -1.0, 1.0)
    return ((rgb + 1.0) * 127.5).round().astype(np.uint8)
