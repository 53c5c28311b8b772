"""Read a manifest (version 1): YAML in, checked items with their effective parameters out.

    manifest = load_manifest("manifests/example.yaml", Overrides(model="tiny-sd15", steps=4))

The fields and their rules are the models of `rr_controlnet.manifest.fields`; this module applies them to a
YAML document part by part, so that every problem is reported at once, each with its file, line,
item and field, and merges defaults, item values and command-line overrides into each item's
effective parameters. Validating never imports torch or diffusers, and never runs anything from the
file (YAML is loaded safely).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rr_controlnet.errors import DuplicateKeysError, ManifestError, Problem
from rr_controlnet.images import image_file_problem
from rr_controlnet.manifest.checks import (
    FieldValues,
    Problems,
    check_order,
    check_unknown_keys,
    checked_values,
    id_problem,
    json_object,
    kind_of,
    validated_model,
)
from rr_controlnet.manifest.controls import (
    check_idle_sweeps,
    check_swept_units,
    check_unit_maps,
    check_unit_order,
    checked_units,
    item_units,
    model_source,
)
from rr_controlnet.manifest.family_checks import (
    base_folder_problem,
    custom_model_problem,
    family_problems,
    flux_base_problem,
)
from rr_controlnet.manifest.fields import (
    MANIFEST_VERSION,
    MODEL_KEYS,
    ORDERED_PAIRS,
    PARAM_KEYS,
    SCHEDULERS,
    SWEEPABLE,
    TOP_LEVEL_KEYS,
    ItemFields,
    ManifestFields,
    ModelWeights,
    Params,
    builtin_defaults,
    expectation,
)
from rr_controlnet.manifest.overrides import Overrides
from rr_controlnet.manifest.sweeps import (
    DEFAULT_MAX_ITEMS,
    Axis,
    combine,
    expanded,
    flat_names,
    sweep_axes,
    variant_count,
)
from rr_controlnet.manifest.yaml_source import line_of, read_yaml, shown
from rr_controlnet.models.families import FAMILY_NAMES, controlnet_family, family_for_pipeline
from rr_controlnet.models.presets import PRESETS, family_defaults, model_spec_from_preset
from rr_controlnet.spec import GenerationParams, Item, Manifest, ModelSpec

__all__ = ["PARAM_KEYS", "load_manifest", "parse_manifest", "read_yaml"]


def load_manifest(
    path: str | Path,
    overrides: Overrides | None = None,
    check_images: bool = True,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> Manifest:
    """Read, check, merge and expand (sweeps) a manifest. Raises ManifestError listing every problem found."""
    path = Path(path)
    try:
        raw, problems = read_yaml(path), []
    except DuplicateKeysError as exc:  # reported with whatever else is wrong
        raw, problems = exc.data, exc.problems
    return parse_manifest(raw, path, overrides, check_images, max_items, problems)


def parse_manifest(
    raw: Any,
    path: Path,
    overrides: Overrides | None = None,
    check_images: bool = True,
    max_items: int = DEFAULT_MAX_ITEMS,
    known_problems: Sequence[Problem] = (),
) -> Manifest:
    """Check, merge and expand an already parsed manifest; relative paths are taken from `path`'s folder.

    A manifest that expands (sweeps) to more than `max_items` items is refused before anything is built.
    `known_problems` (found while reading it) are reported with the others.
    """
    overrides = overrides or Overrides()
    problems = Problems(path)
    problems.problems.extend(known_problems)
    model, scheduler = _check_top_level(raw, path, overrides, problems)
    defaults, default_sweep, broken_in_defaults = _check_defaults(raw, model, path.parent, problems)

    checked: list[tuple[Item, dict, dict, list[Axis], set[str]]] = []
    items_raw = _items_list(raw, problems)
    for index, item_raw in enumerate(items_raw, start=1):
        entry_line = line_of(items_raw, index - 1)
        entry = _check_item(
            item_raw, index, entry_line, path, model, defaults, default_sweep, overrides, problems, max_items,
            broken_in_defaults,
        )  # fmt: skip
        if entry is not None:
            checked.append(entry)
    _check_sweep_bound([(entry[0], entry[3]) for entry in checked], max_items, problems)

    items: list[Item] = []
    for source, merged, lines, axes, skip in checked:
        items += expanded(source, merged, lines, axes, problems, skip)
    items = _unique([replace(item, position=position) for position, item in enumerate(items, start=1)], problems)
    if model is not None:
        family_problems(model.family, scheduler, items, raw, problems)
    if check_images:
        _check_image_files(items, items_raw, problems)
        for item in {item.index: item for item in items}.values():
            check_unit_maps(item, items_raw[item.index - 1], raw.get("defaults"), path.parent, problems)
    if problems.problems:
        raise ManifestError(problems.sorted())
    assert model is not None  # a None model always comes with a problem
    return Manifest(path=path, model=model, scheduler=scheduler, items=tuple(items))


def _check_top_level(raw: Any, path: Path, overrides: Overrides, problems: Problems) -> tuple[ModelSpec | None, Any]:
    """The document's own keys: a mapping, its version, the model (or the command line's) and the scheduler.
    A document that is no mapping at all is refused at once."""
    if not isinstance(raw, Mapping):
        found = "an empty file" if raw is None else kind_of(raw)
        problems.add(1, "", f"a manifest must be a mapping with 'version' and 'items', got {found}")
        raise ManifestError(problems.sorted())
    check_unknown_keys(raw, TOP_LEVEL_KEYS, "", problems)
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
    return model, scheduler


def _check_defaults(
    raw: Mapping, model: ModelSpec | None, base_dir: Path, problems: Problems
) -> tuple[FieldValues, Mapping, set]:
    """The defaults' values, the mapping their sweep is read from, and the rules across fields they break on
    their own: those are reported once, for the defaults, not again for every item that leaves them alone."""
    defaults = FieldValues()
    defaults_raw = raw.get("defaults") or {}
    if not isinstance(defaults_raw, Mapping):
        problems.add(line_of(raw, "defaults"), "defaults", f"defaults must be a mapping, got {shown(defaults_raw)}")
    else:
        defaults = checked_values(Params, defaults_raw, "defaults", problems)
        units = checked_units(defaults_raw, "defaults", model, base_dir, problems)
        if units is not None:
            defaults.values["controls"] = units
    default_sweep = defaults_raw if isinstance(defaults_raw, Mapping) else {}
    broken = _defaults_order_problems(model, defaults, line_of(raw, "defaults"), default_sweep, problems)
    return defaults, default_sweep, broken


def _check_sweep_bound(sources: list[tuple[Item, list[Axis]]], max_items: int, problems: Problems) -> None:
    """Refuses (at once) a manifest whose sweeps expand past `max_items` variants. The bound is on what sweeps
    add: a long manifest written out item by item is the user's to make."""
    swept = [(item, variant_count(axes)) for item, axes in sources if axes]
    total = sum(count for _, count in swept)
    if total <= max_items:
        return
    largest, count = max(swept, key=lambda pair: pair[1])
    problems.add(
        largest.line,
        f"item {largest.id!r} (#{largest.index})",
        f"sweeps expand the manifest to {total:,} variants, more than the limit "
        f"of {max_items:,} (this item's sweep alone gives {count:,}); sweep fewer values or raise --max-items",
    )
    raise ManifestError(problems.sorted())


