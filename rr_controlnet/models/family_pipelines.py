"""What a family's pipeline needs around its call: latents as images (Flux's packed tokens unpacked), the VAE's
scaling and shift undone, and seeds that reach every random draw.

torch is imported inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rr_controlnet.models.families import FAMILIES


def latent_image(pipe: Any, family: str, latents: Any, height: int, width: int) -> Any:
    """Latents as (batch, channels, height/8, width/8): Flux's (batch, tokens, 64) 2x2 patches unpacked."""
    if not FAMILIES[family].packed_latents or latents.ndim == 4:
        return latents
    return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)


def vae_input(vae: Any, latents: Any) -> Any:
    """Latents as the denoiser sees them, made what the VAE decodes: the scaling (and shift, SD3 and Flux) undone."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return latents.to(vae.dtype) / vae.config.scaling_factor + shift


@contextmanager
def seeded_control_encoding(pipe: Any, generators: Sequence[Any]) -> Iterator[None]:
    """StableDiffusion3ControlNetPipeline samples the control image's VAE latents (`latent_dist.sample()`) from
    torch's global generator, not the call's: within this block, each image's sample draws from its own job's
    generator (row i of a batch of n rows from generators[i % n], so classifier-free guidance's doubled batch
    draws as a job alone would), so that outputs follow from the seeds alone."""
    vae = getattr(pipe, "vae", None)
    if vae is None or not generators:
        yield
        return
    original = vae.encode

    def encode(images: Any, *args: Any, **kwargs: Any) -> Any:
        output = original(images, *args, **kwargs)
        distribution = output.latent_dist if hasattr(output, "latent_dist") else output[0]
        rows = distribution.mean.shape[0]
        chosen = [generators[row % len(generators)] for row in range(rows)]
        sample = distribution.sample

        distribution.sample = lambda generator=None: sample(generator=generator if generator is not None else chosen)
        return output

    vae.encode = encode
    try:
        yield
    finally:
        del vae.encode  # the instance attribute; the class method shows through again
