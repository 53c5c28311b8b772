"""The manifest JSON Schema: it matches its checked-in file, accepts the example and agrees with load_manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from rr_controlnet.errors import ManifestError
from rr_controlnet.manifest.document import PARAM_KEYS, load_manifest
from rr_controlnet.manifest.schema import manifest_json_schema, schema_text

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
SCHEMA = manifest_json_schema()
VALIDATOR = Draft202012Validator(SCHEMA)


def manifest(defaults: dict[str, Any] | None = None, **item: Any) -> dict[str, Any]:
    return {"version": 1, "model": "tiny-sd15", "defaults": defaults or {}, "items": [{"image": "a.png", **item}]}


def test_checked_in_schema_file_is_current() -> None:
    text = (MANIFESTS / "manifest.schema.json").read_text()
    assert text == schema_text(), "regenerate: python -m rr_controlnet.manifest.schema > manifests/manifest.schema.json"
    assert json.loads(text) == SCHEMA


def test_schema_is_valid_draft_2020_12_and_covers_every_parameter() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert list(SCHEMA["properties"]["defaults"]["properties"]) == list(PARAM_KEYS)


@pytest.mark.parametrize("name", ["example.yaml", "sweep.yaml"])
def test_example_manifests_are_valid(name: str) -> None:
    VALIDATOR.validate(yaml.safe_load((MANIFESTS / name).read_text()))


def test_custom_model_mapping_is_valid() -> None:
    model = {"base": "./models/my-sd15", "controlnet": "lllyasviel/control_v11p_sd15_canny", "vae": None}
    VALIDATOR.validate({**manifest(), "model": {**model, "family": "sd15"}})


@pytest.mark.parametrize(
    ("document", "path"),
    [
        pytest.param(manifest(stpes=20), ["items", 0], id="unknown-item-key"),
        pytest.param({**manifest(), "extra": 1}, [], id="unknown-top-level-key"),
        pytest.param(manifest({"steps": 0}), ["defaults", "steps"], id="steps-0"),
        pytest.param(manifest(resize="zoom"), ["items", 0, "resize"], id="wrong-resize"),
        pytest.param(manifest(canny={"low": 1, "hihg": 2}), ["items", 0, "canny"], id="unknown-canny-key"),
        pytest.param(manifest(size=64, width=64), ["items", 0], id="size-and-width"),
        pytest.param(manifest(id="a/b"), ["items", 0, "id"], id="bad-id"),
        pytest.param({**manifest(), "model": "sdxl-turbo"}, ["model"], id="unknown-preset"),
        pytest.param({**manifest(), "model": {"base": "x", "family": "flux"}}, ["model"], id="flux-without-controlnet"),
        pytest.param(
            {**manifest(), "model": {"base": "x", "family": "flux-control", "controlnet": "y"}},
            ["model"],
            id="controlnet-on-a-control-model",
        ),
        pytest.param({"version": 1, "items": [{"id": "no-image"}]}, ["items", 0], id="item-without-image"),
    ],
)
def test_broken_manifests_are_rejected_where_they_break(document: dict, path: list) -> None:
    errors = list(VALIDATOR.iter_errors(document))
    assert errors
    assert [list(error.absolute_path) for error in errors] == [path]


# --- the schema's bounds are load_manifest's bounds ------------------------------------------


def field_schema(field: str) -> dict[str, Any]:
    properties = SCHEMA["properties"]["defaults"]["properties"]
    schema = properties["canny"]["properties"][field.split(".")[1]] if "." in field else properties[field]
    schema = schema["anyOf"][0] if "anyOf" in schema else schema  # size: its single-number form
    return SCHEMA["$defs"]["side"] if schema.get("$ref") == "#/$defs/side" else schema


def defaults_with(field: str, value: Any) -> dict[str, Any]:
    return {"canny": {field.split(".")[1]: value}} if "." in field else {field: value}


def loader_accepts(folder: Path, defaults: dict[str, Any]) -> bool:
    """Whether load_manifest finds nothing wrong with these defaults (checks across fields aside)."""
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest(defaults)))
    try:
        load_manifest(path, check_images=False)
    except ManifestError as error:
        return not [
            problem
            for problem in error.problems
            if problem.where == "defaults" and " must be below " not in problem.message  # across fields
        ]
    return True


NUMERIC_FIELDS = [
    "seed",
    "steps",
    "guidance_scale",
    "controlnet_conditioning_scale",
    "control_guidance_start",
    "control_guidance_end",
    "width",
    "height",
    "size",
    "canny.low",
    "canny.high",
]


def test_every_numeric_field_is_probed() -> None:
    properties = SCHEMA["properties"]["defaults"]["properties"]
    numeric = {name for name, schema in properties.items() if "type" not in schema or schema["type"] != "string"}
    # controls: its units' fields are probed in tests/test_control_units.py
    assert numeric - {"canny", "resize", "sweep", "controls"} <= set(NUMERIC_FIELDS)


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
def test_schema_bounds_match_load_manifest(tmp_path: Path, field: str) -> None:
    schema = field_schema(field)
    low, high = schema["minimum"], schema["maximum"]
    probes = [low - 1, low, high, high + 1]
    if "multipleOf" in schema:
        probes.append(low + schema["multipleOf"] // 2)
    loader = [loader_accepts(tmp_path, defaults_with(field, value)) for value in probes]
    validator = [VALIDATOR.is_valid(manifest(defaults_with(field, value))) for value in probes]
    assert loader == validator == [False, True, True, False, False][: len(probes)]


def test_every_scheduler_the_manifest_accepts_can_be_loaded() -> None:
    from rr_controlnet.manifest.fields import SCHEDULERS
    from rr_controlnet.models.schedulers import SCHEDULER_CLASSES

    assert list(SCHEDULERS) == list(SCHEDULER_CLASSES) == SCHEMA["properties"]["scheduler"]["enum"]