def _unique(items: list[Item], problems: Problems) -> list[Item]:
    """The items whose ids are not already taken by an earlier one; each repeat is a problem."""
    first_of_id: dict[str, tuple[int, int | None]] = {}
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
    return unique


def _check_image_files(items: list[Item], items_raw: list, problems: Problems) -> None:
    """Every input image readable, checked once per manifest entry (not per sweep variant)."""
    for item in {item.index: item for item in items}.values():
        if not isinstance(items_raw[item.index - 1].get("image"), str):
            continue  # no path to read: its image field's own problem says so
        problem = image_file_problem(item.image)
        if problem:
            where = f"item {(item.sweep.source if item.sweep else item.id)!r} (#{item.index})"
            problems.add(line_of(items_raw[item.index - 1], "image"), where, problem)


def _items_list(raw: Mapping, problems: Problems) -> list:
    items_raw = raw.get("items")
    if items_raw is None:
        problems.add(line_of(raw), "", "items is missing: list at least one item with an image")
        return []
    if not isinstance(items_raw, list):
        problems.add(line_of(raw, "items"), "", f"items must be a list, got {kind_of(items_raw)}")
        return []
    if not items_raw:
        problems.add(line_of(raw, "items"), "", "items is empty: list at least one item with an image")
    return items_raw


