"""The original Rerun controlnet example's job: one image, one prompt, SDXL, as a one-item manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from rr_controlnet.manifest.document import parse_manifest
from rr_controlnet.manifest.overrides import Overrides
from rr_controlnet.spec import Manifest

BUNDLED_LOGO: Final = Path(__file__).resolve().parents[1] / "assets" / "logo.png"
ORIGINAL_PROMPT: Final = "aerial view, a futuristic research complex in a bright foggy jungle, hard lighting"
ORIGINAL_NEGATIVE_PROMPT: Final = "low quality, bad quality, sketches"
ORIGINAL_CONDITIONING_SCALE: Final = 0.5
# What the job's summary and recording name say it came from: it has no manifest file.
SOURCE: Final = Path("--img-path")


def original_manifest(
    image: Path | None = None,
    prompt: str = ORIGINAL_PROMPT,
    negative_prompt: str = ORIGINAL_NEGATIVE_PROMPT,
    model: str | None = None,
    overrides: Overrides | None = None,
) -> Manifest:
    """The example's job over `image` (default: a bundled RGBA logo, as the example used Rerun's).

    Raises ManifestError, as for a manifest file, when the image or a value is not usable.
    """
    document = {
        "version": 1,
        "model": model or "sdxl",
        "items": [
            {
                "image": str((image or BUNDLED_LOGO).resolve()),
                "prompt": prompt,
                "negative_prompt": negative_prompt,
                "controlnet_conditioning_scale": ORIGINAL_CONDITIONING_SCALE,
            }
        ],
    }
    return parse_manifest(document, SOURCE, overrides)
