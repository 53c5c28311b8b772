"""What a recording and an output image say about their item: parameters as text, PNG metadata, versions."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from rr_controlnet.models.control_models import unit_model_name
from rr_controlnet.models.families import CONTROLNET_PARAMS, FAMILIES, union_mode
from rr_controlnet.outputs.records import folder_relative, local_relative, model_paths_relative
from rr_controlnet.spec import ControlUnit, GenerationParams, Item, ModelSpec

VERSIONED_PACKAGES: Final = ("rr-controlnet", "diffusers", "torch", "transformers", "rerun-sdk")


def library_versions() -> dict[str, str]:
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def prompt_markdown(params: GenerationParams, seen: Mapping[str, str] | None = None) -> str:
    """Both prompts; where the text encoder cut one short, also the part it read."""
    negative = params.negative_prompt or "*(none)*"
    text = f"## Prompt\n\n{params.prompt or '*(empty)*'}\n\n## Negative prompt\n\n{negative}\n"
    for field, read in (seen or {}).items():
        title = "Prompt" if field == "prompt" else "Negative prompt"
        text += f"\n## {title} as the text encoder read it (the rest was cut off)\n\n{read}\n"
    return text


def params_markdown(
    item: Item,
    model: ModelSpec,
    context: dict[str, Any],
    params_hash: str,
    versions: dict[str, str],
    warnings: list[str] | None = None,
    folder: Path | None = None,
) -> str:
    """Every effective parameter, the model and the libraries, as a markdown table; with `folder` (the output
    folder), local paths relative to it."""
    image = folder_relative(str(item.image.resolve()), folder) if folder is not None else str(item.image)
    rows = [("item", item.id), ("image", image), ("params hash", params_hash)]
    if item.sweep is not None:
        rows.append(("sweep of", item.sweep.source))
        rows += [(f"swept: {field}", _cell(value)) for field, value in item.sweep.values.items()]
    # A control model has no ControlNet: its scale and range would read as if they acted.
    left_out = ("prompt", "negative_prompt", *(() if FAMILIES[model.family].has_controlnet else CONTROLNET_PARAMS))
    rows += [(name, _cell(value)) for name, value in asdict(item.params).items() if name not in left_out]
    units = enumerate(item.controls)
    rows += [(f"controls[{index}]", _cell(unit_text(unit, model, folder=folder))) for index, unit in units]
    shown_model = model_paths_relative(asdict(model), folder)
    rows += [(f"model.{name}", _cell(value)) for name, value in shown_model.items() if value is not None]
    rows += [(name, _cell(value)) for name, value in context.items()]
    rows += [(f"version: {name}", version) for name, version in versions.items()]
    rows += [("warning", _cell(warning)) for warning in warnings or []]
    lines = ["| parameter | value |", "| --- | --- |"] + [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def unit_text(unit: ControlUnit, model: ModelSpec, resize: str | None = None, folder: Path | None = None) -> str:
    """A control unit as A1111 writes a ControlNet unit: `Module: depth, Model: ..., Weight: 0.6, ...`; with
    `resize` (the PNG's `parameters`), a local model by its name; with `folder`, relative to it."""
    mode = union_mode(model.family, unit.type)
    name = _unit_model_shown(unit, model, folder) if resize is None else _unit_model_named(unit, model)
    parts = [
        f"Module: {unit.type}",
        f"Model: {name if resize is None else model_name(name)}",
        *([f"Control Mode: {mode}"] if mode is not None else []),
        f"Weight: {unit.scale:g}",
        f"Guidance Start: {unit.start:g}",
        f"Guidance End: {unit.end:g}",
    ]
    if unit.type == "canny":
        parts += [f"Threshold A: {unit.low}", f"Threshold B: {unit.high}"]
    else:
        parts.append(f"Image: {unit.image.name if unit.image else ''}")
    if resize is not None:
        parts.append(f"Resize Mode: {resize}")
    return ", ".join(parts)


def unit_record(unit: ControlUnit, model: ModelSpec, folder: Path | None = None) -> dict[str, Any]:
    """A unit as the PNG's JSON holds it: its fields, the ControlNet it read and, on a union model, its mode;
    with `folder`, its map and local ControlNet relative to it."""
    record = {**unit.record(), "model": _unit_model_shown(unit, model, folder)}
    if unit.image is not None and folder is not None:
        record["image"] = local_relative(str(unit.image.resolve()), folder)
    mode = union_mode(model.family, unit.type)
    return record if mode is None else {**record, "mode": mode}


def _unit_model_shown(unit: ControlUnit, model: ModelSpec, folder: Path | None) -> str:
    """The ControlNet a unit reads, a local one relative to `folder` ("random (<folder>)" on a tiny model too)."""
    if folder is None:
        return unit_model_name(unit, model)
    return _unit_model_with(unit, model, lambda local: local_relative(local, folder))


def _unit_model_named(unit: ControlUnit, model: ModelSpec) -> str:
    """The ControlNet a unit reads, a local one by its file or folder name."""
    return _unit_model_with(unit, model, lambda local: Path(local).name)


def _unit_model_with(unit: ControlUnit, model: ModelSpec, shown: Callable[[str], str]) -> str:
    """The ControlNet a unit reads, its local folder or file (its own, or the base's it reads) as `shown` names it;
    a preset or hub id as it is."""
    name = unit_model_name(unit, model)
    source = unit.model or (model.controlnet if name == model.controlnet else None)
    return name.replace(source, shown(source)) if source and os.path.isabs(source) else name


def model_name(source: str | None) -> str | None:
    """A model as the PNG's `parameters` name it (A1111 names a checkpoint, not where it lies): a local file or
    folder by its name, so that the image does not show the machine's layout; a preset or hub id as it is."""
    return Path(source).name if source and os.path.isabs(source) else source


def _cell(value: Any) -> str:
    return "auto" if value is None else str(value).replace("|", "\\|")


def png_text_chunks(
    item: Item,
    model: ModelSpec,
    sampler: str,
    size: tuple[int, int],
    params_hash: str,
    seen: Mapping[str, str] | None = None,
    folder: Path | None = None,
) -> dict[str, str]:
    """`parameters` in the format common Stable Diffusion tools read, plus all parameters as JSON (with
    `folder`, the output folder, its local paths relative to it).

    `parameters` carries the prompts as the text encoder read them (cut at its token limit), so the
    image's metadata reproduces what was generated; the JSON keeps the prompts as written as well.
    """
    params = item.params
    seen = dict(seen or {})
    width, height = size
    controlnet = (
        f'"Module: canny, Model: {model_name(model.controlnet)}, Weight: {params.controlnet_conditioning_scale:g}, '
        f"Guidance Start: {params.control_guidance_start:g}, Guidance End: {params.control_guidance_end:g}, "
        f'Threshold A: {params.canny_low}, Threshold B: {params.canny_high}, Resize Mode: {params.resize}"'
    )
    settings = [
        f"Steps: {params.steps}",
        f"Sampler: {sampler}",
        f"CFG scale: {params.guidance_scale:g}",
        f"Seed: {params.seed}",
        f"Size: {width}x{height}",
        f"Model: {model_name(model.base)}",
    ]
    if item.controls:
        settings += [
            f'ControlNet {index}: "{unit_text(unit, model, params.resize)}"' for index, unit in enumerate(item.controls)
        ]
    elif FAMILIES[model.family].has_controlnet:  # a control model reads the map itself: no ControlNet to name
        settings.append(f"ControlNet 0: {controlnet}")
    prompt = seen.get("prompt", params.prompt)
    negative = seen.get("negative_prompt", params.negative_prompt)
    parameters = f"{prompt}\nNegative prompt: {negative}\n{', '.join(settings)}"
    full = {
        "id": item.id,
        "params": asdict(params),
        "model": model_paths_relative(asdict(model), folder),
        "size": [width, height],
        "sampler": sampler,
        "params_hash": params_hash,
    }
    if seen:
        full["text_encoder_read"] = seen
    if item.sweep is not None:
        full["sweep"] = {"source": item.sweep.source, "values": item.sweep.values}
    if item.controls:
        full["controls"] = [unit_record(unit, model, folder) for unit in item.controls]
    return {"parameters": parameters, "rr-controlnet": json.dumps(full, sort_keys=True)}