# --- the model -----------------------------------------------------------------------------------


def _check_model(raw: Any, line: int | None, base_dir: Path, problems: Problems) -> ModelSpec | None:
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
    weights = validated_model(ModelWeights, dict(raw), raw, "model", "model.", problems)
    if weights is None:
        return None
    sources = {key: model_source(getattr(weights, key), base_dir) for key in MODEL_KEYS if key != "family"}
    absent = [
        key for key, source in sources.items() if source and Path(source).is_absolute() and not Path(source).exists()
    ]
    for key in absent:
        message = f"model.{key} {shown(getattr(weights, key))}: no such file or folder ({sources[key]})"
        problems.add(line_of(raw, key), "model", message)
    if absent:
        return None
    family = weights.family or _detect_family(sources["config"] or sources["base"], sources["controlnet"])
    if family is None:
        message = f"model.family ({', '.join(FAMILY_NAMES)}) is required: it cannot be read from model.base"
        problems.add(line_of(raw), "model", message)
        return None
    mismatch = custom_model_problem(family, sources["controlnet"], sources["base"], sources["config"])
    if weights.family is not None and mismatch is None:
        written = weights.config if weights.config is not None else weights.base
        mismatch = base_folder_problem(family, sources["config"] or sources["base"], written)
    mismatch = mismatch or _controlnet_folder_problem(family, sources["controlnet"], weights.controlnet)
    mismatch = mismatch or flux_base_problem(family, sources["base"], sources["config"], weights.base)
    if mismatch is not None:
        key, message = mismatch
        problems.add(line_of(raw, key) if key in raw else line_of(raw), "model", message)
        return None
    return ModelSpec("custom", family, sources["base"], sources["controlnet"], sources["vae"], sources["config"])


def _controlnet_folder_problem(family: str, source: str | None, written: str | None) -> tuple[str, str] | None:
    """("controlnet", why) when a local ControlNet folder's config is another family's than the model's: it
    would fail to load, fail every item, or load a union model's weights into a plain ControlNet."""
    config = json_object(Path(source) / "config.json") if source and Path(source).is_absolute() else {}
    found = controlnet_family(config)
    if found is None or found == family:
        return None
    return "controlnet", f"model.controlnet {shown(written)} is a {found} ControlNet, the base model is {family}"


def _detect_family(source: str | None, controlnet: str | None) -> str | None:
    """Read the pipeline class from a local diffusers folder (and a local ControlNet folder's config, which
    tells a union model), without importing diffusers."""
    if source is None:
        return None
    class_name = json_object(Path(source) / "model_index.json").get("_class_name", "")
    config = json_object(Path(controlnet) / "config.json") if controlnet else {}
    return family_for_pipeline(class_name, config)


# --- items ---------------------------------------------------------------------------------------


def _defaults_order_problems(
    model: ModelSpec | None, defaults: FieldValues, line: int | None, default_sweep: Mapping, problems: Problems
) -> set[str]:
    """Report the rules across fields that the defaults' own values break (fields the defaults sweep are
    checked per variant); return the flat names of the fields involved."""
    merged = {**builtin_defaults(), **family_defaults(model.family if model else "sd15"), **defaults.values}
    swept = {name for field in _swept_fields(default_sweep) for name in flat_names(field)}
    found = Problems(Path(problems.file))
    check_order(merged, defaults.lines, line, "defaults", found, skip=swept)
    for problem in found.problems:
        problems.add(problem.line, problem.where, problem.message)
    broken = set()
    for pair in ORDERED_PAIRS:
        names = [name.replace(".", "_") for name in pair]
        if merged[names[0]] >= merged[names[1]] and not set(names) & swept:
            broken |= set(names)
    return broken


def _swept_fields(container: Any) -> list[str]:
    """The sweepable fields a defaults' or item's sweep names, whatever their values."""
    sweep = container.get("sweep") if isinstance(container, Mapping) else None
    if not isinstance(sweep, Mapping):
        return []
    names = []
    for key, spec in sweep.items():
        groups = (spec if isinstance(spec, list) else [spec]) if key == "zip" else [{key: None}]
        names += [name for group in groups if isinstance(group, Mapping) for name in group if name in SWEEPABLE]
    return names


