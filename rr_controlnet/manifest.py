"""Read a manifest (version 1): YAML in, checked items with their effective parameters out.

    manifest = load_manifest("manifests/example.yaml", Overrides(model="tiny-sd15", steps=4))

The fields and their rules are the models of `rr_controlnet.fields`; this module applies them to a
YAML document part by part, so that every problem is reported at once, each with its file, line,
item and field, and merges defaults, item values and command-line overrides into each item's
effective parameters. Validating never imports torch or diffusers, and never runs anything from the
file (YAML is loaded safely).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from rr_controlnet.errors import ManifestError, Problem
from rr_controlnet.fields import (
    CANNY_KEYS,
    ID_PATTERN,
    ITEM_ONLY_KEYS,
    MANIFEST_VERSION,
    MODEL_KEYS,
    ORDERED_PAIRS,
    PARAM_KEYS,
    SCHEDULERS,
    TOP_LEVEL_KEYS,
    Canny,
    ItemFields,
    ManifestFields,
    ModelWeights,
    Params,
    builtin_defaults,
    expectation,
)
from rr_controlnet.images import image_file_problem
from rr_controlnet.outputs import reserved_id_reason
from rr_controlnet.presets import PRESETS, family_defaults, model_spec_from_preset
from rr_controlnet.spec import GenerationParams, Item, Manifest, ModelSpec, Overrides, SweepInfo
from rr_controlnet.sweeps import (
    DEFAULT_MAX_ITEMS,
    INTEGER_FIELDS,
    SWEEPABLE,
    Axis,
    RangeProblem,
    combine,
    range_values,
    variant_count,
    variant_id,
    variants,
)
from rr_controlnet.yaml_source import line_of, read_yaml, shown

__all__ = ["PARAM_KEYS", "load_manifest", "parse_manifest", "read_yaml"]

# Ids name files (`.<id>.rrd.<random>.partial` while written): well inside file systems' 255 bytes.
MAX_ID_LENGTH: Final = 128
_ID = re.compile(ID_PATTERN)
# What a field expects when its type alone says too little.
_EXPECTS: Final = {
    "image": "a file path",
    **{key: "a hub id or a path" for key in ("base", "controlnet", "vae", "config")},
}


def load_manifest(
    path: str | Path,
    overrides: Overrides | None = None,
    check_images: bool = True,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> Manifest:
    """Read, check, merge and expand (sweeps) a manifest. Raises ManifestError listing every problem found."""
    path = Path(path)
    return parse_manifest(read_yaml(path), path, overrides, check_images, max_items)


def parse_manifest(
    raw: Any,
    path: Path,
    overrides: Overrides | None = None,
    check_images: bool = True,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> Manifest:
    """Check, merge and expand an already parsed manifest; relative paths are taken from `path`'s folder.

    A manifest that expands (sweeps) to more than `max_items` items is refused before anything is built.
    """
    overrides = overrides or Overrides()
    problems = _Problems(path)
    if not isinstance(raw, Mapping):
        found = "an empty file" if raw is None else _kind_of(raw)
        problems.add(1, "", f"a manifest must be a mapping with 'version' and 'items', got {found}")
        raise ManifestError(problems.sorted())
    _check_unknown_keys(raw, TOP_LEVEL_KEYS, "", problems)
    if raw.get("version", MANIFEST_VERSION) != MANIFEST_VERSION:
        problems.add(line_of(raw, "version"), "", f"version must be {MANIFEST_VERSION}, got {shown(raw['version'])}")

    if overrides.model is not None:
        model = _check_model(overrides.model, None, path.parent, problems)
    else:
        model = _check_model(raw.get("model"), line_of(raw, "model"), path.parent, problems)

    scheduler = raw.get("scheduler")
    if scheduler is not None and scheduler not in SCHEDULERS:
        message = f"scheduler must be {expectation(ManifestFields, 'scheduler')}, got {shown(scheduler)}"
        problems.add(line_of(raw, "scheduler"), "", message)

    defaults = _Values()
    defaults_raw = raw.get("defaults") or {}
    if not isinstance(defaults_raw, Mapping):
        problems.add(line_of(raw, "defaults"), "defaults", f"defaults must be a mapping, got {shown(defaults_raw)}")
    else:
        defaults = _checked_values(Params, defaults_raw, "defaults", problems)

    checked: list[tuple[Item, dict, dict, list[Axis]]] = []
    items_raw = _items_list(raw, problems)
    default_sweep = defaults_raw if isinstance(defaults_raw, Mapping) else {}
    for index, item_raw in enumerate(items_raw, start=1):
        entry_line = line_of(items_raw, index - 1)
        entry = _check_item(item_raw, index, entry_line, path, model, defaults, default_sweep, overrides, problems)
        if entry is not None:
            checked.append(entry)
    counts = [variant_count(axes) for *_, axes in checked]
    if sum(counts) > max_items:
        largest, count = max(zip((entry[0] for entry in checked), counts, strict=True), key=lambda pair: pair[1])
        problems.add(
            largest.line,
            f"item {largest.id!r} (#{largest.index})",
            f"the manifest expands to {sum(counts):,} items, more than the limit of {max_items:,} "
            f"(this item's sweep alone gives {count:,}); sweep fewer values or raise --max-items",
        )
        raise ManifestError(problems.sorted())

    items: list[Item] = []
    first_of_id: dict[str, tuple[int, int | None]] = {}
    for source, merged, lines, axes in checked:
        items += _expanded(source, merged, lines, axes, problems)
    items = [replace(item, position=position) for position, item in enumerate(items, start=1)]
    unique: list[Item] = []
    for item in items:
        if item.id in first_of_id:
            first_index, first_line = first_of_id[item.id]
            at = f"line {first_line}" if first_line else f"#{first_index}"
            message = f"id {item.id!r} is already used by item #{first_index} ({at}); give each item a unique id"
            problems.add(item.line, f"item {item.id!r} (#{item.index})", message)
            continue
        first_of_id[item.id] = (item.index, item.line)
        unique.append(item)
    items = unique
    if check_images:
        for item in {item.index: item for item in items}.values():  # once per manifest entry
            problem = image_file_problem(item.image)
            if problem:
                where = f"item {(item.sweep.source if item.sweep else item.id)!r} (#{item.index})"
                problems.add(line_of(items_raw[item.index - 1], "image"), where, problem)

    if problems.problems:
        raise ManifestError(problems.sorted())
    assert model is not None  # a None model always comes with a problem
    return Manifest(path=path, model=model, scheduler=scheduler, items=tuple(items))


# --- problems and field values ------------------------------------------------------------------


class _Problems:
    """The problems of one manifest file."""

    def __init__(self, path: Path):
        self.file = str(path)
        self.problems: list[Problem] = []

    def add(self, line: int | None, where: str, message: str) -> None:
        problem = Problem(self.file, line, where, message)
        if problem not in self.problems:
            self.problems.append(problem)

    def sorted(self) -> list[Problem]:
        # In file order; problems without a line (rare) keep their place at the front.
        return sorted(self.problems, key=lambda problem: problem.line or 0)


class _Values:
    """Parameters a mapping sets, flat (canny.low as canny_low, size as width and height), with their lines."""

    def __init__(self, values: dict[str, Any] | None = None, lines: dict[str, int | None] | None = None):
        self.values = values or {}
        self.lines = lines or {}


def _checked_values(model: type[BaseModel], raw: Mapping, where: str, problems: _Problems) -> _Values:
    """Validate a defaults or item mapping; report each problem and keep the values that are right."""
    data = {key: value for key, value in raw.items() if key not in ("id", "sweep")}  # those two are checked apart
    validated = _validated(model, data, raw, where, "", problems)
    if validated is None:
        return _Values()
    values, lines = {}, {}
    for name in validated.model_fields_set - {*ITEM_ONLY_KEYS, "sweep"}:
        if name == "canny":
            for key in validated.canny.model_fields_set:
                values[f"canny_{key}"] = getattr(validated.canny, key)
                lines[f"canny_{key}"] = line_of(raw["canny"], key)
        elif name == "size":
            values["width"], values["height"] = validated.size
            lines["width"] = lines["height"] = line_of(raw, "size")
        else:
            values[name] = getattr(validated, name)
            lines[name] = line_of(raw, name)
    return _Values(values, lines)


def _validated(
    model: type[BaseModel], data: dict, raw: Mapping, where: str, prefix: str, problems: _Problems
) -> BaseModel | None:
    """`model` over the fields of `data` that are right; each wrong one reported and left out."""
    for _ in range(len(data) + 1):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                line, message = _described(model, raw, error, prefix)
                problems.add(line, where, message)
                data = _without(data, error["loc"] or ("size",))
    return None


def _without(data: dict, loc: tuple) -> dict:
    """`data` without the value at `loc`: a key, or a key of a nested mapping (canny.low)."""
    head, *rest = loc
    if rest and isinstance(data.get(head), Mapping):
        return {**data, head: _without(dict(data[head]), tuple(rest))}
    return {key: value for key, value in data.items() if key != head}


def _described(model: type[BaseModel], raw: Mapping, error: dict, prefix: str) -> tuple[int | None, str]:
    """(line, message) for one pydantic error, worded like every other problem of a manifest."""
    loc, kind = error["loc"], error["type"]
    if not loc:  # a rule across fields of the mapping: size with width or height
        return line_of(raw, "size"), error["msg"]
    owner, name, container, dotted = model, str(loc[0]), raw, f"{prefix}{loc[0]}"
    if len(loc) > 1 and loc[0] == "canny":
        owner, name, container, dotted = Canny, str(loc[1]), raw.get("canny"), f"{prefix}canny.{loc[1]}"
    value = error.get("input")
    if kind == "extra_forbidden":
        allowed = tuple(f"canny.{key}" for key in CANNY_KEYS) if owner is Canny else _keys_of(model, prefix)
        return line_of(container, name), _unknown_key_message(dotted, allowed)
    if kind == "missing":
        return line_of(container), f"{dotted} is required"
    if kind == "rr_message":
        return line_of(container, name), f"{dotted} {error['ctx']['message']}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        keys = ", ".join(Canny.model_fields)
        return line_of(container, name), f"{dotted} must be a mapping {{{keys}}}, got {shown(value)}"
    if kind == "multiple_of":
        multiple = error["ctx"]["multiple_of"]
        return line_of(
            container, name
        ), f"{dotted} must be a multiple of {multiple} (the models' VAE scale), got {value}"
    expects = _EXPECTS.get(name) or expectation(owner, name)
    return line_of(container, name), f"{dotted} must be {expects}, got {shown(value)}"


def _keys_of(model: type[BaseModel], prefix: str) -> tuple[str, ...]:
    if model is ItemFields:
        return ITEM_ONLY_KEYS + PARAM_KEYS
    return tuple(f"{prefix}{key}" for key in model.model_fields)


def _unknown_key_message(key: Any, allowed: tuple[str, ...]) -> str:
    message = f"unknown key {shown(key)}"
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    return f"{message} (did you mean {close[0]!r}?)" if close else f"{message}; known keys: {', '.join(allowed)}"


def _check_unknown_keys(raw: Mapping, allowed: tuple[str, ...], where: str, problems: _Problems) -> None:
    for key in raw:
        if key not in allowed:
            problems.add(line_of(raw, key), where, _unknown_key_message(key, allowed))


def _kind_of(value: Any) -> str:
    """How a YAML value reads to a person: 'a mapping', 'text', 'a number', ..."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"text {shown(value)}"
    if value is None:
        return "nothing"
    return shown(value)


