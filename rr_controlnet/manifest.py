"""Read and validate a batch manifest (version 1) into frozen dataclasses.

Everything here is pure Python plus PyYAML and Pillow's header reader: validating a manifest never
imports torch or diffusers, and never executes anything from it (YAML is loaded with safe loading).
Every problem is collected and reported at once, each with its file, line, item and field.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from rr_controlnet.errors import ManifestError, Problem
from rr_controlnet.outputs import reserved_id_reason
from rr_controlnet.presets import PRESETS, family_defaults, model_spec_from_preset
from rr_controlnet.spec import GenerationParams, Item, Manifest, ModelSpec, Overrides
from rr_controlnet.yaml_source import line_of, read_yaml, shown

MANIFEST_VERSION: Final = 1
ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_.-]+$")
# Ids name files (`.<id>.rrd.<random>.partial` while written): well inside file systems' 255 bytes.
MAX_ID_LENGTH: Final = 128
MAX_SIDE: Final = 4096
MAX_SEED: Final = 2**63 - 1
MAX_IMAGE_PIXELS: Final = 50_000_000
RESIZE_MODES: Final = ("crop", "fit", "stretch")
SCHEDULERS: Final = ("ddim", "euler", "euler_a", "dpmpp_2m", "unipc", "pndm", "ddpm")
TOP_LEVEL_KEYS: Final = ("version", "model", "scheduler", "defaults", "items")
MODEL_KEYS: Final = ("base", "controlnet", "vae", "config", "family")
ITEM_ONLY_KEYS: Final = ("id", "image")
PARAM_KEYS: Final = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "guidance_scale",
    "controlnet_conditioning_scale",
    "control_guidance_start",
    "control_guidance_end",
    "canny",
    "width",
    "height",
    "size",
    "resize",
)
CANNY_KEYS: Final = ("low", "high")


# --- field checks -----------------------------------------------------------------------------
# Each check takes a raw YAML value and returns (value, None) or (None, message).

Check = Callable[[Any], tuple[Any, str | None]]


def _integer(low: int, high: int | None = None) -> Check:
    described = f"an integer {low}..{high}" if high is not None else f"an integer >= {low}"

    def check(value: Any) -> tuple[Any, str | None]:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"must be {described}, got {shown(value)}"
        if value < low or (high is not None and value > high):
            return None, f"must be {described}, got {shown(value)}"
        return value, None

    return check


def _number(low: float, high: float) -> Check:
    def check(value: Any) -> tuple[Any, str | None]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"must be a number {low:g}..{high:g}, got {shown(value)}"
        if not low <= value <= high:
            return None, f"must be a number {low:g}..{high:g}, got {shown(value)}"
        return float(value), None

    return check


def _text(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str):
        return None, f"must be text, got {shown(value)}"
    return value, None


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any) -> tuple[Any, str | None]:
        if value not in options:
            return None, f"must be one of {', '.join(options)}, got {shown(value)}"
        return value, None

    return check


def _side(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= MAX_SIDE:
        return None, f"must be an integer 8..{MAX_SIDE}, got {shown(value)}"
    if value % 8:
        return None, f"must be a multiple of 8 (the models' VAE scale), got {value}"
    return value, None


SCALAR_CHECKS: Final[dict[str, Check]] = {
    "prompt": _text,
    "negative_prompt": _text,
    "seed": _integer(0, MAX_SEED),
    "steps": _integer(1, 1000),
    "guidance_scale": _number(0.0, 50.0),
    "controlnet_conditioning_scale": _number(0.0, 5.0),
    "control_guidance_start": _number(0.0, 1.0),
    "control_guidance_end": _number(0.0, 1.0),
    "width": _side,
    "height": _side,
    "resize": _choice(RESIZE_MODES),
}


def _unknown_key_message(key: Any, allowed: tuple[str, ...]) -> str:
    message = f"unknown key {shown(key)}"
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    return f"{message} (did you mean {close[0]!r}?)" if close else f"{message}; known keys: {', '.join(allowed)}"


class _Collector:
    """Collects problems for one manifest file."""

    def __init__(self, path: Path):
        self.file = str(path)
        self.problems: list[Problem] = []

    def add(self, line: int | None, where: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, where, message))


def _check_params(raw: Mapping, where: str, problems: _Collector) -> dict[str, Any]:
    """Check the parameter fields of a defaults or item mapping; return the valid ones, flattened."""
    values: dict[str, Any] = {}
    for key, value in raw.items():
        line = line_of(raw, key)
        if key in ITEM_ONLY_KEYS:
            continue
        if key == "canny":
            values.update(_check_canny(value, raw, where, problems))
        elif key == "size":
            values.update(_check_size(value, line, where, problems))
        elif key in SCALAR_CHECKS:
            checked, error = SCALAR_CHECKS[key](value)
            if error:
                problems.add(line, where, f"{key} {error}")
            else:
                values[key] = checked
    if "size" in raw and ("width" in raw or "height" in raw):
        problems.add(line_of(raw, "size"), where, "give either size or width/height, not both")
    return values


def _check_canny(value: Any, parent: Mapping, where: str, problems: _Collector) -> dict[str, int]:
    if not isinstance(value, Mapping):
        problems.add(line_of(parent, "canny"), where, f"canny must be a mapping {{low, high}}, got {shown(value)}")
        return {}
    values = {}
    for key, threshold in value.items():
        line = line_of(value, key)
        if key not in CANNY_KEYS:
            problems.add(line, where, _unknown_key_message(f"canny.{key}", tuple(f"canny.{k}" for k in CANNY_KEYS)))
            continue
        checked, error = _integer(0, 255)(threshold)
        if error:
            problems.add(line, where, f"canny.{key} {error}")
        else:
            values[f"canny_{key}"] = checked
    return values


def _check_size(value: Any, line: int | None, where: str, problems: _Collector) -> dict[str, int]:
    if isinstance(value, list) and len(value) == 2:
        width, height = value
    elif isinstance(value, int) and not isinstance(value, bool):
        width = height = value
    else:
        problems.add(line, where, f"size must be an integer or [width, height], got {shown(value)}")
        return {}
    values = {}
    for name, side in (("width", width), ("height", height)):
        checked, error = _side(side)
        if error:
            problems.add(line, where, f"size {name} {error}")
        else:
            values[name] = checked
    return values


def _check_unknown_keys(raw: Mapping, allowed: tuple[str, ...], where: str, problems: _Collector) -> None:
    for key in raw:
        if key not in allowed:
            problems.add(line_of(raw, key), where, _unknown_key_message(key, allowed))


# --- the manifest as a whole ------------------------------------------------------------------


def _check_model(raw: Any, line: int | None, base_dir: Path, problems: _Collector) -> ModelSpec | None:
    if raw is None:
        raw = "sdxl"
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
    _check_unknown_keys(raw, MODEL_KEYS, "model", problems)
    sources: dict[str, str | None] = {}
    for key in ("base", "controlnet", "vae", "config"):
        value = raw.get(key)
        if value is None:
            sources[key] = None
        elif not isinstance(value, str) or not value:
            problems.add(line_of(raw, key), "model", f"model.{key} must be a hub id or a path, got {shown(value)}")
            sources[key] = None
        else:
            sources[key] = _resolve_model_source(value, base_dir)
    for key in ("base", "controlnet"):
        if key not in raw:
            problems.add(line_of(raw), "model", f"model.{key} is required")
    family = raw.get("family") or _detect_family(sources.get("config") or sources.get("base"))
    if family not in ("sd15", "sdxl"):
        message = (
            f"model.family must be sd15 or sdxl, got {shown(family)}"
            if "family" in raw
            else "model.family (sd15 or sdxl) is required: it cannot be read from model.base"
        )
        problems.add(line_of(raw, "family"), "model", message)
        return None
    if sources["base"] is None or sources["controlnet"] is None:
        return None
    return ModelSpec("custom", family, sources["base"], sources["controlnet"], sources["vae"], sources["config"])


def _resolve_model_source(value: str, base_dir: Path) -> str:
    """Local paths (relative to the manifest) become absolute; anything else is a hub id."""
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


def _check_image(path: Path) -> str | None:
    """Return a message if the file is not a readable image within the pixel limit (header only)."""
    if not path.exists():
        return f"image file not found: {path}"
    if not path.is_file():
        return f"image is not a file: {path}"
    try:
        stats = path.stat()
    except OSError as exc:
        return f"cannot read image {path}: {exc.strerror}"
    return _checked_image(path, stats.st_mtime_ns, stats.st_size)


@functools.lru_cache(maxsize=4096)
def _checked_image(path: Path, mtime_ns: int, size: int) -> str | None:
    """_check_image's verdict on one version of a file: many items may share an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height <= MAX_IMAGE_PIXELS:
                image.verify()  # reads the file's structure and checksums (catches truncation) without decoding
    except UnidentifiedImageError:
        return f"not an image file: {path}"
    except Image.DecompressionBombError:
        return f"image is larger than {MAX_IMAGE_PIXELS:,} pixels: {path}"
    except (OSError, SyntaxError) as exc:
        return f"cannot read image {path}: {getattr(exc, 'strerror', None) or exc}"
    if width * height > MAX_IMAGE_PIXELS:
        return f"image is {width}x{height}, larger than {MAX_IMAGE_PIXELS:,} pixels: {path}"
    return None


