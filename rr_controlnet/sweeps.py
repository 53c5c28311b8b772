"""Sweeps: one item, many variants, each a normal item with an id made of its source's and its values.

    sweep:
      controlnet_conditioning_scale: {from: 0.25, to: 1.0, step: 0.25}   # 0.25, 0.5, 0.75, 1.0
      seed: {count: 2}                                                   # base seed, base + 1
      zip: {prompt: [a castle, a cave], negative_prompt: [fog, light]}  # paired, one axis

Axes combine as a Cartesian product, in the order written (a zip group counts as one axis); an item's
`sweep` extends the defaults' and wins per field. This module is pure: it turns checked sweep
specifications into axes, counts and expands them, and names the variants.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

SWEEPABLE: Final = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "guidance_scale",
    "controlnet_conditioning_scale",
    "control_guidance_start",
    "control_guidance_end",
    "canny",
    "canny.low",
    "canny.high",
    "size",
    "resize",
)
INTEGER_FIELDS: Final = ("seed", "steps", "canny.low", "canny.high")
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
RANGE_KEYS: Final = ("from", "to", "step", "count")
DEFAULT_MAX_ITEMS: Final = 10_000
TEXT_IN_ID: Final = 16  # characters of a swept text kept in an id (a hash of the whole keeps it unique)


@dataclass(frozen=True)
class Axis:
    """One dimension of a sweep: one field, or a zip group's fields whose values go in pairs."""

    fields: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]  # per position, one value per field
    line: int | None

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Variant:
    """One combination of a sweep's values: {field: value}, in axis order, and where it stands."""

    values: dict[str, Any]
    coordinates: tuple[int, ...]  # the position along each axis


class RangeProblem(ValueError):
    """A range that gives no values: a zero or wrong-signed step, a count below 1, missing keys."""


def range_values(spec: Mapping[str, Any], integer: bool, base: int | None = None) -> list[Any]:
    """The values of a range: {from, to, step} (ends included when they fall on a step), {from, to, count}
    (evenly spaced) or, for the seed, {count} (base..base+count-1). Raises RangeProblem."""
    unknown = [key for key in spec if key not in RANGE_KEYS]
    if unknown:
        raise RangeProblem(f"a range takes from, to and step or count; unknown key {unknown[0]!r}")
    numbers = {key: spec[key] for key in RANGE_KEYS if key in spec}
    for key, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RangeProblem(f"{key} must be a number, got {value!r}")
    if "count" in numbers and (not isinstance(numbers["count"], int) or numbers["count"] < 1):
        raise RangeProblem(f"count must be an integer of at least 1, got {numbers['count']!r}")
    if set(numbers) == {"count"}:
        if base is None:
            raise RangeProblem("a range needs from and to (only seed takes count alone: seeds base..base+count-1)")
        return [base + offset for offset in range(numbers["count"])]
    if "from" not in numbers or "to" not in numbers or ("step" in numbers) == ("count" in numbers):
        raise RangeProblem("a range takes from, to and either step or count")
    start, stop = numbers["from"], numbers["to"]
    if "count" in numbers:
        count = numbers["count"]
        values = [start] if count == 1 else [start + (stop - start) * k / (count - 1) for k in range(count)]
    else:
        step = numbers["step"]
        if step == 0:
            raise RangeProblem("step must not be 0")
        if stop != start and (stop - start) * step < 0:
            raise RangeProblem(f"step {step:g} moves away from {stop:g}: its sign must be that of to - from")
        # A tolerance well below any step a person writes: 0.1 steps from 0.2 land on 1.0.
        count = math.floor((stop - start) / step + 1e-9) + 1
        values = [start + k * step for k in range(count)]
    values = [round(value, 10) for value in values]
    if integer:
        if any(value != int(value) for value in values):
            raise RangeProblem(f"gives values that are not integers: {', '.join(f'{v:g}' for v in values[:4])}")
        return [int(value) for value in values]
    return [float(value) for value in values]


def combine(defaults: Sequence[Axis], item: Sequence[Axis]) -> list[Axis]:
    """The defaults' axes with the item's: an item's axis replaces any of the defaults' that shares a field."""
    taken = {field for axis in item for field in axis.fields}
    return [axis for axis in defaults if not taken & set(axis.fields)] + list(item)


def variant_count(axes: Sequence[Axis]) -> int:
    return math.prod(len(axis) for axis in axes) if axes else 1


def variants(axes: Sequence[Axis]) -> Iterator[Variant]:
    """Every combination of the axes' values, the last axis varying fastest."""
    for coordinates in itertools.product(*(range(len(axis)) for axis in axes)):
        values: dict[str, Any] = {}
        for axis, position in zip(axes, coordinates, strict=True):
            values.update(zip(axis.fields, axis.values[position], strict=True))
        yield Variant(values, coordinates)


def variant_id(source_id: str, values: Mapping[str, Any]) -> str:
    """`<source>_<alias><value>...`: readable, file-safe, and the same whatever the order of the items,
    of the sweep's fields or of their values (fields in SWEEPABLE's order)."""
    fields = sorted(values, key=SWEEPABLE.index)
    return "_".join([source_id] + [f"{ALIASES[field]}{_id_value(values[field])}" for field in fields])


def _id_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"{value:g}".replace("+", "")
    if isinstance(value, (list, tuple)):
        return "x".join(_id_value(side) for side in value)
    if isinstance(value, Mapping):
        return "-".join(_id_value(value[key]) for key in sorted(value))
    text = str(value)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:TEXT_IN_ID].strip("-") or "empty"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def label(field: str, value: Any) -> str:
    """How a swept value reads in a view name or on the contact sheet: `ccs 0.5`, `p "a castle..."`."""
    name = ALIASES[field]
    if isinstance(value, str):
        shown = value if len(value) <= 24 else value[:21] + "..."
        return f'{name} "{shown}"'
    if isinstance(value, (list, tuple)):
        return f"{name} {'x'.join(f'{side:g}' for side in value)}"
    if isinstance(value, Mapping):
        return f"{name} " + "/".join(f"{value[key]:g}" for key in sorted(value))
    return f"{name} {value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else f"{name} {value}"
