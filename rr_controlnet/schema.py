"""The JSON Schema (draft 2020-12) of manifest version 1, for editors and CI linters.

Generated from the constants of `rr_controlnet.manifest`; `manifests/manifest.schema.json` is this
module's output (regenerate: `python -m rr_controlnet.schema > manifests/manifest.schema.json`).
The schema checks each field alone; what spans fields (canny low < high, control guidance start < end,
ids derived from file names, image files) only `rr-controlnet validate` checks.
"""

from __future__ import annotations

import json
from typing import Any, Final

from rr_controlnet.manifest import (
    CANNY_KEYS,
    ID_PATTERN,
    MANIFEST_VERSION,
    MAX_SEED,
    MAX_SIDE,
    MODEL_KEYS,
    PARAM_KEYS,
    RESIZE_MODES,
    SCHEDULERS,
    TOP_LEVEL_KEYS,
)
from rr_controlnet.presets import PRESETS

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
# manifest.py keeps these bounds inside its check closures; tests/test_schema.py probes load_manifest
# at each bound and one past it, so the two cannot drift apart silently.
INTEGER_RANGES: Final[dict[str, tuple[int, int]]] = {"seed": (0, MAX_SEED), "steps": (1, 1000)}
NUMBER_RANGES: Final[dict[str, tuple[float, float]]] = {
    "guidance_scale": (0.0, 50.0),
    "controlnet_conditioning_scale": (0.0, 5.0),
    "control_guidance_start": (0.0, 1.0),
    "control_guidance_end": (0.0, 1.0),
}
CANNY_RANGE: Final = (0, 255)
MIN_SIDE: Final = 8
SIDE_MULTIPLE: Final = 8
FAMILIES: Final = ("sd15", "sdxl")

DESCRIPTIONS: Final[dict[str, str]] = {
    "prompt": "What to generate.",
    "negative_prompt": "What to steer away from.",
    "seed": "Seed of the item's own generator (default 0).",
    "steps": "Denoising steps (default 50).",
    "guidance_scale": "Classifier-free guidance (default 7.5 for SD1.5, 5.0 for SDXL).",
    "controlnet_conditioning_scale": "Weight of the ControlNet (default 0.5).",
    "control_guidance_start": "Fraction of the steps where the ControlNet starts acting (default 0); below the end.",
    "control_guidance_end": "Fraction of the steps where the ControlNet stops acting (default 1).",
    "canny": "Canny thresholds, low below high (default 100, 200).",
    "width": "Output width; alone, the height follows the image's aspect.",
    "height": "Output height; alone, the width follows the image's aspect.",
    "size": "Output size: one side for a square, or [width, height]. Not with width or height.",
    "resize": "crop: cover and cut the centre; fit: fit inside, pad black; stretch (default crop).",
}


def manifest_json_schema() -> dict[str, Any]:
    """The schema of a whole manifest: every object closed (`additionalProperties: false`)."""
    return {
        "$schema": DIALECT,
        "title": f"rr-controlnet manifest, version {MANIFEST_VERSION}",
        "type": "object",
        "additionalProperties": False,
        "required": ["items"],
        "properties": _top_level_properties(),
        "$defs": {"side": _side_schema()},
    }


def schema_text() -> str:
    """The schema as the text of `manifests/manifest.schema.json`."""
    return json.dumps(manifest_json_schema(), indent=2) + "\n"


def _top_level_properties() -> dict[str, Any]:
    properties = {
        "version": {"const": MANIFEST_VERSION, "description": "Manifest format version."},
        "model": _model_schema(),
        "scheduler": {"enum": list(SCHEDULERS), "description": "Replaces the model's own scheduler."},
        "defaults": {**_params_object({}), "description": "Parameters for every item; items override them."},
        "items": {
            "type": "array",
            "minItems": 1,
            "description": "One generation per item.",
            "items": _item_schema(),
        },
    }
    return {key: properties[key] for key in TOP_LEVEL_KEYS}


def _model_schema() -> dict[str, Any]:
    source = {"type": "string", "minLength": 1}
    optional_source = {"type": ["string", "null"], "minLength": 1}
    weights = {
        "base": {**source, "description": "Base model: hub id, diffusers folder or .safetensors file."},
        "controlnet": {**source, "description": "Canny ControlNet: hub id, diffusers folder or .safetensors file."},
        "vae": {**optional_source, "description": "Replacement VAE (optional)."},
        "config": {**optional_source, "description": "Diffusers config of a single-file base, to load offline."},
        "family": {"enum": list(FAMILIES), "description": "Read from model_index.json when base is a folder."},
    }
    return {
        "description": "A preset name (default sdxl), or the weights to load.",
        "anyOf": [
            {"enum": list(PRESETS), "description": "A named preset."},
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["base", "controlnet"],
                "properties": {key: weights[key] for key in MODEL_KEYS},
            },
        ],
    }


def _item_schema() -> dict[str, Any]:
    identity = {
        "id": {
            "type": "string",
            "pattern": ID_PATTERN.pattern,
            "not": {"enum": [".", ".."]},
            "description": "Unique id naming the item's files (default: the image's file name without extension).",
        },
        "image": {"type": "string", "minLength": 1, "description": "Input image, relative to the manifest."},
    }
    return {**_params_object(identity), "required": ["image"]}


def _params_object(extra_properties: dict[str, Any]) -> dict[str, Any]:
    """A closed object of the generation parameters (plus `extra_properties`); size excludes width/height."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {**extra_properties, **_param_properties()},
        "dependentSchemas": {"size": {"not": {"anyOf": [{"required": ["width"]}, {"required": ["height"]}]}}},
    }


def _param_properties() -> dict[str, Any]:
    side = {"$ref": "#/$defs/side"}
    low, high = CANNY_RANGE
    threshold = {"type": "integer", "minimum": low, "maximum": high}
    schemas: dict[str, dict[str, Any]] = {
        "prompt": {"type": "string"},
        "negative_prompt": {"type": "string"},
        **{name: {"type": "integer", "minimum": lo, "maximum": hi} for name, (lo, hi) in INTEGER_RANGES.items()},
        **{name: {"type": "number", "minimum": lo, "maximum": hi} for name, (lo, hi) in NUMBER_RANGES.items()},
        "canny": {
            "type": "object",
            "additionalProperties": False,
            "properties": {key: threshold for key in CANNY_KEYS},
        },
        "width": side,
        "height": side,
        "size": {
            "anyOf": [side, {"type": "array", "prefixItems": [side, side], "items": False, "minItems": 2}],
        },
        "resize": {"enum": list(RESIZE_MODES)},
    }
    # Indexing by PARAM_KEYS fails loudly when manifest.py gains a parameter this schema lacks.
    return {key: {**schemas[key], "description": DESCRIPTIONS[key]} for key in PARAM_KEYS}


def _side_schema() -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": MIN_SIDE,
        "maximum": MAX_SIDE,
        "multipleOf": SIDE_MULTIPLE,
        "description": f"Pixels, a multiple of {SIDE_MULTIPLE} (the models' VAE scale).",
    }


if __name__ == "__main__":
    print(schema_text(), end="")