BUILTIN_DEFAULTS: Final[dict[str, Any]] = {
    "prompt": "",
    "negative_prompt": "",
    "seed": 0,
    "steps": 50,
    "controlnet_conditioning_scale": 0.5,
    "control_guidance_start": 0.0,
    "control_guidance_end": 1.0,
    "canny_low": 100,
    "canny_high": 200,
    "width": None,
    "height": None,
    "resize": "crop",
}


def _merge(family: str, defaults: dict, item: dict, overrides: Overrides) -> dict[str, Any]:
    merged = {**BUILTIN_DEFAULTS, **family_defaults(family), **defaults}
    # A size given on the item replaces the defaults' size as a whole, never one side of it.
    if "width" in item or "height" in item:
        merged["width"] = merged["height"] = None
    merged.update(item)
    if overrides.steps is not None:
        merged["steps"] = overrides.steps
    if overrides.seed is not None:
        merged["seed"] = overrides.seed
    return merged


def _check_combined(merged: dict[str, Any], line: int | None, where: str, problems: _Collector) -> bool:
    ok = True
    if merged["canny_low"] >= merged["canny_high"]:
        problems.add(
            line, where, f"canny.low must be below canny.high, got {merged['canny_low']} >= {merged['canny_high']}"
        )
        ok = False
    if merged["control_guidance_start"] >= merged["control_guidance_end"]:
        problems.add(
            line,
            where,
            "control_guidance_start must be below control_guidance_end, got "
            f"{merged['control_guidance_start']:g} >= {merged['control_guidance_end']:g}",
        )
        ok = False
    return ok


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
    return repr(value)