def _items_list(raw: Mapping, problems: _Problems) -> list:
    items_raw = raw.get("items")
    if items_raw is None:
        problems.add(line_of(raw), "", "items is missing: list at least one item with an image")
        return []
    if not isinstance(items_raw, list):
        problems.add(line_of(raw, "items"), "", f"items must be a list, got {_kind_of(items_raw)}")
        return []
    if not items_raw:
        problems.add(line_of(raw, "items"), "", "items is empty: list at least one item with an image")
    return items_raw


# --- the model -----------------------------------------------------------------------------------


def _check_model(raw: Any, line: int | None, base_dir: Path, problems: _Problems) -> ModelSpec | None:
    if raw is None:
        raw = ManifestFields.model_fields["model"].default
    if isinstance(raw, str):
        if raw not in PRESETS:
            close = difflib.get_close_matches(raw, list(PRESETS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; presets: {', '.join(PRESETS)}"
            problems.add(line, "model", f"unknown model preset {shown(raw)}{hint}")
            return None
        return model_spec_from_preset(raw)
    if not isinstance(raw, Mapping):
        problems.add(line, "model", f"model must be a preset name or a mapping, got {shown(raw)}")
        return None
    weights = _validated(ModelWeights, dict(raw), raw, "model", "model.", problems)
    if weights is None:
        return None
    sources = {key: _resolve_model_source(getattr(weights, key), base_dir) for key in MODEL_KEYS if key != "family"}
    family = weights.family or _detect_family(sources["config"] or sources["base"])
    if family is None:
        message = "model.family (sd15 or sdxl) is required: it cannot be read from model.base"
        problems.add(line_of(raw), "model", message)
        return None
    return ModelSpec("custom", family, sources["base"], sources["controlnet"], sources["vae"], sources["config"])


def _resolve_model_source(value: str | None, base_dir: Path) -> str | None:
    """Local paths (relative to the manifest) become absolute; anything else is a hub id."""
    if value is None:
        return None
    candidate = (base_dir / value).expanduser()
    if value.startswith((".", "/", "~")) or candidate.exists():
        return str(candidate.resolve())
    return value


def _detect_family(source: str | None) -> str | None:
    """Read the pipeline class from a local diffusers folder, without importing diffusers."""
    if source is None:
        return None
    index = Path(source) / "model_index.json"
    try:
        class_name = json.loads(index.read_text()).get("_class_name", "")
    except (OSError, ValueError):
        return None
    return "sdxl" if "XL" in class_name else "sd15"


# --- items ---------------------------------------------------------------------------------------


def _check_item(
    raw: Any,
    index: int,
    entry_line: int | None,
    manifest_path: Path,
    model: ModelSpec | None,
    defaults: _Values,
    default_sweep: Mapping,
    overrides: Overrides,
    problems: _Problems,
) -> tuple[Item, dict, dict, list[Axis]] | None:
    """The item with its effective parameters (flat, with the lines they were set on) and its sweep's axes."""
    if not isinstance(raw, Mapping):
        problems.add(entry_line, f"item #{index}", f"an item must be a mapping with an image, got {shown(raw)}")
        return None
    image_raw = raw.get("image")
    item_id = raw["id"] if "id" in raw else _derived_id(image_raw) if isinstance(image_raw, str) else None
    where = f"item {shown(item_id)} (#{index})" if isinstance(item_id, str) and item_id else f"item #{index}"
    count_before = len(problems.problems)
    id_problem = _id_problem(item_id)
    if id_problem:
        origin = "id" if "id" in raw else f"id derived from image {shown(image_raw)}"
        problems.add(line_of(raw, "id") if "id" in raw else line_of(raw, "image"), where, f"{origin} {id_problem}")
    values = _checked_values(ItemFields, raw, where, problems)
    merged, item_lines = _merge(model.family if model else "sd15", defaults, values, overrides)
    lines = {**defaults.lines, **item_lines}
    axes = combine(
        _sweep_axes(default_sweep, "defaults", problems, merged["seed"]),
        _sweep_axes(raw, where, problems, merged["seed"]),
    )
    # Rules across fields are checked on the merged values even when other fields are wrong, so that
    # every problem shows at once; a rule whose fields are swept is checked on each variant instead.
    swept = {name.replace(".", "_") for axis in axes for field in axis.fields for name in _flat_names(field)}
    _check_order(merged, lines, line_of(raw), where, problems, skip=swept)
    if len(problems.problems) > count_before or model is None:
        return None
    params = GenerationParams(**{name: merged[name] for name in GenerationParams.__dataclass_fields__})
    image = (manifest_path.parent / image_raw).expanduser()
    return Item(id=item_id, image=image, params=params, index=index, line=line_of(raw)), merged, lines, axes


# --- sweeps ----------------------------------------------------------------------------------------


def _sweep_axes(container: Mapping, where: str, problems: _Problems, base_seed: int) -> list[Axis]:
    """The axes of a defaults' or item's `sweep`, each value checked like the field it varies."""
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
        elif key not in SWEEPABLE:
            problems.add(
                line,
                where,
                _unknown_key_message(f"sweep.{key}", tuple(f"sweep.{name}" for name in (*SWEEPABLE, "zip"))),
            )
        else:
            values = _sweep_values(key, spec, line, where, problems, base_seed)
            axes += [Axis((key,), tuple((value,) for value in values), line)] if values else []
    fields = [field for axis in axes for field in axis.fields]
    for field in {field for field in fields if fields.count(field) > 1}:
        problems.add(line_of(raw), where, f"sweep.{field} is swept twice (alone and in zip, or in two zip groups)")
    return axes


def _zip_axis(group: Any, line: int | None, where: str, problems: _Problems, base_seed: int) -> Axis | None:
    if not isinstance(group, Mapping) or not group:
        problems.add(line, where, f"sweep.zip must map fields to lists of equal length, got {shown(group)}")
        return None
    columns = {}
    for key, spec in group.items():
        if key not in SWEEPABLE:
            problems.add(
                line_of(group, key),
                where,
                _unknown_key_message(f"sweep.zip.{key}", tuple(f"sweep.zip.{name}" for name in SWEEPABLE)),
            )
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
    field: str, spec: Any, line: int | None, where: str, problems: _Problems, base_seed: int, in_zip: bool = False
) -> list[Any]:
    """A swept field's values, each one valid for the field; [] (with the problems reported) otherwise."""
    name = f"sweep.zip.{field}" if in_zip else f"sweep.{field}"
    if isinstance(spec, list):
        if not spec:
            problems.add(line, where, f"{name}: an empty list gives no variants")
            return []
        values, value_lines = list(spec), [line_of(spec, position) or line for position in range(len(spec))]
    elif isinstance(spec, Mapping) and not in_zip and field not in ("canny",):
        try:
            values = range_values(spec, integer=field in INTEGER_FIELDS, base=base_seed if field == "seed" else None)
        except RangeProblem as exc:
            problems.add(line, where, f"{name}: {exc}")
            return []
        value_lines = [line] * len(values)
    else:
        kind = "a list" if in_zip else "a list of values or a range {from, to, step or count}"
        problems.add(line, where, f"{name} must be {kind}, got {shown(spec)}")
        return []
    good = []
    for value, value_line in zip(values, value_lines, strict=True):
        check = _Problems(Path(problems.file))
        _checked_values(Params, _as_field(field, value), "", check)
        for problem in check.problems:  # "canny.low must be ..." reads "sweep.canny.low must be ..."
            message = problem.message
            message = f"{name}{message[len(field) :]}" if message.startswith(f"{field} ") else f"{name}: {message}"
            problems.add(value_line, where, message)
        if not check.problems:
            good.append(value)
    shown_values = [shown(value) for value in good]
    repeated = sorted({text for text in shown_values if shown_values.count(text) > 1})
    if repeated:
        problems.add(line, where, f"{name} lists {', '.join(repeated)} more than once")
        return []
    return good if len(good) == len(values) else []


def _as_field(field: str, value: Any) -> dict[str, Any]:
    """A swept value as the mapping an item would write it in: canny.low 50 as {canny: {low: 50}}."""
    if field.startswith("canny."):
        return {"canny": {field.split(".", 1)[1]: value}}
    return {field: value}


def _flat_names(field: str) -> tuple[str, ...]:
    """The effective parameters a swept field sets."""
    if field == "canny":
        return ("canny_low", "canny_high")
    if field == "size":
        return ("width", "height")
    return (field.replace(".", "_"),)


def _expanded(source: Item, merged: dict, lines: dict, axes: list[Axis], problems: _Problems) -> list[Item]:
    """The item itself, or one item per combination of its sweep's values."""
    if not axes:
        return [source]
    shape = tuple(len(axis) for axis in axes)
    fields = tuple(axis.fields for axis in axes)
    axis_lines = {name: axis.line for axis in axes for field in axis.fields for name in _flat_names(field)}
    items = []
    for variant in variants(axes):
        values = dict(merged)
        for field, value in variant.values.items():
            values.update(_checked_values(Params, _as_field(field, value), "", _Problems(Path(problems.file))).values)
        item_id = variant_id(source.id, variant.values)
        where = f"item {item_id!r} (#{source.index})"
        id_problem = _id_problem(item_id)
        if id_problem:
            problems.add(source.line, f"item {source.id!r} (#{source.index})", f"a variant's id {id_problem}")
            continue
        count = len(problems.problems)
        _check_order(values, {**lines, **axis_lines}, source.line, where, problems)
        if len(problems.problems) > count:
            continue
        params = GenerationParams(**{name: values[name] for name in GenerationParams.__dataclass_fields__})
        sweep = SweepInfo(source.id, variant.values, fields, variant.coordinates, shape)
        items.append(replace(source, id=item_id, params=params, sweep=sweep))
    return items


def _merge(family: str, defaults: _Values, item: _Values, overrides: Overrides) -> tuple[dict, dict]:
    """Effective parameters: built-in and family defaults, then `defaults`, the item, the command line."""
    merged = {**builtin_defaults(), **family_defaults(family), **defaults.values}
    # A size given on the item replaces the defaults' size as a whole, never one side of it.
    if "width" in item.values or "height" in item.values:
        merged["width"] = merged["height"] = None
    merged.update(item.values)
    if overrides.steps is not None:
        merged["steps"] = overrides.steps
    if overrides.seed is not None:
        merged["seed"] = overrides.seed
    return merged, item.lines


def _check_order(
    merged: dict[str, Any],
    lines: dict[str, int | None],
    item_line: int | None,
    where: str,
    problems: _Problems,
    skip: set[str] = frozenset(),
) -> None:
    """fields.ORDERED_PAIRS: the first of each pair below the second, reported where either was set."""
    for low_name, high_name in ORDERED_PAIRS:
        if {low_name.replace(".", "_"), high_name.replace(".", "_")} & skip:
            continue
        low, high = merged[low_name.replace(".", "_")], merged[high_name.replace(".", "_")]
        if low >= high:
            line = lines.get(low_name.replace(".", "_")) or lines.get(high_name.replace(".", "_")) or item_line
            problems.add(line, where, f"{low_name} must be below {high_name}, got {low:g} >= {high:g}")


def _id_problem(item_id: Any) -> str | None:
    """What keeps an id from naming the item's files everywhere, or None."""
    if not isinstance(item_id, str) or not _ID.match(item_id) or item_id in (".", ".."):
        return f"must use only letters, digits, '_', '.' and '-' (and not be '.' or '..'), got {shown(item_id)}"
    if len(item_id) > MAX_ID_LENGTH:
        return f"is {len(item_id)} characters long, at most {MAX_ID_LENGTH} (it names the item's files)"
    if item_id.startswith("."):
        return f"{shown(item_id)} must not start with '.' (its files would be hidden)"
    reason = reserved_id_reason(item_id)
    return f"{shown(item_id)} {reason}; choose another id" if reason else None


def _derived_id(image: str) -> str:
    return Path(image).stem
