"""How sweep variants are named and labelled: ids made of their source's and their values (readable, file
safe, the same however the manifest orders them), and the values as views, sheets and pages show them.

    variant_id("horse", {"seed": 1, "controlnet_conditioning_scale": 0.5})   # 'horse_seed1_ccs0.5'
    label("controlnet_conditioning_scale", 0.5)                             # 'ccs 0.5'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

from rr_controlnet.manifest.fields import CANNY_KEYS, SWEEPABLE
from rr_controlnet.manifest.unit_fields import unit_field
from rr_controlnet.spec import SweepPlace

# Short names in variant ids: horse_ccs0.5_seed1.
ALIASES: Final = {
    "prompt": "p",
    "negative_prompt": "np",
    "seed": "seed",
    "steps": "steps",
    "guidance_scale": "cfg",
    "controlnet_conditioning_scale": "ccs",
    "control_guidance_start": "start",
    "control_guidance_end": "end",
    "canny": "canny",
    "canny.low": "low",
    "canny.high": "high",
    "size": "size",
    "resize": "resize",
}
# Swept fields that change a variant's edge map, not only its output: each variant then shows its own.
TEXT_IN_ID: Final = 16  # characters of a swept text kept in an id (a hash of the whole keeps it unique)


def variant_id(source_id: str, values: Mapping[str, Any]) -> str:
    """`<source>_<alias><value>...`: readable, file-safe, and the same whatever the order of the items,
    of the sweep's fields or of their values (fields in SWEEPABLE's order)."""
    fields = sorted(values, key=field_order)
    return "_".join([source_id] + [f"{alias(field)}{_id_value(values[field])}" for field in fields])


def field_order(field: str) -> tuple[int, str]:
    """Where a swept field stands among the others: SWEEPABLE's order, then the units' fields by name."""
    return (SWEEPABLE.index(field), "") if field in SWEEPABLE else (len(SWEEPABLE), field)


def alias(field: str) -> str:
    """A swept field's short name: ALIASES', or `c<index><field>` for a unit's (controls.1.scale: c1scale)."""
    address = unit_field(field)
    return f"c{address[0]}{address[1]}" if address else ALIASES[field]


def number_text(value: int | float) -> str:
    """A swept number as short as it can be without losing it: integers whole (1000000, never 1e+06),
    other numbers as `:g` writes them when that reads back the same (0.5, 1), else in full (0.1234567)."""
    if isinstance(value, int):
        return str(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _id_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return number_text(value).replace("+", "")
    if isinstance(value, (list, tuple)):
        return "x".join(_id_value(side) for side in value)
    if isinstance(value, Mapping):
        return "-".join(_id_value(value[key]) for key in _keys_in_order(value))
    text = str(value)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:TEXT_IN_ID].strip("-") or "empty"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def label(field: str, value: Any) -> str:
    """How a swept value reads in a view name or on the contact sheet: `ccs 0.5`, `p "a castle..."`."""
    name = alias(field)
    if isinstance(value, str):
        shown = value if len(value) <= 24 else value[:21] + "..."
        return f'{name} "{shown}"'
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{name} {number_text(value)}"
    return f"{name} {value_text(value)}"


def axis_label(place: SweepPlace, axis: int) -> str:
    """A variant's values along one axis of its sweep: `ccs 0.5`, or a zip group's `p "a castle" · np "fog"`."""
    return " · ".join(label(field, place.values[field]) for field in place.axes[axis])


def value_text(value: Any) -> str:
    """A swept value in full, as a person writes it: 0.5, true, 512x768, canny 50/150 (low/high), text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "x".join(value_text(side) for side in value)
    if isinstance(value, Mapping):
        return "/".join(value_text(value[key]) for key in _keys_in_order(value))
    return str(value)


def _keys_in_order(value: Mapping) -> list[Any]:
    """A mapping's keys in the fields' own order (canny: low, then high), whatever order it was written in."""
    return sorted(value, key=lambda key: (CANNY_KEYS.index(key) if key in CANNY_KEYS else len(CANNY_KEYS), str(key)))
