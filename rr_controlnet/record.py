"""Rerun recordings: entity paths, the batch blueprint, and one complete .rrd file per item.

Entity paths are the contract between the logging code here and the blueprint; both live in this
module. All item files of a run share the application id and one recording id, so opening several
of them merges them into one recording. The viewer keeps one blueprint per application id, so every
item file carries the same blueprint for the whole batch (one tab per item); only the active tab
differs, so a file opened alone shows its own item first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from rr_controlnet.files import AtomicFile, atomic_path
from rr_controlnet.images import encode_png

APPLICATION_ID: Final = "rr_controlnet"
STEP_TIMELINE: Final = "step"
TIMESTEP_TIMELINE: Final = "timestep"
LATENT_DIM_NAMES: Final = ("channel", "height", "width")
PREVIEW_JPEG_QUALITY: Final = 85


@dataclass(frozen=True)
class ItemPaths:
    """Entity paths of one item, all under items/<id>/."""

    root: str
    input_image: str
    input_canny: str
    prompt: str
    params: str
    latent: str
    preview: str
    output: str


def item_paths(item_id: str) -> ItemPaths:
    root = f"items/{item_id}"
    return ItemPaths(
        root=root,
        input_image=f"{root}/input/image",
        input_canny=f"{root}/input/canny",
        prompt=f"{root}/prompt",
        params=f"{root}/params",
        latent=f"{root}/latent",
        preview=f"{root}/preview",
        output=f"{root}/output",
    )


def run_recording_id(out_dir: Path) -> str:
    """One recording id per output folder: reruns, resumed runs and shards all merge in the viewer."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rr-controlnet:{Path(out_dir).resolve()}"))


def item_view_names(item_id: str) -> dict[str, str]:
    return {
        "input": f"{item_id}: input",
        "canny": f"{item_id}: canny",
        "latent": f"{item_id}: latent",
        "preview": f"{item_id}: preview",
        "output": f"{item_id}: output",
        "prompt": f"{item_id}: prompt",
        "params": f"{item_id}: params",
    }


def item_layout(item_id: str) -> Any:
    """Input, canny, latent, preview and output side by side; prompt and parameters below."""
    import rerun as rr
    import rerun.blueprint as rrb

    paths = item_paths(item_id)
    names = item_view_names(item_id)
    latent_slice = rrb.TensorSliceSelection(
        width=2, height=1, indices=[rr.encodings.TensorDimensionIndexSelection(dimension=0, index=0)], slider=[0]
    )
    return rrb.Vertical(
        rrb.Horizontal(
            rrb.Spatial2DView(name=names["input"], origin=paths.input_image),
            rrb.Spatial2DView(name=names["canny"], origin=paths.input_canny),
            rrb.TensorView(name=names["latent"], origin=paths.latent, slice_selection=latent_slice),
            rrb.Spatial2DView(name=names["preview"], origin=paths.preview),
            rrb.Spatial2DView(name=names["output"], origin=paths.output),
        ),
        rrb.Horizontal(
            rrb.TextDocumentView(name=names["prompt"], origin=paths.prompt),
            rrb.TextDocumentView(name=names["params"], origin=paths.params),
        ),
        row_shares=[3, 1],
        name=item_id,
    )


def batch_blueprint(item_ids: Sequence[str], active_item: str | None = None) -> Any:
    """One tab per item; the same tree for every file of a batch, whichever is opened last."""
    import rerun.blueprint as rrb

    ids = list(item_ids)
    active = ids.index(active_item) if active_item in ids else 0
    return rrb.Blueprint(
        rrb.Tabs(*(item_layout(item_id) for item_id in ids), active_tab=active),
        rrb.TimePanel(timeline=STEP_TIMELINE),
        collapse_panels=False,
    )


def save_batch_blueprint(item_ids: Sequence[str], path: Path) -> Path:
    with atomic_path(path) as partial:
        batch_blueprint(item_ids).save(APPLICATION_ID, partial)
    return path


class ItemRecording:
    """Writes one item's .rrd. The file appears under its final name only once it is complete."""

    def __init__(self, item_id: str, path: Path, recording_id: str, blueprint_ids: Sequence[str]):
        import rerun as rr

        self.rr = rr
        self.paths = item_paths(item_id)
        self.final_path = Path(path)
        self._file = AtomicFile(self.final_path)
        self.partial_path = self._file.partial
        self.stream = rr.RecordingStream(APPLICATION_ID, recording_id=recording_id, send_properties=False)
        # save() before the first log call, so no data is buffered elsewhere first.
        self.stream.save(self.partial_path, default_blueprint=batch_blueprint(blueprint_ids, item_id))

    def log_inputs(self, source_image, canny: np.ndarray) -> None:
        rr = self.rr
        if source_image.media_type:
            # The file's own bytes: lossless, compact, and exactly the image as given.
            image = rr.EncodedImage(contents=source_image.encoded, media_type=source_image.media_type)
        else:
            image = rr.Image(source_image.pixels)
        self.stream.log(self.paths.input_image, image, static=True)
        self.stream.log(
            self.paths.input_canny, rr.EncodedImage(contents=encode_png(canny), media_type="image/png"), static=True
        )

    def log_text(self, prompt_markdown: str, params_markdown: str) -> None:
        rr = self.rr
        self.stream.log(
            self.paths.prompt, rr.TextDocument(prompt_markdown, media_type=rr.MediaType.MARKDOWN), static=True
        )
        self.stream.log(
            self.paths.params, rr.TextDocument(params_markdown, media_type=rr.MediaType.MARKDOWN), static=True
        )

    def log_step(self, step: int, timestep: int, latent: np.ndarray | None, preview: np.ndarray | None) -> None:
        rr = self.rr
        self.stream.set_time(STEP_TIMELINE, sequence=step)
        self.stream.set_time(TIMESTEP_TIMELINE, sequence=timestep)
        if latent is not None:
            self.stream.log(self.paths.latent, rr.Tensor(latent, dim_names=LATENT_DIM_NAMES))
        if preview is not None:
            self.stream.log(self.paths.preview, rr.Image(preview).compress(jpeg_quality=PREVIEW_JPEG_QUALITY))

    def log_output(self, png_bytes: bytes, last_step: int, last_timestep: int) -> None:
        self.stream.set_time(STEP_TIMELINE, sequence=last_step)
        self.stream.set_time(TIMESTEP_TIMELINE, sequence=last_timestep)
        self.stream.log(self.paths.output, self.rr.EncodedImage(contents=png_bytes, media_type="image/png"))

    def finish(self) -> Path:
        """Complete the file (footer included) and move it to its final name."""
        self.stream.flush()
        self.stream.disconnect()
        return self._file.commit()

    def discard(self) -> None:
        """Drop an unfinished recording: nothing appears under the final name."""
        try:
            self.stream.disconnect()
        finally:
            self._file.discard()
