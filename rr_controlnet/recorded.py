"""What an item's recording holds, read back with Rerun's reader: its latents and previews by step, and
the edge map it was conditioned on. For compare and the review, which take what a run computed from its
recordings rather than computing it again.

A recording without its footer (cut short) raises: it is not trusted.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rr_controlnet.layout import item_paths
from rr_controlnet.record import rrd_reader


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


def recorded_edge_map(path: Path, item_id: str) -> np.ndarray | None:
    """The edge map an item was conditioned on (HxW, 0 or 255), as its recording holds it; None when the
    recording holds none."""
    from PIL import Image

    chunks = rrd_reader(path).stream().filter(content=f"/{item_paths(item_id).input_canny}").to_chunks()
    for chunk in chunks:
        batch = chunk.to_record_batch()
        if "EncodedImage:blob" in batch.schema.names:
            (blob,) = batch.column("EncodedImage:blob").to_pylist()[0]
            return np.asarray(Image.open(io.BytesIO(bytes(blob))).convert("L"))
    return None
