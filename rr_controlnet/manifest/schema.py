"""The JSON Schema (draft 2020-12) of manifest version 1, for editors and CI linters.

Derived from the models of `rr_controlnet.manifest.fields`, with every reference inlined so that each field
reads where it stands; `manifests/manifest.schema.json` is this module's output (regenerate:
`python -m rr_controlnet.manifest.schema > manifests/manifest.schema.json`). The schema checks each field
alone; what spans fields after merging (canny low < high, control guidance start < end), ids derived
from file names and the image files themselves, only `rr-controlnet validate` checks.
"""

from __future__ import annotations

import json
from typing import Any, Final

from rr_controlnet.manifest.fields import MANIFEST_VERSION, ManifestFields
from rr_controlnet.models.presets import PRESETS

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
# Keys of the models' json_schema_extra that are for docs/manifest.md's table, not for the schema.
_TABLE_ONLY: Final = ("default_text",)


def manifest_json_schema() -> dict[str, Any]:
    """The schema of a whole manifest: every object closed (`additionalProperties: false`)."""
    generated = ManifestFields.model_json_schema()
    definitions = generated.pop("$defs", {})
    schema = _tidy(_inlined(generated, definitions))
    schema["properties"]["model"]["anyOf"][0] = {"enum": list(PRESETS), "description": "A named preset."}
    return {
        "$schema": DIALECT,
        "title": f"rr-controlnet manifest, version {MANIFEST_VERSION}",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def schema_text() -> str:
    """The schema as the text of `manifests/manifest.schema.json`."""
    return json.dumps(manifest_json_schema(), indent=2) + "\n"


def _inlined(node: Any, definitions: dict[str, Any]) -> Any:
    """`node` with each {"$ref": "#/$defs/X", ...} replaced by X's schema (siblings win)."""
    if isinstance(node, list):
        return [_inlined(entry, definitions) for entry in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        return _inlined({**target, **siblings}, definitions)
    return {key: _inlined(value, definitions) for key, value in node.items()}


def _tidy(schema: Any) -> Any:
    """Drop what pydantic adds for its own use (titles, `null` defaults); the table's default texts become
    part of the description where the schema has no default of its own."""
    if isinstance(schema, list):
        return [_tidy(entry) for entry in schema]
    if not isinstance(schema, dict):
        return schema
    tidy = {}
    if schema.get("default_text") and schema.get("default") is None and "description" in schema:
        schema = {**schema, "description": f"{schema['description']} Default: {schema['default_text']}."}
    for key, value in schema.items():
        if key in ("title", *_TABLE_ONLY) or (key == "default" and value is None):
            continue
        if key == "properties":
            tidy[key] = {name: _tidy(field) for name, field in value.items()}
        else:
            tidy[key] = _tidy(value)
    return tidy


if __name__ == "__main__":
    print(schema_text(), end="")
