"""Sweeps: one item, many variants, each a normal item with an id made of its source's and its values.

    sweep:
      controlnet_conditioning_scale: {from: 0.25, to: 1.0, step: 0.25}   # 0.25, 0.5, 0.75, 1.0
      seed: {count: 2}                                                   # base seed, base + 1
      zip: {prompt: [a castle, a cave], negative_prompt: [fog, light]}  # paired, one axis

Axes combine as a Cartesian product, in the order written (a zip group counts as one axis); an item's
`sweep` extends the defaults' and wins per field. Here: a sweep's values read and checked (each value
like the field it varies), the axes combined, counted and expanded into items, and the variants named.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from rr_controlnet.manifest.checks import Problems, check_order, checked_values, id_problem, unknown_key_message
from rr_controlnet.manifest.controls import inherited_values, order_problems, swept_units, unit_value_problems
from rr_controlnet.manifest.fields import ITEM_ONLY_KEYS, SWEEPABLE, Params
from rr_controlnet.manifest.sweep_names import field_order, number_text, variant_id
from rr_controlnet.manifest.unit_fields import (
    UNIT_INTEGER_FIELDS,
    UNIT_SWEEPABLE,
    unit_address,
    unit_field,
    unswept_unit_field,
)
from rr_controlnet.manifest.yaml_source import line_of, shown
from rr_controlnet.spec import GenerationParams, Item, SweepPlace

INTEGER_FIELDS: Final = ("seed", "steps", "canny.low", "canny.high")
# Swept fields that change a variant's edge map, not only its output: each variant then shows its own.
EDGE_MAP_FIELDS: Final = ("canny", "canny.low", "canny.high", "size", "resize")
RANGE_KEYS: Final = ("from", "to", "step", "count")
DEFAULT_MAX_ITEMS: Final = 10_000


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


def range_values(
    spec: Mapping[str, Any], integer: bool, base: int | None = None, limit: int | None = None
) -> list[Any]:
    """The values of a range: {from, to, step} (ends included when they fall on a step), {from, to, count}
    (evenly spaced) or, for the seed, {count} (base..base+count-1). Raises RangeProblem, also when the range
    gives more than `limit` values: counted from its ends and step before any value is built."""
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
        _within(numbers["count"], limit)
        return [base + offset for offset in range(numbers["count"])]
    if "from" not in numbers or "to" not in numbers or ("step" in numbers) == ("count" in numbers):
        raise RangeProblem("a range takes from, to and either step or count")
    start, stop = numbers["from"], numbers["to"]
    if "count" in numbers:
        count = numbers["count"]
        _within(count, limit)
        values = [start] if count == 1 else [_fraction_of(start, stop, k, count - 1) for k in range(count)]
    else:
        step = numbers["step"]
        if step == 0:
            raise RangeProblem("step must not be 0")
        if stop != start and (stop - start) * step < 0:
            raise RangeProblem(
                f"step {number_text(step)} moves away from {number_text(stop)}: its sign must be that of to - from"
            )
        # A tolerance well below any step a person writes: 0.1 steps from 0.2 land on 1.0.
        if _all_int(start, stop, step):
            count = (stop - start) // step + 1
        else:
            count = math.floor((stop - start) / step + 1e-9) + 1
        _within(count, limit)
        values = [start + k * step for k in range(count)]
    values = [value if isinstance(value, int) else round(value, 10) for value in values]
    if integer:
        fractions = [value for value in values if value != int(value)]
        if fractions:
            raise RangeProblem(f"gives values that are not integers: {', '.join(map(number_text, fractions[:4]))}")
        return [int(value) for value in values]
    return [float(value) for value in values]


def _all_int(*numbers: Any) -> bool:
    return all(isinstance(number, int) for number in numbers)


def _fraction_of(start: int | float, stop: int | float, part: int, parts: int) -> int | float:
    """start + (stop - start) * part / parts, exact for integers that divide evenly (seeds near 2**63)."""
    if _all_int(start, stop) and (stop - start) * part % parts == 0:
        return start + (stop - start) * part // parts
    return start + (stop - start) * part / parts


def _within(count: int, limit: int | None) -> None:
    if limit is not None and count > limit:
        raise RangeProblem(
            f"gives {count:,} values, more than the limit of {limit:,} variants "
            "(sweep fewer values or raise --max-items)"
        )


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


# --- sweeps in a manifest ------------------------------------------------------------------------


def sweep_axes(
    container: Mapping, where: str, problems: Problems, base_seed: int, max_values: int | None = None
) -> list[Axis]:
    """The axes of a defaults' or item's `sweep`, each value checked like the field it varies; a range
    giving more than `max_values` values is refused before they are built."""
    raw = container.get("sweep") if isinstance(container, Mapping) else None
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        problems.add(
            line_of(container, "sweep"), where, f"sweep must be a mapping of fields to values, got {shown(raw)}"
        )
        return []
    axes: list[Axis] = []
    for key, spec in raw.items():
        line = line_of(raw, key)
        if key == "zip":
            for group in spec if isinstance(spec, list) else [spec]:
                axis = _zip_axis(
                    group, line_of(spec, 0) if isinstance(spec, list) else line, where, problems, base_seed
                )
                axes += [axis] if axis else []
        elif key in ITEM_ONLY_KEYS:
            why = (
                "each variant's id is made from its source's and its values"
                if key == "id"
                else "give each image an item"
            )
            problems.add(line, where, f"sweep.{key} cannot be swept: {why}")
        elif key not in SWEEPABLE and not unit_field(key):
            problems.add(line, where, _not_sweepable(key, "sweep.", ("zip",)))
        else:
            values = _sweep_values(key, spec, line, where, problems, base_seed, max_values=max_values)
            axes += [Axis((key,), tuple((value,) for value in values), line)] if values else []
    # By the keys written, so that it shows with the values' own problems, not once they are mended.
    fields = Counter(field for field in _swept_keys(raw) if field in SWEEPABLE or unit_field(field))
    for field in sorted((field for field, count in fields.items() if count > 1), key=field_order):
        problems.add(line_of(raw), where, f"sweep.{field} is swept twice (alone and in zip, or in two zip groups)")
    # Only a field's first axis is kept, so the variants can still be checked (without their ids colliding).
    kept: list[Axis] = []
    for axis in axes:
        if not {field for earlier in kept for field in earlier.fields} & set(axis.fields):
            kept.append(axis)
    return kept


def _swept_keys(raw: Mapping) -> list[Any]:
    """The fields a sweep names, alone or in zip groups, as written (repeats kept)."""
    keys = []
    for key, spec in raw.items():
        if key != "zip":
            keys.append(key)
            continue
        for group in spec if isinstance(spec, list) else [spec]:
            keys += list(group) if isinstance(group, Mapping) else []
    return keys


def _not_sweepable(key: Any, prefix: str, also: tuple[str, ...] = ()) -> str:
    """Why a sweep cannot vary `key`: a unit's field a sweep leaves alone, or an unknown key (with the closest)."""
    if unswept_unit_field(key):
        can = f"{', '.join(UNIT_SWEEPABLE[:-1])} or {UNIT_SWEEPABLE[-1]}"
        return f"{prefix}{key} cannot be swept: a sweep varies a unit's {can}"
    address = unit_address(key)
    if address is not None:  # compared with that unit's fields: controls.0.sclae reads controls.0.scale
        names: tuple[str, ...] = tuple(f"controls.{address[0]}.{name}" for name in UNIT_SWEEPABLE)
    else:
        names = (*SWEEPABLE, *(f"controls.<index>.{name}" for name in UNIT_SWEEPABLE), *also)
    return unknown_key_message(f"{prefix}{key}", tuple(f"{prefix}{name}" for name in names))


