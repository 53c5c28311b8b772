"""An item's review images read back from what its run wrote, for folders whose review files are missing
(made before the page existed, or merged from shards written elsewhere).

The output and its infotext come from `<id>.png`; the input, the edge map, the adherence overlay and the
step previews from `<id>.rrd` (Rerun's reader, imported only here). Nothing runs a model again.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rr_controlnet.outputs import ItemOutcome
from rr_controlnet.outputs.names import IMAGE_SUFFIX, RECORDING_SUFFIX
from rr_controlnet.review_page.items import STEP_FRAMES, ItemImages, StepFrames

# What a recording may be unreadable with: a missing footer warns, a damaged file raises.
RECORDING_ERRORS = (OSError, RuntimeError, ValueError, KeyError, Warning)


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
        recorded = recorded_images(recording, outcome.id, steps if isinstance(steps, int) else STEP_FRAMES)
    return ItemImages(
        input=recorded.get("input"),
        canny=recorded.get("canny"),
        output=output,
        overlay=recorded.get("overlay"),
        frames=recorded.get("frames", ()),
        infotext=infotext,
    )


def input_image(path: Path) -> np.ndarray | None:
    """An input image file's pixels (a failed item's input, shown beside its reason), or None."""
    from rr_controlnet.errors import ItemFailed
    from rr_controlnet.images import image_file_problem, load_image

    if image_file_problem(Path(path)) is not None:
        return None
    try:
        return load_image(Path(path)).pixels
    except (ItemFailed, OSError, ValueError):
        return None


def recorded_images(path: Path, item_id: str, steps: int) -> dict[str, Any]:
    """From an item's .rrd: "input", "canny", "overlay" (pixels) and "frames" ((step, preview) pairs, up to
    STEP_FRAMES evenly spaced); keys are absent where the recording has nothing readable."""
    from rr_controlnet.layout import item_paths
    from rr_controlnet.record import rrd_reader

    paths = item_paths(item_id)
    wanted = {
        f"/{paths.input_image}": "input",
        f"/{paths.input_canny}": "canny",
        f"/{paths.adherence_overlay}": "overlay",
        f"/{paths.preview}": "frames",
    }
    frames = StepFrames(steps)
    found: dict[str, Any] = {}
    try:
        chunks = rrd_reader(path).stream().filter(content=f"/{paths.root}/**").to_chunks()
    except RECORDING_ERRORS:
        return {}
    for chunk in chunks:
        kind = wanted.get(str(chunk.entity_path))
        if kind is None:
            continue
        batch = chunk.to_record_batch()
        if "EncodedImage:blob" not in batch.schema.names:
            continue
        blobs = batch.column("EncodedImage:blob")
        step_column = batch.column("step") if "step" in batch.schema.names else None
        for row in range(batch.num_rows):
            step = step_column[row].as_py() if step_column is not None else None
            if kind == "frames" and (step is None or step not in frames.wanted):
                continue
            pixels = _decoded(blobs[row])
            if pixels is None:
                continue
            if kind == "frames":
                frames.add(step, pixels)
            else:
                found[kind] = pixels
    if frames.frames:
        found["frames"] = frames.sampled()
    return found


def _decoded(cell: Any) -> np.ndarray | None:
    """The pixels of one EncodedImage:blob cell (a list holding the encoded bytes)."""
    if not cell.is_valid or len(cell.values) == 0:
        return None
    data = cell.values[0].values.to_numpy(zero_copy_only=False).tobytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert(_display_mode(image)))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def _display_mode(image: Image.Image) -> str:
    """Gray stays gray (an edge map), transparency is kept (an RGBA input); everything else is RGB."""
    if image.mode in ("1", "L"):
        return "L"
    transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return "RGBA" if transparent else "RGB"


def _png_and_infotext(path: Path) -> tuple[np.ndarray | None, str | None]:
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB")), image.info.get("parameters")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None, None
