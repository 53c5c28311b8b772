"""The fields of one control unit (`controls:` in `defaults` or an item), as a pydantic model.

Apart from manifest/fields so that the manifest's fields can name it and manifest/controls can check
units against it without an import circle.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

# More units than this are refused: diffusers runs every unit's ControlNet at every step, and each one
# holds a ControlNet's weights (as large as a third of the UNet).
MAX_UNITS: Final = 4
TYPE_PATTERN: Final = r"^[a-z][a-z0-9_-]*$"


def _optional(description: str, **bounds: Any) -> Any:
    """A field a unit may leave out (unset: the item's value, or the default the description names), within
    `bounds` (pydantic's ge, le, min_length)."""
    return Field(None, description=description, **bounds)


class ControlUnitFields(BaseModel):
    """One ControlNet acting on the item: `canny` computed from its image, or a map of your own (`image`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: str = Field(
        pattern=TYPE_PATTERN,
        description="canny (computed from the item's image), or the name of a map you supply: depth, pose, "
        "normal, lineart, scribble, seg, tile, any word. On a union model (sdxl-union, flux-union): a type "
        "its model has a mode for.",
    )
    image: str = _optional(
        "The map, relative to the manifest; `{id}` stands for the item's id (`maps/depth/{id}.png`). Required "
        "for every type but canny; resized like the input.",
        min_length=1,
    )
    model: str = _optional(
        "The unit's ControlNet: a preset name, a hub id or a local folder. Default: the base preset's "
        "ControlNet for the type (on a union model: the union model itself, in the type's mode; no other).",
        min_length=1,
    )
    scale: float = _optional("Weight of the unit (controlnet_conditioning_scale). Default: the item's.", ge=0.0, le=5.0)
    start: float = _optional("Fraction of the steps where the unit starts acting. Default: the item's.", ge=0.0, le=1.0)
    end: float = _optional("Fraction of the steps where it stops acting. Default: the item's.", ge=0.0, le=1.0)
    low: int = _optional("canny only: the lower threshold. Default: the item's canny.low.", ge=0, le=255)
    high: int = _optional("canny only: the upper threshold. Default: the item's canny.high.", ge=0, le=255)


UNIT_KEYS: Final = tuple(ControlUnitFields.model_fields)
# A unit's fields a sweep may vary, as `controls.<index>.<field>`.
UNIT_SWEEPABLE: Final = ("scale", "start", "end", "low", "high", "model")
UNIT_INTEGER_FIELDS: Final = ("low", "high")
_UNIT_FIELD: Final = re.compile(r"^controls\.(\d+)\.([a-z]+)$")


def unswept_unit_field(name: object) -> bool:
    """Whether `name` is a unit's field that no sweep may vary (`controls.0.image`, `controls.1.type`)."""
    match = _UNIT_FIELD.match(name) if isinstance(name, str) else None
    return match is not None and match[2] in UNIT_KEYS and match[2] not in UNIT_SWEEPABLE


def unit_address(name: object) -> tuple[int, str] | None:
    """(unit index, field) for anything shaped like a unit's field (`controls.0.sclae` too), else None."""
    match = _UNIT_FIELD.match(name) if isinstance(name, str) else None
    return (int(match[1]), match[2]) if match else None


def unit_field(name: object) -> tuple[int, str] | None:
    """(unit index, field) for a swept unit field such as `controls.1.scale`, else None."""
    match = _UNIT_FIELD.match(name) if isinstance(name, str) else None
    if match is None or match[2] not in UNIT_SWEEPABLE:
        return None
    return int(match[1]), match[2]