def _zip_axis(group: Any, line: int | None, where: str, problems: Problems, base_seed: int) -> Axis | None:
    if not isinstance(group, Mapping) or not group:
        problems.add(line, where, f"sweep.zip must map fields to lists of equal length, got {shown(group)}")
        return None
    columns = {}
    for key, spec in group.items():
        if key not in SWEEPABLE and not unit_field(key):
            problems.add(line_of(group, key), where, _not_sweepable(key, "sweep.zip."))
            return None
        values = _sweep_values(key, spec, line_of(group, key), where, problems, base_seed, in_zip=True)
        if not values:
            return None
        columns[key] = values
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        sizes = ", ".join(f"{key} {len(values)}" for key, values in columns.items())
        problems.add(line_of(group), where, f"sweep.zip lists must have the same length, got {sizes}")
        return None
    return Axis(tuple(columns), tuple(zip(*columns.values(), strict=True)), line_of(group))


def _sweep_values(
    field: str,
    spec: Any,
    line: int | None,
    where: str,
    problems: Problems,
    base_seed: int,
    in_zip: bool = False,
    max_values: int | None = None,
) -> list[Any]:
    """A swept field's values, each one valid for the field; [] (with the problems reported) otherwise. The
    wrong values of a range are one problem, with how many there are."""
    name = f"sweep.zip.{field}" if in_zip else f"sweep.{field}"
    if isinstance(spec, list):
        if not spec:
            problems.add(line, where, f"{name}: an empty list gives no variants")
            return []
        values, value_lines = list(spec), [line_of(spec, position) or line for position in range(len(spec))]
    elif isinstance(spec, Mapping) and not in_zip and field not in ("canny",):
        try:
            integer = field in INTEGER_FIELDS or (unit_field(field) or (0, ""))[1] in UNIT_INTEGER_FIELDS
            values = range_values(spec, integer=integer, base=base_seed if field == "seed" else None, limit=max_values)
        except RangeProblem as exc:
            problems.add(line, where, f"{name}: {exc}")
            return []
        value_lines = [line] * len(values)
    else:
        kind = "a list" if in_zip else "a list of values or a range {from, to, step or count}"
        problems.add(line, where, f"{name} must be {kind}, got {shown(spec)}")
        return []
    good, wrong = [], []
    for value, value_line in zip(values, value_lines, strict=True):
        check = Problems(Path(problems.file))
        if unit_field(field):
            messages = unit_value_problems(field, value, problems.file)
        else:
            checked_values(Params, as_field(field, value), "", check)
            messages = [problem.message for problem in check.problems]
        for message in messages:  # "canny.low must be ..." reads "sweep.canny.low must be ..."
            message = f"{name}{message[len(field) :]}" if message.startswith(f"{field} ") else f"{name}: {message}"
            wrong.append((value_line, message))
        if not messages:
            good.append(value)
    if isinstance(spec, Mapping) and len(wrong) > 1:  # a range: its first wrong value stands for the rest
        (first_line, first_message), others = wrong[0], len(wrong) - 1
        wrong = [(first_line, f"{first_message} (and {others:,} more of the range's {len(values):,} values)")]
    for value_line, message in wrong:
        problems.add(value_line, where, message)
    counts = Counter(shown(value) for value in good)
    repeated = sorted(text for text, count in counts.items() if count > 1)
    if repeated:
        problems.add(line, where, f"{name} lists {', '.join(repeated)} more than once")
        return []
    return good if len(good) == len(values) else []


