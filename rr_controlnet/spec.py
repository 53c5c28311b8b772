"""What flows between the stages: a manifest's items with their effective parameters, the model to load,
and the shard of a batch a process runs.

Plain frozen dataclasses with no dependencies, so every stage (and users of the Python API) can
import them without pulling in YAML, torch or Rerun.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final


@dataclass(frozen=True)
class GenerationParams:
    """The effective parameters of one item: defaults, manifest values and CLI overrides merged."""

    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance_scale: float
    controlnet_conditioning_scale: float
    control_guidance_start: float
    control_guidance_end: float
    canny_low: int
    canny_high: int
    width: int | None  # None: derived from the image and the model's native size
    height: int | None
    resize: str


@dataclass(frozen=True)
class ModelSpec:
    """Which weights to load. Values are hub ids, local diffusers folders or single files."""

    name: str  # a preset name, or "custom"
    family: str  # a key of models.families.FAMILIES ("sd15", "sdxl", "flux-control", ...): the pipeline class
    base: str
    controlnet: str | None  # None for a control model (family "flux-control"): the base reads the control image
    vae: str | None = None
    config: str | None = None  # diffusers config folder or hub id for a single-file base


@dataclass(frozen=True)
class SweepPlace:
    """Where a sweep variant comes from and stands: its source item, its values and its place in the
    sweep's grid. The manifest makes it, summary.json records it, the layouts and sheets draw from it."""

    source: str  # the id of the item the sweep varies
    values: dict[str, Any]  # swept field -> value, in axis order
    axes: tuple[tuple[str, ...], ...]  # the fields of each axis (a zip group's together)
    coordinates: tuple[int, ...]  # the position along each axis
    shape: tuple[int, ...]  # how many values each axis has

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> SweepPlace:
        """From summary.json's `sweep` (lists where this has tuples)."""
        axes = tuple(tuple(fields) for fields in document["axes"])
        return cls(
            document["source"], dict(document["values"]), axes, tuple(document["coordinates"]), tuple(document["shape"])
        )


@dataclass(frozen=True)
class ControlUnit:
    """One ControlNet acting on an item: its control image (Canny computed here, or a map read from `image`),
    the ControlNet that reads it and how strongly and when it acts."""

    type: str  # "canny", or the name of a map the user supplies ("depth", "pose", ...)
    image: Path | None  # the map's file, for this item ({id} filled in); None for canny
    model: str | None  # a preset name, hub id or local folder; None: the base preset's ControlNet for the type
    scale: float
    start: float
    end: float
    low: int = 100  # canny thresholds (canny units only)
    high: int = 200
    # The map's path as the manifest wrote it ({id} filled in; the file name alone for an absolute one): what
    # a failure names, as it is kept in the output folder, which must not show the machine's layout.
    image_name: str | None = field(default=None, compare=False)

    def record(self) -> dict[str, Any]:
        """The unit as summary.json, fingerprints and PNG text show it."""
        record = {"type": self.type, "model": self.model, "scale": self.scale, "start": self.start, "end": self.end}
        if self.type == "canny":
            record.update(low=self.low, high=self.high)
        else:
            record["image"] = str(self.image)
        return record


@dataclass(frozen=True)
class Item:
    id: str
    image: Path
    params: GenerationParams
    index: int  # 1-based position of its entry in the manifest
    line: int | None
    position: int = 0  # 1-based position among all items, sweep variants included (shards split by it)
    sweep: SweepPlace | None = None  # set for the variants of a swept item
    controls: tuple[ControlUnit, ...] = ()  # empty: the one canny unit of the item's own parameters


@dataclass(frozen=True)
class Manifest:
    path: Path
    model: ModelSpec
    scheduler: str | None
    items: tuple[Item, ...]


@dataclass
class StopRequest:
    """Asks a running batch to stop at the next denoising step: a signal, or the batch's own decision."""

    signal_name: str | None = None  # "SIGINT" or "SIGTERM"
    reason: str | None = None  # why the batch stopped itself, e.g. a full disk

    @property
    def requested(self) -> bool:
        return self.signal_name is not None or self.reason is not None


SHARD_PATTERN: Final = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def owns(self, position: int) -> bool:
        """Whether the item at this 1-based manifest position belongs to this shard."""
        return (position - 1) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`I/N` with 0 <= I < N, as in `--shard 0/4`."""
    match = SHARD_PATTERN.match(text.strip())
    if not match:
        raise ValueError(f"expected I/N such as 0/4, got {text!r}")
    index, count = int(match[1]), int(match[2])
    if count < 1:
        raise ValueError(f"the number of shards must be at least 1, got {text!r}")
    if not 0 <= index < count:
        raise ValueError(f"the shard index must be 0..{max(count - 1, 0)} for {count} shards, got {text!r}")
    return Shard(index, count)
