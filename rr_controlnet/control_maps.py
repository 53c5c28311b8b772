"""Control units' maps: what each unit's ControlNet sees of an item, at its generation size.

A canny unit's map is computed from the item's image with the unit's thresholds; any other unit's map is
read from its file and resized like the input (never computed here).

    maps = unit_maps(item.controls, source.pixels, (512, 512), "crop")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rr_controlnet.images import control_images, fitted_size, load_image, model_rgb, pad_to, resize
from rr_controlnet.spec import ControlUnit


@dataclass(frozen=True)
class UnitMap:
    """One unit and its map: HxW (canny, 0 or 255) or HxWx3 uint8 at the generation size."""

    unit: ControlUnit
    pixels: np.ndarray

    @property
    def rgb(self) -> np.ndarray:
        return np.repeat(self.pixels[:, :, None], 3, axis=2) if self.pixels.ndim == 2 else self.pixels


def unit_maps(
    units: Sequence[ControlUnit],
    source_pixels: np.ndarray,
    size: tuple[int, int],
    resize_mode: str,
    data: Mapping[Path, bytes] | None = None,
) -> tuple[UnitMap, ...]:
    """Each unit's map at `size` (width, height); a user map's file is read from `data` where it holds it."""
    maps = []
    for unit in units:
        if unit.image is None:
            pixels = control_images(source_pixels, size, resize_mode, unit.low, unit.high).canny
        else:
            decoded = load_image(unit.image, (data or {}).get(unit.image)).pixels
            pixels = resized_map(model_rgb(decoded), size, resize_mode)
        maps.append(UnitMap(unit, pixels))
    return tuple(maps)


def resized_map(rgb: np.ndarray, size: tuple[int, int], resize_mode: str) -> np.ndarray:
    """A map resized as the item's image is: cropped, fitted and padded black, or stretched."""
    if resize_mode == "fit":
        return pad_to(resize(rgb, fitted_size(rgb, size), "stretch"), size)
    return resize(rgb, size, resize_mode)


def unit_name(index: int, unit: ControlUnit) -> str:
    """`<index>-<type>` (`1-depth`): a unit's name under the item's `control/` entity, in summary.json and in
    its review files."""
    return f"{index}-{unit.type}"


def scored_map(maps: Sequence[UnitMap]) -> UnitMap | None:
    """The unit whose map control adherence scores an output against: the first canny unit; None where an
    item's units are all maps of other types (those are not scored: their maps are not edges)."""
    return next((unit_map for unit_map in maps if unit_map.unit.type == "canny"), None)


def map_paths(units: Sequence[ControlUnit]) -> list[Path]:
    """The files a list of units reads (the user maps), in order, each once."""
    return list(dict.fromkeys(unit.image for unit in units if unit.image is not None))


def units_batch_key(units: Sequence[ControlUnit]) -> tuple:
    """What items must share, beyond generate.batch_key, to run in one pipeline call: the same units with the
    same ControlNets, weights and ranges (their maps may differ)."""
    return tuple((unit.type, unit.model, unit.scale, unit.start, unit.end) for unit in units)
