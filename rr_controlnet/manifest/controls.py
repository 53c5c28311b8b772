"""Control units in a manifest: `controls:` read and checked (each problem located by item and unit), turned
into each item's `ControlUnit`s, and swept (`controls.<index>.<field>`).

    controls:
      - {type: canny, low: 50, high: 150}
      - {type: depth, image: maps/depth/{id}.png, scale: 0.6}

A unit leaves out what the item says already: its scale, start and end default to the item's
controlnet_conditioning_scale and control_guidance_start/end, a canny unit's thresholds to its canny; a sweep
variant's units take the variant's values.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rr_controlnet.control_maps import unit_name
from rr_controlnet.images import image_file_problem
from rr_controlnet.manifest.checks import Problems, json_object, kind_of, validated_model
from rr_controlnet.manifest.unit_fields import MAX_UNITS, ControlUnitFields, unit_field
from rr_controlnet.manifest.yaml_source import line_of, shown
from rr_controlnet.models.control_models import default_model_problem, model_family
from rr_controlnet.models.families import FAMILIES, controlnet_family, union_mode
from rr_controlnet.spec import ControlUnit, Item, ModelSpec

# A unit's field -> the item's effective parameter it defaults to.
ITEM_DEFAULTS = {
    "scale": "controlnet_conditioning_scale",
    "start": "control_guidance_start",
    "end": "control_guidance_end",
    "low": "canny_low",
    "high": "canny_high",
}
# An item's sweepable field -> the unit fields that take its value when a unit leaves them out.
INHERITED_BY = {
    "controlnet_conditioning_scale": ("scale",),
    "control_guidance_start": ("start",),
    "control_guidance_end": ("end",),
    "canny": ("low", "high"),
    "canny.low": ("low",),
    "canny.high": ("high",),
}
CANNY_ONLY = ("low", "high")


@dataclass(frozen=True)
class UnitEntry:
    """One unit as the manifest writes it: the values it sets, and the mapping it was read from (its lines)."""

    values: dict[str, Any]
    raw: Mapping


def checked_units(
    container: Any, where: str, model: ModelSpec | None, base_dir: Path, problems: Problems
) -> list[UnitEntry] | None:
    """The units a defaults' or item's `controls` sets, each problem reported; None where it sets none. A unit's
    local model is read relative to `base_dir` (the manifest's folder)."""
    if not isinstance(container, Mapping) or "controls" not in container:
        return None
    raw = container["controls"]
    if not isinstance(raw, list) or not raw:
        found = "an empty list" if isinstance(raw, list) else kind_of(raw)
        problems.add(
            line_of(container, "controls"), where, f"controls must be a list of units {{type, ...}}, got {found}"
        )
        return []
    if len(raw) > MAX_UNITS:
        problems.add(
            line_of(container, "controls"),
            where,
            f"controls lists {len(raw)} units, at most {MAX_UNITS}: each unit's ControlNet runs at every step "
            "and holds its own weights",
        )
    entries = []
    for index, unit in enumerate(raw[:MAX_UNITS]):
        name = f"controls[{index}]"
        if not isinstance(unit, Mapping):
            problems.add(
                line_of(raw, index), where, f"{name} must be a mapping {{type, image, ...}}, got {shown(unit)}"
            )
            continue
        validated = validated_model(ControlUnitFields, dict(unit), unit, where, f"{name}.", problems)
        values = {key: getattr(validated, key) for key in validated.model_fields_set} if validated else {}
        _check_unit(values, unit, name, where, problems)
        _check_unit_model(values, unit, name, where, model, base_dir, problems)
        entries.append(UnitEntry(values, unit))
    return entries


def _check_unit(values: dict[str, Any], raw: Mapping, name: str, where: str, problems: Problems) -> None:
    """What a unit's fields break together."""
    unit_type = values.get("type")
    if unit_type is None:
        return
    if unit_type == "canny" and "image" in values:
        problems.add(
            line_of(raw, "image"),
            where,
            f"{name}.image: a canny unit's map is computed from the item's image; leave image out",
        )
    if unit_type != "canny" and "image" not in values:
        example = f"maps/{unit_type}/{{id}}.png"
        message = f"{name}.image is required for a {unit_type} unit: its map is read, never computed (e.g. {example})"
        problems.add(line_of(raw), where, message)
    for key in ("low", "high"):
        if unit_type != "canny" and key in values:
            problems.add(line_of(raw, key), where, f"{name}.{key} is for canny units only")


def _check_unit_model(
    values: dict[str, Any],
    raw: Mapping,
    name: str,
    where: str,
    model: ModelSpec | None,
    base_dir: Path,
    problems: Problems,
) -> None:
    """A unit's model: a local one there and a ControlNet, and of the base's family."""
    unit_type = values.get("type")
    local_problem = local_model_problem(values["model"], base_dir) if "model" in values else None
    if local_problem:
        problems.add(line_of(raw, "model"), where, f"{name}.model {shown(values['model'])}: {local_problem}")
    if unit_type is None or model is None or not FAMILIES[model.family].has_controlnet:
        return  # a control model runs no units: the family's rule says so, once
    if FAMILIES[model.family].union_modes is not None:
        _check_union_unit(values, raw, name, where, model, problems)
        return
    if local_problem:
        return
    family = model_family(model_source(values["model"], base_dir)) if "model" in values else None
    if family is not None and not FAMILIES[family].has_controlnet:
        message = f"{name}.model {shown(values['model'])} is a control model ({family}), not a ControlNet"
        problems.add(line_of(raw, "model"), where, message)
    elif family is not None and family != model.family:
        message = f"{name}.model {shown(values['model'])} is a {family} ControlNet, the base model is {model.family}"
        problems.add(line_of(raw, "model"), where, message)
    problem = default_model_problem(unit_type, values.get("model"), model)
    if problem:
        problems.add(line_of(raw, "model") or line_of(raw), where, f"{name}.model: {problem}")


def _check_union_unit(
    values: dict[str, Any], raw: Mapping, name: str, where: str, model: ModelSpec, problems: Problems
) -> None:
    """A unit on a union model: of a type the model has a mode for, and without a ControlNet of its own."""
    modes = FAMILIES[model.family].union_modes or {}
    title = f"the union model {model.controlnet} ({model.family})"
    if values["type"] not in modes:
        known = ", ".join(modes)
        close = difflib.get_close_matches(values["type"], list(modes), n=1, cutoff=0.7)  # not thermal for normal
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        message = f"{name}.type {shown(values['type'])}: {title} has no mode for it{hint}; it knows {known}"
        problems.add(line_of(raw, "type") or line_of(raw), where, message)
    if "model" in values:
        message = f"{name}.model: {title} runs every unit itself, in the mode of the unit's type; leave model out"
        problems.add(line_of(raw, "model") or line_of(raw), where, message)


def item_units(
    entries: Sequence[UnitEntry] | None, merged: Mapping[str, Any], item_id: str, base_dir: Path
) -> tuple[ControlUnit, ...]:
    """The item's units, each field the unit leaves out taken from the item's parameters; `{id}` in an image
    filled in with `item_id` (a sweep variant's is its source's)."""
    units = []
    for entry in _typed(entries):
        values = entry.values
        image = values.get("image")
        units.append(
            ControlUnit(
                type=values["type"],
                image=base_dir / Path(image.replace("{id}", item_id)).expanduser() if image else None,
                model=model_source(values.get("model"), base_dir),
                **{key: values.get(key, merged[name]) for key, name in ITEM_DEFAULTS.items()},
                image_name=_shown_map(image.replace("{id}", item_id)) if image else None,
            )
        )
    return tuple(units)


def _typed(entries: Sequence[UnitEntry] | None) -> list[UnitEntry]:
    """The entries that make units (one without a type was reported), in the order of the item's units."""
    return [entry for entry in entries or () if "type" in entry.values]


def inherited_values(
    units: tuple[ControlUnit, ...], entries: Sequence[UnitEntry] | None, values: Mapping[str, Any]
) -> tuple[ControlUnit, ...]:
    """The units with each field their entry leaves out taken from `values` again: a sweep variant's
    parameters, so that a swept item value reaches the units that inherit it."""
    return tuple(
        replace(unit, **{key: values[name] for key, name in ITEM_DEFAULTS.items() if key not in entry.values})
        for unit, entry in zip(units, _typed(entries), strict=True)
    )


def units_taking(entries: Sequence[UnitEntry] | None, field: str, swept_unit_fields: Sequence[str] = ()) -> list[int]:
    """The indexes of the units that take the item's (swept) `field`: those that leave out the unit field
    it defaults (a canny unit only, for the thresholds), written or swept (`controls.0.scale`)."""
    keys = INHERITED_BY.get(field, ())
    return [
        index
        for index, entry in enumerate(_typed(entries))
        if any(key not in entry.values and f"controls.{index}.{key}" not in swept_unit_fields for key in keys)
        and (keys[0] not in CANNY_ONLY or entry.values["type"] == "canny")
    ]


def check_idle_sweeps(
    fields: Sequence[tuple[str, int | None]],
    entries: Sequence[UnitEntry] | None,
    where: str,
    problems: Problems,
    swept_unit_fields: Sequence[str] = (),
) -> None:
    """An item's sweep of a field its units default to, where every unit sets its own value, in the manifest
    or by a sweep of its own (or, for canny's thresholds, none is canny): its variants would all draw the
    same image."""
    if not _typed(entries):
        return
    for field, line in fields:
        if field not in INHERITED_BY or units_taking(entries, field, swept_unit_fields):
            continue
        keys = INHERITED_BY[field]
        if keys[0] in CANNY_ONLY and not any(entry.values["type"] == "canny" for entry in _typed(entries)):
            problems.add(line, where, f"sweep.{field} changes nothing: none of the item's units is a canny unit")
            continue
        unit_fields = " and ".join(keys)
        message = (
            f"sweep.{field} changes nothing: each of the item's units sets its own {unit_fields} "
            f"(or sweeps it); sweep controls.<index>.{keys[0]} instead"
        )
        problems.add(line, where, message)


def _shown_map(written: str) -> str:
    """A map's path as written, but for one that names the machine's folders (absolute, or from ~)."""
    return Path(written).name if written.startswith(("/", "~")) or Path(written).is_absolute() else written


def model_source(value: str | None, base_dir: Path) -> str | None:
    """A local folder or file (relative to the manifest) as an absolute path; a preset name or hub id as written."""
    if value is None:
        return None
    candidate = base_dir / Path(value).expanduser()  # ~ first: base_dir / "~/x" would keep the ~
    if value.startswith((".", "/", "~")) or candidate.exists():
        return str(candidate.resolve())
    return value


def local_model_problem(value: str, base_dir: Path) -> str | None:
    """Why a unit's model that names a local path (model_source) cannot be read as a ControlNet: not there, or a
    folder whose config.json names no ControlNet (a pipeline's folder, say); None for a hub id or a preset."""
    source = model_source(value, base_dir)
    if source is None or not Path(source).is_absolute():
        return None
    path = Path(source)
    if not path.exists():
        return f"no such file or folder ({path})"
    if path.is_file():
        return None if path.suffix.lower() == ".safetensors" else f"{path} is neither a folder nor a .safetensors file"
    if controlnet_family(json_object(path / "config.json")) is None:
        pipeline = (path / "model_index.json").exists()
        inside = " (a pipeline's folder: its ControlNet is a folder inside it)" if pipeline else ""
        return f"{path} is not a ControlNet folder: it has no ControlNet's config.json{inside}"
    return None


def order_problems(units: Sequence[ControlUnit]) -> list[str]:
    """Each unit's start below its end, and a canny unit's low below its high."""
    found = []
    for index, unit in enumerate(units):
        if unit.start >= unit.end:
            found.append(f"controls[{index}].start must be below its end, got {unit.start:g} >= {unit.end:g}")
        if unit.type == "canny" and unit.low >= unit.high:
            found.append(f"controls[{index}].low must be below its high, got {unit.low} >= {unit.high}")
    return found


def check_unit_order(
    units: Sequence[ControlUnit], line: int | None, where: str, problems: Problems, swept: set
) -> None:
    """order_problems of units whose fields no sweep varies (those are checked per variant)."""
    fixed = [unit for index, unit in enumerate(units) if index not in swept]
    for message in order_problems(fixed):
        problems.add(line, where, message)


def check_swept_units(
    fields: Sequence[tuple[str, int | None]],
    units: Sequence[ControlUnit],
    where: str,
    problems: Problems,
    family: str | None = None,
    entries: Sequence[UnitEntry] | None = None,
) -> set[int]:
    """Swept unit fields (with their lines) name units the item has, of a type that takes them (and no model
    on a union family); returns the indexes of the units a sweep varies: those it names, and those that take
    a swept item field (`entries`: what each unit sets)."""
    swept = set()
    for field, line in fields:
        swept.update(units_taking(entries, field))
        address = unit_field(field)
        if address is None:
            continue
        index, key = address
        swept.add(index)
        if index >= len(units):
            has = f"has {len(units)} unit{'s' * (len(units) != 1)}" if units else "has no controls"
            problems.add(line, where, f"sweep.{field}: the item {has} (indexes start at 0)")
        elif key in ("low", "high") and units[index].type != "canny":
            problems.add(
                line, where, f"sweep.{field}: controls[{index}] is a {units[index].type} unit; low and high are canny's"
            )
        elif key == "model" and family is not None and FAMILIES[family].union_modes is not None:
            message = f"sweep.{field}: a union model ({family}) runs every unit itself; a unit's model cannot vary"
            problems.add(line, where, message)
    return swept


def unit_value_problems(field: str, value: Any, file: str) -> list[str]:
    """A swept unit value checked like the unit field it varies: `controls.1.scale must be a number 0..5, got 9`;
    a local model relative to the manifest `file`'s folder."""
    index, key = unit_field(field)  # type: ignore[misc] - callers pass unit fields only
    check = Problems(Path(file))
    validated_model(ControlUnitFields, {"type": "canny", key: value}, {}, "", f"controls.{index}.", check)
    messages = [problem.message for problem in check.problems]
    local_problem = local_model_problem(value, Path(file).parent) if key == "model" and not messages else None
    return messages + ([f"controls.{index}.model {shown(value)}: {local_problem}"] if local_problem else [])


def swept_units(units: tuple[ControlUnit, ...], values: Mapping[str, Any], base_dir: Path) -> tuple[ControlUnit, ...]:
    """The units with a variant's swept unit values in place (a local model relative to `base_dir`)."""
    changed = list(units)
    for field, value in values.items():
        address = unit_field(field)
        if address is not None and address[0] < len(changed):
            index, key = address
            value = model_source(value, base_dir) if key == "model" else value
            changed[index] = replace(changed[index], **{key: value})
    return tuple(changed)


def check_unit_maps(item: Item, item_raw: Any, defaults_raw: Any, base_dir: Path, problems: Problems) -> None:
    """Every user map of an item's units readable: `controls[1].image: maps/depth/cat.png does not exist`."""
    owner = item_raw if isinstance(item_raw, Mapping) and "controls" in item_raw else defaults_raw
    raw_units = owner.get("controls") if isinstance(owner, Mapping) else None
    where = f"item {(item.sweep.source if item.sweep else item.id)!r} (#{item.index})"
    for index, unit in enumerate(item.controls):
        if unit.image is None:
            continue
        raw = raw_units[index] if isinstance(raw_units, list) and index < len(raw_units) else None
        line = line_of(raw, "image") if isinstance(raw, Mapping) else item.line
        shown_path = _relative(unit.image, base_dir)
        if not unit.image.exists():
            problems.add(line, where, f"controls[{index}].image: {shown_path} does not exist")
            continue
        problem = image_file_problem(unit.image)
        if problem:
            problems.add(line, where, f"controls[{index}].image: {problem}")


def _relative(path: Path, base_dir: Path) -> str:
    try:
        return path.relative_to(base_dir).as_posix()
    except ValueError:
        return str(path)


def units_record(item: Item, map_sha256: Mapping[Path, str], family: str | None = None) -> dict[str, Any]:
    """{"controls": {"1-depth": {...}}} for an item with units, each named, its user map by content (summary.json,
    fingerprints, compare: a change names its unit) and on a union family its mode; {} for an item without."""
    if not item.controls:
        return {}
    record = {}
    for index, unit in enumerate(item.controls):
        fields = unit.record()
        if unit.image is not None:  # absolute, like the item's input: a summary writes both relative to its folder
            fields["image"], fields["map_sha256"] = str(unit.image.resolve()), map_sha256.get(unit.image, "")
        mode = union_mode(family, unit.type) if family is not None else None
        if mode is not None:
            fields["mode"] = mode
        record[unit_name(index, unit)] = fields
    return {"controls": record}
