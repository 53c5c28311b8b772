"""An item's review images made from what its run wrote, for folders whose review files are missing (made
before the page existed, or merged from shards written elsewhere).

The output and its infotext come from `<id>.png`; the input, the edge map, the adherence overlay and the
step previews from `<id>.rrd` (recorded.recorded_images). Nothing runs a model again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rr_controlnet.errors import ItemFailed
from rr_controlnet.images import image_file_problem, load_image
from rr_controlnet.outputs import ItemOutcome
from rr_controlnet.outputs.names import IMAGE_SUFFIX, RECORDING_SUFFIX
from rr_controlnet.recording.read import recorded_images
from rr_controlnet.review.pages.items import STEP_FRAMES, ItemImages, StepFrames


def images_from_files(out_dir: Path, outcome: ItemOutcome) -> ItemImages:
    """A done item's images from its output PNG and recording; what cannot be read is left out."""
    output, infotext = None, None
    png = outcome.file(out_dir, IMAGE_SUFFIX)
    if png is not None:
        output, infotext = _png_and_infotext(png)
    recorded: dict[str, Any] = {}
    recording = outcome.file(out_dir, RECORDING_SUFFIX)
    if recording is not None and recording.is_file():
        steps = outcome.params.get("steps") or STEP_FRAMES
        frames = StepFrames(steps if isinstance(steps, int) else STEP_FRAMES)
        recorded = recorded_images(recording, outcome.id, frames.wanted)
    return ItemImages(
        input=recorded.get("input"),
        canny=recorded.get("canny"),
        output=output,
        overlay=recorded.get("overlay"),
        frames=recorded.get("frames", ()),
        infotext=infotext,
        controls=recorded.get("controls", ()),
    )


def input_image(path: Path) -> np.ndarray | None:
    """An input image file's pixels (a failed item's input, shown beside its reason), or None."""

    if image_file_problem(Path(path)) is not None:
        return None
    try:
        return load_image(Path(path)).pixels
    except (ItemFailed, OSError, ValueError):
        return None


def _png_and_infotext(path: Path) -> tuple[np.ndarray | None, str | None]:
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB")), image.info.get("parameters")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None, None
