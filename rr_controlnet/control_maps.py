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

from rr_controlnet.errors import ItemFailed
from rr_controlnet.images import control_images, fitted_size, load_image, model_rgb, pad_to, resize
from rr_controlnet.spec import ControlUnit


@dataclass(frozen=True)
class UnitMap:
    """One unit and its map: HxW (canny, 0 or 255) or HxWx3 uint8 at the generation size."""

    unit: ControlUnit
    pixels: np.ndarray
    file_size: tuple[int, int] | None = None  # a user map's (width, height) in its file; None for canny

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
    for index, unit in enumerate(units):
        if unit.image is None:
            pixels = control_images(source_pixels, size, resize_mode, unit.low, unit.high).canny
            maps.append(UnitMap(unit, pixels))
        else:
            decoded = _decoded_map(index, unit, data or {})
            pixels = resized_map(model_rgb(decoded), size, resize_mode)
            maps.append(UnitMap(unit, pixels, (decoded.shape[1], decoded.shape[0])))
    return tuple(maps)


def aspect_warnings(
    maps: Sequence[UnitMap], image_size: tuple[int, int], size: tuple[int, int], resize_mode: str
) -> list[str]:
    """A warning for each user map whose aspect ratio is not the item's image's (within a pixel's rounding, or
    1%): each is resized to `size` from its own shape, so the map need not line up with the image."""
    width, height = image_size
    found = []
    for index, unit_map in enumerate(maps):
        if unit_map.file_size is None:
            continue
        map_width, map_height = unit_map.file_size
        off = abs(map_height - map_width * height / width)
        if off <= max(1.0, 0.01 * map_height):
            continue
        found.append(
            f"controls[{index}].image {_map_name(unit_map.unit)} is {map_width}x{map_height}, the item's image "
            f"{width}x{height}: another aspect ratio; each was resized ({resize_mode}) to {size[0]}x{size[1]} from "
            "its own shape, so the map may not line up with the image"
        )
    return found


def _decoded_map(index: int, unit: ControlUnit, data: Mapping[Path, bytes]) -> np.ndarray:
    """A unit's map file decoded; ItemFailed naming the unit and its path as written when it cannot be."""
    assert unit.image is not None
    name = f"controls[{index}].image {_map_name(unit)}"
    try:
        encoded = data[unit.image] if unit.image in data else unit.image.read_bytes()
    except OSError as exc:
        raise ItemFailed(f"{name} cannot be read: {exc.strerror or exc}") from None
    try:
        return load_image(unit.image, encoded).pixels
    except ItemFailed as exc:
        raise ItemFailed(f"{name}: {exc}") from None


def _map_name(unit: ControlUnit) -> str:
    """A unit's map as messages name it: as the manifest wrote it, or by its file name."""
    return unit.image_name or (unit.image.name if unit.image is not None else "")


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