def as_field(field: str, value: Any) -> dict[str, Any]:
    """A swept value as the mapping an item would write it in: canny.low 50 as {canny: {low: 50}}."""
    if field.startswith("canny."):
        return {"canny": {field.split(".", 1)[1]: value}}
    return {field: value}


def flat_names(field: str) -> tuple[str, ...]:
    """The effective parameters a swept field sets."""
    if field == "canny":
        return ("canny_low", "canny_high")
    if field == "size":
        return ("width", "height")
    return (field.replace(".", "_"),)


def expanded(
    source: Item, merged: dict, lines: dict, axes: list[Axis], problems: Problems, skip: set[str] = frozenset()
) -> list[Item]:
    """The item itself, or one item per combination of its sweep's values. A problem that variants share
    (a rule across fields, broken by one swept value whatever the others) is reported once, with how many
    variants it affects. Rules across the fields in `skip` are not checked (reported elsewhere)."""
    if not axes:
        return [source]
    shape = tuple(len(axis) for axis in axes)
    fields = tuple(axis.fields for axis in axes)
    axis_lines = {name: axis.line for axis in axes for field in axis.fields for name in flat_names(field)}
    # Each swept value as the effective parameters it sets (canny as canny_low and canny_high), once.
    flat = [
        [_flat_values(axis.fields, position_values, problems.file) for position_values in axis.values] for axis in axes
    ]
    found: dict[tuple[int | None, str], list[str]] = {}
    items = []
    for variant in variants(axes):
        values = dict(merged)
        for axis, position in enumerate(variant.coordinates):
            values.update(flat[axis][position])
        item_id = variant_id(source.id, variant.values)
        wrong_id = id_problem(item_id)
        if wrong_id:
            found.setdefault((source.line, f"a variant's id {wrong_id}"), []).append(item_id)
            continue
        own = Problems(Path(problems.file))
        check_order(values, {**lines, **axis_lines}, source.line, "", own, skip=skip)
        inherited = inherited_values(source.controls, merged.get("controls"), values)
        controls = swept_units(inherited, variant.values, Path(problems.file).parent)
        for message in order_problems(controls):
            own.add(source.line, "", message)
        for problem in own.problems:
            found.setdefault((problem.line, problem.message), []).append(item_id)
        if own.problems:
            continue
        params = GenerationParams(**{name: values[name] for name in GenerationParams.__dataclass_fields__})
        sweep = SweepPlace(source.id, variant.values, fields, variant.coordinates, shape)
        items.append(replace(source, id=item_id, params=params, sweep=sweep, controls=controls))
    total = math.prod(shape)
    for (line, message), ids in found.items():
        if len(ids) == 1:
            problems.add(line, f"item {ids[0]!r} (#{source.index})", message)
        else:
            shared = f"{message} (in {len(ids):,} of its {total:,} variants, such as {ids[0]!r})"
            problems.add(line, f"item {source.id!r} (#{source.index})", shared)
    return items


def _flat_values(fields: tuple[str, ...], values: tuple[Any, ...], file: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for field, value in zip(fields, values, strict=True):
        if unit_field(field):
            continue  # a unit's field: swept_units puts it in place
        flat.update(checked_values(Params, as_field(field, value), "", Problems(Path(file))).values)
    return flat
