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
from rr_controlnet.spec import GenerationParams, Item, Manifest, ModelSpec, Overrides
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


def load_manifest(path: str | Path, overrides: Overrides | None = None, check_images: bool = True) -> Manifest:
    """Read, check and merge a manifest. Raises ManifestError listing every problem found."""
    path = Path(path)
    return parse_manifest(read_yaml(path), path, overrides, check_images)


def parse_manifest(raw: Any, path: Path, overrides: Overrides | None = None, check_images: bool = True) -> Manifest:
    """Check and merge an already parsed manifest; relative paths are taken from `path`'s folder."""
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

    items: list[Item] = []
    first_of_id: dict[str, tuple[int, int | None]] = {}
    items_raw = _items_list(raw, problems)
    for index, item_raw in enumerate(items_raw, start=1):
        item = _check_item(item_raw, index, line_of(items_raw, index - 1), path, model, defaults, overrides, problems)
        if item is None:
            continue
        if item.id in first_of_id:
            first_index, first_line = first_of_id[item.id]
            at = f"line {first_line}" if first_line else f"#{first_index}"
            message = f"id {item.id!r} is already used by item #{first_index} ({at}); give each item a unique id"
            problems.add(item.line, f"item {item.id!r} (#{index})", message)
            continue
        first_of_id[item.id] = (index, item.line)
        items.append(item)
    if check_images:
        for item in items:
            problem = image_file_problem(item.image)
            if problem:
                problems.add(line_of(items_raw[item.index - 1], "image"), f"item {item.id!r} (#{item.index})", problem)

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
    validated = _validated(model, {key: value for key, value in raw.items() if key != "id"}, raw, where, "", problems)
    if validated is None:
        return _Values()
    values, lines = {}, {}
    for name in validated.model_fields_set - set(ITEM_ONLY_KEYS):
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
    overrides: Overrides,
    problems: _Problems,
) -> Item | None:
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
    # Rules across fields are checked on the merged values even when other fields are wrong, so that
    # every problem shows at once.
    merged, lines = _merge(model.family if model else "sd15", defaults, values, overrides)
    _check_order(merged, {**defaults.lines, **lines}, line_of(raw), where, problems)
    if len(problems.problems) > count_before or model is None:
        return None
    params = GenerationParams(**{name: merged[name] for name in GenerationParams.__dataclass_fields__})
    image = (manifest_path.parent / image_raw).expanduser()
    return Item(id=item_id, image=image, params=params, index=index, line=line_of(raw))


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
    merged: dict[str, Any], lines: dict[str, int | None], item_line: int | None, where: str, problems: _Problems
) -> None:
    """fields.ORDERED_PAIRS: the first of each pair below the second, reported where either was set."""
    for low_name, high_name in ORDERED_PAIRS:
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