def _check_item(
    raw: Any,
    index: int,
    entry_line: int | None,
    manifest_path: Path,
    model: ModelSpec | None,
    defaults: FieldValues,
    default_sweep: Mapping,
    overrides: Overrides,
    problems: Problems,
    max_items: int = DEFAULT_MAX_ITEMS,
    broken_in_defaults: set[str] = frozenset(),
) -> tuple[Item, dict, dict, list[Axis], set[str]] | None:
    """The item with its effective parameters (flat, with the lines they were set on), its sweep's axes and
    the rules across fields its variants leave unchecked (those the defaults break, which it does not
    touch). An item with problems of its own is returned too (its variants may have more to report);
    None when it cannot be made at all (not a mapping, an unusable id, no model)."""
    if not isinstance(raw, Mapping):
        problems.add(entry_line, f"item #{index}", f"an item must be a mapping with an image, got {shown(raw)}")
        return None
    image_raw = raw.get("image")
    item_id = raw["id"] if "id" in raw else _derived_id(image_raw) if isinstance(image_raw, str) else None
    where = f"item {shown(item_id)} (#{index})" if isinstance(item_id, str) and item_id else f"item #{index}"
    wrong_id = id_problem(item_id)
    # Without an id and a path to derive one from, the image's own problem says it all.
    if wrong_id and ("id" in raw or (isinstance(image_raw, str) and image_raw)):
        origin = "id" if "id" in raw else f"id derived from image {shown(image_raw)}"
        problems.add(line_of(raw, "id") if "id" in raw else line_of(raw, "image"), where, f"{origin} {wrong_id}")
    values = checked_values(ItemFields, raw, where, problems)
    units = checked_units(raw, where, model, manifest_path.parent, problems)
    if units is not None:
        values.values["controls"] = units
    merged, item_lines = _merge(model.family if model else "sd15", defaults, values, overrides)
    lines = {**defaults.lines, **item_lines}
    own_axes = sweep_axes(raw, where, problems, merged["seed"], max_items)
    axes = combine(sweep_axes(default_sweep, "defaults", problems, merged["seed"], max_items), own_axes)
    # Rules across fields are checked on the merged values even when other fields are wrong, so that
    # every problem shows at once; a rule whose fields are swept is checked on each variant instead, and
    # one that only the defaults break was reported for the defaults.
    swept = {name for axis in axes for field in axis.fields for name in flat_names(field)}
    unchecked = swept | _untouched(broken_in_defaults, values.values)
    check_order(merged, lines, line_of(raw), where, problems, skip=unchecked)
    if wrong_id or model is None:
        return None
    entries = merged.get("controls")
    controls = item_units(entries, merged, item_id, manifest_path.parent)
    swept_fields = [(field, axis.line) for axis in axes for field in axis.fields]
    swept_units = check_swept_units(swept_fields, controls, where, problems, model.family, entries)
    alone = [(axis.fields[0], axis.line) for axis in own_axes if len(axis.fields) == 1]  # a zip varies its others
    check_idle_sweeps(alone, entries, where, problems, [field for field, _ in swept_fields])
    check_unit_order(controls, line_of(raw, "controls") or line_of(raw), where, problems, swept_units)
    params = GenerationParams(**{name: merged[name] for name in GenerationParams.__dataclass_fields__})
    image = manifest_path.parent / Path(image_raw).expanduser() if isinstance(image_raw, str) else manifest_path
    item = Item(id=item_id, image=image, params=params, index=index, line=line_of(raw), controls=controls)
    return item, merged, lines, axes, _untouched(broken_in_defaults, {*values.values, *swept})


def _untouched(broken: set[str], touched: Any) -> set[str]:
    """The fields of the ordered pairs the defaults break that an item (or its sweep) sets neither of."""
    untouched = set()
    for pair in ORDERED_PAIRS:
        names = {name.replace(".", "_") for name in pair}
        if names <= broken and not names & set(touched):
            untouched |= names
    return untouched


def _merge(family: str, defaults: FieldValues, item: FieldValues, overrides: Overrides) -> tuple[dict, dict]:
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


def _derived_id(image: str) -> str:
    return Path(image).stem