def _id_problem(item_id: str) -> str | None:
    """What keeps a well-formed id from naming files everywhere, or None."""
    if len(item_id) > MAX_ID_LENGTH:
        return f"is {len(item_id)} characters long, at most {MAX_ID_LENGTH} (it names the item's files)"
    if item_id.startswith("."):
        return f"{shown(item_id)} must not start with '.' (its files would be hidden)"
    reason = reserved_id_reason(item_id)
    return f"{shown(item_id)} {reason}; choose another id" if reason else None


def _derived_id(image: str) -> str:
    return Path(image).stem


def load_manifest(path: str | Path, overrides: Overrides | None = None, check_images: bool = True) -> Manifest:
    """Read, check and merge a manifest. Raises ManifestError listing every problem found."""
    path = Path(path)
    return parse_manifest(read_yaml(path), path, overrides, check_images)


def parse_manifest(raw: Any, path: Path, overrides: Overrides | None = None, check_images: bool = True) -> Manifest:
    """Check and merge an already parsed manifest; relative paths are taken from `path`'s folder."""
    overrides = overrides or Overrides()
    problems = _Collector(path)
    if not isinstance(raw, Mapping):
        found = "an empty file" if raw is None else _kind_of(raw)
        problems.add(1, "", f"a manifest must be a mapping with 'version' and 'items', got {found}")
        raise ManifestError(problems.problems)
    _check_unknown_keys(raw, TOP_LEVEL_KEYS, "", problems)
    if raw.get("version", MANIFEST_VERSION) != MANIFEST_VERSION:
        problems.add(line_of(raw, "version"), "", f"version must be {MANIFEST_VERSION}, got {shown(raw['version'])}")

    model_raw = overrides.model if overrides.model is not None else raw.get("model")
    model_line = None if overrides.model is not None else line_of(raw, "model")
    model = _check_model(model_raw, model_line, path.parent, problems)

    scheduler = raw.get("scheduler")
    if scheduler is not None and scheduler not in SCHEDULERS:
        problems.add(
            line_of(raw, "scheduler"), "", f"scheduler must be one of {', '.join(SCHEDULERS)}, got {shown(scheduler)}"
        )

    defaults_raw = raw.get("defaults") or {}
    defaults: dict[str, Any] = {}
    if not isinstance(defaults_raw, Mapping):
        problems.add(line_of(raw, "defaults"), "defaults", f"defaults must be a mapping, got {shown(defaults_raw)}")
    else:
        _check_unknown_keys(defaults_raw, PARAM_KEYS, "defaults", problems)
        defaults = _check_params(defaults_raw, "defaults", problems)

    items_raw = raw.get("items")
    if items_raw is None:
        problems.add(line_of(raw), "", "items is missing: list at least one item with an image")
        items_raw = []
    elif not isinstance(items_raw, list):
        problems.add(line_of(raw, "items"), "", f"items must be a list, got {_kind_of(items_raw)}")
        items_raw = []
    elif not items_raw:
        problems.add(line_of(raw, "items"), "", "items is empty: list at least one item with an image")

    items: list[Item] = []
    first_line_of_id: dict[str, tuple[int, int | None]] = {}
    for index, item_raw in enumerate(items_raw, start=1):
        entry_line = line_of(items_raw, index - 1)
        item = _check_item(item_raw, index, path, model, defaults, overrides, problems, check_images, entry_line)
        if item is None:
            continue
        if item.id in first_line_of_id:
            first_index, first_line = first_line_of_id[item.id]
            where = f"item {item.id!r} (#{index})"
            at = f"line {first_line}" if first_line else f"#{first_index}"
            problems.add(
                item.line,
                where,
                f"id {item.id!r} is already used by item #{first_index} ({at}); give each item a unique id",
            )
            continue
        first_line_of_id[item.id] = (index, item.line)
        items.append(item)

    if problems.problems:
        # In file order; problems without a line (rare) keep their place at the front.
        raise ManifestError(sorted(problems.problems, key=lambda problem: problem.line or 0))
    assert model is not None  # a None model always comes with a problem
    return Manifest(path=path, model=model, scheduler=scheduler, items=tuple(items))


