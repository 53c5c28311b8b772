"""What an item's recording holds, read back with Rerun's reader: its latents and previews by step, the
edge map it was conditioned on, its input and adherence overlay. For compare and the review files, which
take what a run computed from its recordings rather than computing it again.

A recording without its footer (cut short) raises: it is not trusted.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rr_controlnet.recording.layout import item_paths
from rr_controlnet.recording.write import rrd_reader


def recorded_latents(path: Path, item_id: str) -> dict[int, np.ndarray]:
    """The latents an item's recording holds, by step."""
    latents = {}
    for step, value in _recorded_rows(path, item_paths(item_id).latent, "Tensor:data"):
        (tensor,) = value
        latents[step] = np.asarray(tensor["buffer"], dtype=np.float32).reshape(tensor["shape"])
    return latents


def recorded_previews(path: Path, item_id: str) -> list[tuple[int, bytes, str]]:
    """(step, encoded bytes, media type) of every preview an item's recording holds."""
    previews = []
    for step, row in _recorded_rows(
        path, item_paths(item_id).preview, ("EncodedImage:blob", "EncodedImage:media_type")
    ):
        blob, media_type = row
        previews.append((step, bytes(blob[0]), media_type[0] if media_type else "image/jpeg"))
    return sorted(previews)


def _recorded_rows(path: Path, entity: str, columns: str | tuple[str, ...]) -> Iterator[tuple[int, Any]]:
    """(step, value) rows of one entity's column(s) on the step timeline."""
    names = (columns,) if isinstance(columns, str) else columns
    chunks = rrd_reader(path).stream().filter(content=f"/{entity}").to_chunks()
    for chunk in chunks:
        batch = chunk.to_record_batch()
        if "step" not in batch.schema.names or any(name not in batch.schema.names for name in names):
            continue
        steps = batch.column("step").to_pylist()
        values = [batch.column(name).to_pylist() for name in names]
        for index, step in enumerate(steps):
            if step is None:
                continue
            row = [column[index] for column in values]
            yield step, (row[0] if isinstance(columns, str) else row)


# What a recording may be unreadable with: a missing footer raises a RerunWarning, a damaged file raises.
RECORDING_ERRORS = (OSError, RuntimeError, ValueError, KeyError, Warning)
IMAGE_KINDS = ("input", "canny", "overlay", "frames", "controls")


def recorded_edge_map(path: Path, item_id: str) -> np.ndarray | None:
    """The edge map an item was conditioned on (HxW, 0 or 255), as its recording holds it; None when the
    recording holds none or cannot be read."""
    return recorded_images(path, item_id, kinds=("canny",)).get("canny")


def recorded_images(
    path: Path, item_id: str, steps: Collection[int] = (), kinds: Collection[str] = IMAGE_KINDS
) -> dict[str, Any]:
    """From an item's .rrd, of `kinds`: "input", "canny", "overlay" (pixels), "controls" ((name, map) pairs of
    its control units, in unit order) and "frames" ((step, preview)
    pairs of the previews at `steps`, in step order); keys are absent where the recording has nothing
    readable, and all of them when it cannot be read."""
    paths = item_paths(item_id)
    entities = {"input": paths.input_image, "canny": paths.input_canny, "overlay": paths.adherence_overlay}
    wanted = {f"/{entity}": kind for kind, entity in {**entities, "frames": paths.preview}.items() if kind in kinds}
    frames: dict[int, np.ndarray] = {}
    found: dict[str, Any] = {}
    content = next(iter(wanted)) if len(wanted) == 1 else f"/{paths.root}/**"
    try:
        chunks = rrd_reader(path).stream().filter(content=content).to_chunks()
    except RECORDING_ERRORS:
        return {}
    controls: dict[str, np.ndarray] = {}
    control_root = f"/{paths.root}/control/"
    for chunk in chunks:
        entity = str(chunk.entity_path)
        kind = wanted.get(entity) or ("controls" if "controls" in kinds and entity.startswith(control_root) else None)
        if kind is None:
            continue
        batch = chunk.to_record_batch()
        if "EncodedImage:blob" not in batch.schema.names:
            continue
        blobs = batch.column("EncodedImage:blob")
        step_column = batch.column("step") if "step" in batch.schema.names else None
        for row in range(batch.num_rows):
            step = step_column[row].as_py() if step_column is not None else None
            if kind == "frames" and (step is None or step not in steps):
                continue
            pixels = _decoded(blobs[row])
            if pixels is None:
                continue
            if kind == "frames":
                frames[step] = pixels
            elif kind == "controls":
                controls[entity[len(control_root) :]] = pixels
            else:
                found[kind] = pixels
    if frames:
        found["frames"] = sorted(frames.items(), key=lambda pair: pair[0])
    if controls:  # each control unit's map, in unit order: [(name, pixels)]
        found["controls"] = sorted(controls.items(), key=lambda pair: int(pair[0].split("-")[0]))
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
