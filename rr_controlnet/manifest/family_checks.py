"""What a model family refuses that the fields alone allow: a negative prompt where guidance is distilled
(Flux), a scheduler it cannot run (flow matching or not), sizes that are not a multiple of its latent grid,
and a ControlNet's scale, range and units on a control model (which has none). (A union model's units are
checked with the other unit rules, in manifest/controls.)

Each rule is reported once, at its first item, with how many other items break it too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rr_controlnet.manifest.checks import Problems, json_object
from rr_controlnet.manifest.fields import Params
from rr_controlnet.manifest.yaml_source import line_of, shown
from rr_controlnet.models.families import CONTROLNET_PARAMS, FAMILIES, Family, family_for_pipeline
from rr_controlnet.models.hub import is_single_file
from rr_controlnet.spec import Item


def family_problems(family: str, scheduler: str | None, items: Sequence[Item], raw: Any, problems: Problems) -> None:
    entry = FAMILIES[family]
    if scheduler is not None and scheduler not in entry.schedulers:
        message = (
            f"scheduler {shown(scheduler)} cannot run {entry.title} ({family}); it takes {', '.join(entry.schedulers)}"
        )
        problems.add(line_of(raw, "scheduler") if isinstance(raw, dict) else None, "", message)
    found: dict[str, tuple[tuple[str, ...], list[Item]]] = {}
    for item in items:
        for keys, message in _item_rules(family, item):
            found.setdefault(message, (keys, []))[1].append(item)
    for message, (keys, broken) in found.items():
        first = broken[0]
        line, in_defaults = _written_at(raw, first, keys)
        if in_defaults:
            count = f"{len(broken)} item inherits" if len(broken) == 1 else f"{len(broken)} items inherit"
            problems.add(line, "defaults", f"{message} ({count} it)")
        else:
            more = f" (and {len(broken) - 1} more item{'s' if len(broken) > 2 else ''})" if len(broken) > 1 else ""
            problems.add(line or first.line, f"item {shown(first.id)} (#{first.index})", message + more)


def _written_at(raw: Any, item: Item, keys: Sequence[str]) -> tuple[int | None, bool]:
    """Where the item's value of `keys` is written: (line, whether in defaults), in the order values win: the
    item's sweep, the defaults' sweep, the item, the defaults; (None, False) when it is none of those (the
    command line, a family's default)."""
    items_raw = raw.get("items") if isinstance(raw, Mapping) else None
    entry = items_raw[item.index - 1] if isinstance(items_raw, list) and item.index <= len(items_raw) else {}
    defaults = raw.get("defaults") if isinstance(raw, Mapping) else None
    places = [(*_sweep_places(entry), False), (*_sweep_places(defaults), True), (entry, False), (defaults, True)]
    for *mappings, in_defaults in places:
        for place in mappings:
            found = next((key for key in keys if isinstance(place, Mapping) and key in place), None)
            if found is not None:
                return line_of(place, found), in_defaults
    return None, False


def _sweep_places(container: Any) -> list[Any]:
    """A sweep's mapping and its zip groups, where a swept value is written."""
    sweep = container.get("sweep") if isinstance(container, Mapping) else None
    if not isinstance(sweep, Mapping):
        return []
    groups = sweep.get("zip")
    return [sweep, *(groups if isinstance(groups, list) else [groups])]


def _item_rules(family: str, item: Item) -> list[tuple[tuple[str, ...], str]]:
    """(the manifest keys that set the value, why it is refused) for each rule the item breaks."""
    entry = FAMILIES[family]
    params = item.params
    rules = []
    if params.negative_prompt and not entry.true_cfg:
        rules.append(
            (
                ("negative_prompt",),
                f"negative_prompt: {entry.title} ({family}) has no classifier-free guidance (its guidance is "
                "distilled), so a negative prompt would be ignored; remove it",
            )
        )
    if not entry.has_controlnet:
        rules += _controlnet_rules(entry, item)
    for side in ("width", "height"):
        value = getattr(params, side)
        if value is not None and value % entry.size_multiple:
            message = f"{side}: {entry.title} ({family}) needs a multiple of {entry.size_multiple}, got {value}"
            rules.append(((side, "size"), message))
    return rules


def _controlnet_rules(entry: Family, item: Item) -> list[tuple[tuple[str, ...], str]]:
    """A control model reads the control image itself, at full strength on every step: a ControlNet's scale
    or range set to anything but the built-in default, and control units, would be ignored."""
    named = f"{entry.title} ({entry.name}) has no ControlNet: the model reads the Canny map itself on every step"
    rules = [
        ((name,), f"{name}: {named}, so {shown(getattr(item.params, name))} would be ignored; remove it")
        for name in CONTROLNET_PARAMS
        if getattr(item.params, name) != Params.model_fields[name].default
    ]
    if item.controls:
        message = f"controls: {named}, so it runs no control units; remove `controls` (use `canny` for its map)"
        rules.append((("controls",), message))
    return rules


def custom_model_problem(family: str, controlnet: str | None, base: str, config: str | None) -> tuple[str, str] | None:
    """(key, why) when a custom model's weights do not fit its family: a ControlNet missing, or named where the
    family has none, or a control model's single transformer file without the config that gives the rest."""
    entry = FAMILIES[family]
    if entry.has_controlnet and controlnet is None:
        return "controlnet", f"model.controlnet is required: {entry.title} ({family}) runs a Canny ControlNet"
    if not entry.has_controlnet and controlnet is not None:
        return "controlnet", (
            f"model.controlnet: {entry.title} ({family}) has no ControlNet (the model reads the Canny map "
            "itself); remove it"
        )
    if entry.denoiser is not None and is_single_file(base) and config is None:
        return "config", (
            f"model.config is required: a single-file {family} base holds its transformer alone; name the "
            "model's diffusers folder or hub id (e.g. black-forest-labs/FLUX.1-Canny-dev) for the other components"
        )
    return None


def base_folder_problem(family: str, folder: str, written: str) -> tuple[str, str] | None:
    """("family", why) when a written family contradicts the pipeline class a local base folder's
    model_index.json names (an SDXL folder named as Flux, say): loading would fail on diffusers' own error.
    A union or control variant fits its base family's folders, and theirs fit it. `written`: the folder as
    the manifest names it."""
    if not Path(folder).is_absolute():
        return None  # a hub id: read only when the run fetches it
    class_name = json_object(Path(folder) / "model_index.json").get("_class_name")
    found = family_for_pipeline(class_name) if isinstance(class_name, str) else None
    if found is None or FAMILIES[found].base_family == FAMILIES[family].base_family:
        return None
    return "family", (
        f"model.family {family} does not fit {shown(written)}: its model_index.json names "
        f"{class_name}, a {FAMILIES[found].title} ({found}) pipeline"
    )


def flux_base_problem(family: str, base: str, config: str | None, written: str) -> tuple[str, str] | None:
    """("base", why) when a local Flux transformer contradicts the family: a control model (FLUX.1 Canny [dev]'s
    transformer reads the control image's latents beside the noisy ones: twice its output's channels) named as
    a ControlNet family, or the other way round. Every item would fail on a tensor's shape. `written`: the base
    as the manifest names it."""
    if family not in ("flux", "flux-union", "flux-control"):
        return None
    folder = Path(config if config is not None else base)
    if not folder.is_absolute():
        return None
    transformer = json_object(folder / "transformer" / "config.json")
    try:
        channels, output = int(transformer["in_channels"]), transformer.get("out_channels")
    except (ValueError, TypeError, KeyError):
        return None
    reads_control = output is not None and channels == 2 * int(output)
    if reads_control and family != "flux-control":
        return "base", (
            f"model.base {shown(written)} is a control model (its transformer reads the control image itself: "
            f"{channels} input channels); name it with family flux-control and no controlnet"
        )
    if not reads_control and family == "flux-control":
        return "base", (
            f"model.base {shown(written)} is no control model (its transformer takes {channels} input channels, a "
            "control model twice its output's); flux-control needs FLUX.1 Canny [dev]'s"
        )
    return None