def _check_item(
    raw: Any,
    index: int,
    manifest_path: Path,
    model: ModelSpec | None,
    defaults: dict[str, Any],
    overrides: Overrides,
    problems: _Collector,
    check_images: bool,
    entry_line: int | None = None,
) -> Item | None:
    if not isinstance(raw, Mapping):
        problems.add(entry_line, f"item #{index}", f"an item must be a mapping with an image, got {shown(raw)}")
        return None
    line = line_of(raw)
    image_raw = raw.get("image")
    item_id = raw.get("id")
    if item_id is None and isinstance(image_raw, str):
        item_id = _derived_id(image_raw)
    where = f"item {shown(item_id)} (#{index})" if isinstance(item_id, str) and item_id else f"item #{index}"
    ok = True

    _check_unknown_keys(raw, ITEM_ONLY_KEYS + PARAM_KEYS, where, problems)
    if not isinstance(item_id, str) or not ID_PATTERN.match(item_id) or item_id in (".", ".."):
        origin = "id" if "id" in raw else f"id derived from image {shown(image_raw)}"
        problems.add(
            line_of(raw, "id") if "id" in raw else line_of(raw, "image"),
            where,
            f"{origin} must use only letters, digits, '_', '.' and '-' (and not be '.' or '..'), got {shown(item_id)}",
        )
        ok = False
    elif _id_problem(item_id):
        origin = "id" if "id" in raw else f"id derived from image {shown(image_raw)}"
        problems.add(
            line_of(raw, "id") if "id" in raw else line_of(raw, "image"), where, f"{origin} {_id_problem(item_id)}"
        )
        ok = False

    image_path = None
    if image_raw is None:
        problems.add(line, where, "image is required")
        ok = False
    elif not isinstance(image_raw, str) or not image_raw:
        problems.add(line_of(raw, "image"), where, f"image must be a file path, got {shown(image_raw)}")
        ok = False
    else:
        image_path = (manifest_path.parent / image_raw).expanduser()
        error = _check_image(image_path) if check_images else None
        if error:
            problems.add(line_of(raw, "image"), where, error)
            ok = False

    count_before = len(problems.problems)
    item_values = _check_params(raw, where, problems)
    ok = ok and len(problems.problems) == count_before
    # Cross-field rules are checked even when other fields are wrong, so every problem shows at once.
    merged = _merge(model.family if model else "sd15", defaults, item_values, overrides)
    if not _check_combined(merged, line, where, problems) or not ok or model is None:
        return None
    params = GenerationParams(**{name: merged[name] for name in GenerationParams.__dataclass_fields__})
    return Item(id=item_id, image=image_path, params=params, index=index, line=line)
