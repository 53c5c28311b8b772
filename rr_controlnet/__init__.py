"""rr-controlnet: Stable Diffusion ControlNet (Canny) batches, recorded step by step to Rerun."""

__version__ = "0.1.0"
