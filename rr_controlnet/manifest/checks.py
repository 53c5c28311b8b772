"""A YAML mapping checked against the fields' models: every problem worded, located and kept.

pydantic validates; this module turns its errors into the manifest's own messages (`steps must be an
integer 1..1000, got 0`, with the file, line, item and field), keeps the values that are right so that
rules across fields can still be checked, and flattens them (canny.low as canny_low, size as width
and height).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from rr_controlnet.errors import Problem
from rr_controlnet.manifest.fields import (
    CANNY_KEYS,
    ID_PATTERN,
    ITEM_ONLY_KEYS,
    ORDERED_PAIRS,
    PARAM_KEYS,
    Canny,
    ItemFields,
    expectation,
)
from rr_controlnet.manifest.yaml_source import line_of, shown
from rr_controlnet.outputs.names import reserved_id_reason

# Ids name files (`.<id>.rrd.<random>.partial` while written): well inside file systems' 255 bytes.
MAX_ID_LENGTH: Final = 128
_ID = re.compile(ID_PATTERN)

# What a field expects when its type alone says too little.
EXPECTS: Final = {
    "image": "a file path",
    "device": "one of auto, cpu, mps, cuda, cuda:N",
    **{key: "a hub id or a path" for key in ("base", "controlnet", "vae", "config")},
    "type": "a word in lower case (letters, digits, _ and -): canny, depth, pose, ...",
}


class Problems:
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


class FieldValues:
    """Parameters a mapping sets, flat (canny.low as canny_low, size as width and height), with their lines."""

    def __init__(self, values: dict[str, Any] | None = None, lines: dict[str, int | None] | None = None):
        self.values = values or {}
        self.lines = lines or {}


def checked_values(model: type[BaseModel], raw: Mapping, where: str, problems: Problems) -> FieldValues:
    """Validate a defaults or item mapping; report each problem and keep the values that are right."""
    # An item's id, any sweep and any control units are checked on their own.
    apart = {"sweep", "id", "controls"} & set(model.model_fields)
    data = {key: value for key, value in raw.items() if key not in apart}
    validated = validated_model(model, data, raw, where, "", problems)
    if validated is None:
        return FieldValues()
    values, lines = {}, {}
    for name in validated.model_fields_set - {*ITEM_ONLY_KEYS, "sweep", "controls"}:
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
    return FieldValues(values, lines)


def value_problems(model: type[BaseModel], values: Mapping[str, Any], owner: str = "") -> list[str]:
    """What is wrong with `values` for these fields, worded as a manifest's problems are (`steps must be
    an integer 1..1000, got 0`), each prefixed with `owner.` when given: for the Python API's options."""
    problems = Problems(Path(owner or "values"))
    validated_model(model, dict(values), values, "", "", problems)
    return [f"{owner}.{problem.message}" if owner else problem.message for problem in problems.problems]


def validated_model(
    model: type[BaseModel], data: dict, raw: Mapping, where: str, prefix: str, problems: Problems
) -> BaseModel | None:
    """`model` over the fields of `data` that are right; each wrong one reported and left out."""
    reported: set[Any] = set()  # a field whose wrong value is left out is not missing as well
    for _ in range(len(data) + 1):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                if error["type"] == "missing" and error["loc"][:1] and error["loc"][0] in reported:
                    continue
                line, message = described(model, raw, error, prefix)
                problems.add(line, where, message)
                reported.add((error["loc"] or ("size",))[0])
                data = without(data, error["loc"] or ("size",))
    return None


def without(data: dict, loc: tuple) -> dict:
    """`data` without the value at `loc`: a key, or a key of a nested mapping (canny.low)."""
    head, *rest = loc
    if rest and isinstance(data.get(head), Mapping):
        return {**data, head: without(dict(data[head]), tuple(rest))}
    return {key: value for key, value in data.items() if key != head}


def described(model: type[BaseModel], raw: Mapping, error: dict, prefix: str) -> tuple[int | None, str]:
    """(line, message) for one pydantic error, worded like every other problem of a manifest."""
    loc, kind = error["loc"], error["type"]
    if not loc:  # a rule across fields of the mapping: size with width or height
        return line_of(raw, "size"), error["msg"]
    owner, name, container, dotted = model, str(loc[0]), raw, f"{prefix}{loc[0]}"
    if len(loc) > 1 and loc[0] == "canny":
        owner, name, container, dotted = Canny, str(loc[1]), raw.get("canny"), f"{prefix}canny.{loc[1]}"
    value = error.get("input")
    if kind == "extra_forbidden" and model is not ItemFields and name in ITEM_ONLY_KEYS and not prefix:
        return line_of(container, name), f"{name} is each item's own: set it on the items, not in defaults"
    if kind == "extra_forbidden":
        allowed = tuple(f"canny.{key}" for key in CANNY_KEYS) if owner is Canny else keys_of(model, prefix)
        return line_of(container, name), unknown_key_message(dotted, allowed)
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
    expects = EXPECTS.get(name) or expectation(owner, name)
    return line_of(container, name), f"{dotted} must be {expects}, got {shown(value)}"


def keys_of(model: type[BaseModel], prefix: str) -> tuple[str, ...]:
    if model is ItemFields:
        return ITEM_ONLY_KEYS + PARAM_KEYS
    return tuple(f"{prefix}{key}" for key in model.model_fields)


def unknown_key_message(key: Any, allowed: tuple[str, ...]) -> str:
    """`unknown key 'x'` with the closest allowed key, or all of them. Keys are compared without the
    dotted prefix they share (`sweep.`), which would make every one of them look alike."""
    message = f"unknown key {shown(key)}"
    text = str(key)
    shared = ""
    for pieces in zip(*(name.split(".")[:-1] for name in (text, *allowed)), strict=False):
        if len(set(pieces)) > 1:
            break
        shared += f"{pieces[0]}."
    bare = {name[len(shared) :]: name for name in allowed}
    close = difflib.get_close_matches(text[len(shared) :], list(bare), n=1, cutoff=0.6)
    return f"{message} (did you mean {bare[close[0]]!r}?)" if close else f"{message}; known keys: {', '.join(allowed)}"


def check_unknown_keys(raw: Mapping, allowed: tuple[str, ...], where: str, problems: Problems) -> None:
    for key in raw:
        if key not in allowed:
            problems.add(line_of(raw, key), where, unknown_key_message(key, allowed))


def kind_of(value: Any) -> str:
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


def check_order(
    merged: dict[str, Any],
    lines: dict[str, int | None],
    item_line: int | None,
    where: str,
    problems: Problems,
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


def id_problem(item_id: Any) -> str | None:
    """What keeps an id from naming the item's files everywhere, or None."""
    if not isinstance(item_id, str) or not _ID.match(item_id) or item_id in (".", ".."):
        return f"must use only letters, digits, '_', '.' and '-' (and not be '.' or '..'), got {shown(item_id)}"
    if len(item_id) > MAX_ID_LENGTH:
        return f"is {len(item_id)} characters long, at most {MAX_ID_LENGTH} (it names the item's files)"
    if item_id.startswith("."):
        return f"{shown(item_id)} must not start with '.' (its files would be hidden)"
    reason = reserved_id_reason(item_id)
    return f"{shown(item_id)} {reason}; choose another id" if reason else None


def json_object(path: Path) -> dict[str, Any]:
    """A JSON file's top-level mapping (a model folder's config.json, model_index.json); empty when the file
    is missing, unreadable or holds something else."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}
