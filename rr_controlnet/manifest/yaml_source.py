"""YAML in, plain data out, with the line of every mapping, key and list entry kept for messages.

Safe loading only (no tags that build objects). What a hostile or broken file could do is bounded:
every duplicate key is reported, anchors and aliases may not expand to more than a fixed multiple of
the document's own size, and values quoted in messages are shortened.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any, Final

import yaml

from rr_controlnet.errors import DuplicateKeysError, ManifestError, Problem

# Aliases may repeat what a document holds (shared defaults), not multiply it (a "billion laughs").
MAX_EXPANSION_FACTOR: Final = 50
MIN_EXPANSION_LIMIT: Final = 100_000


class _YamlRepr(reprlib.Repr):
    """Python's repr, but scalars spelled as YAML writes them: true, false, null."""

    def repr_bool(self, value: bool, level: int) -> str:
        return "true" if value else "false"

    def repr_NoneType(self, value: None, level: int) -> str:  # noqa: N802 - reprlib's naming: repr_<type name>
        return "null"


def _message_repr() -> reprlib.Repr:
    short = _YamlRepr()  # keyword arguments arrived in Python 3.12
    short.maxlevel, short.maxdict, short.maxlist, short.maxtuple = 2, 4, 4, 4
    short.maxstring = short.maxother = 80
    return short


_SHOWN: Final = _message_repr()


def shown(value: Any) -> str:
    """`repr(value)` cut to a readable length, however large or deeply shared the value is."""
    if isinstance(value, MarkedDict):
        value = dict(value)
    elif isinstance(value, MarkedList):
        value = list(value)
    return _SHOWN.repr(value)


class MarkedDict(dict):
    """A mapping from YAML that remembers where it and each of its keys stand."""

    line: int | None = None
    key_lines: dict[Any, int]


class MarkedList(list):
    """A list from YAML that remembers where it and each of its entries stand."""

    line: int | None = None
    item_lines: list[int]


def line_of(container: Any, key: Any = None) -> int | None:
    """The line of a mapping's key or a list's entry (by index), else of the container itself."""
    if isinstance(container, MarkedDict):
        if key is not None and key in container.key_lines:
            return container.key_lines[key]
        return container.line
    if isinstance(container, MarkedList):
        if isinstance(key, int) and 0 <= key < len(container.item_lines):
            return container.item_lines[key]
        return container.line
    return None


def _syntax_error(exc: yaml.MarkedYAMLError, problem: str) -> tuple[int | None, str]:
    """(line, message) of a YAML syntax error, with both places PyYAML knows: where it gave up and what
    it was reading. The line is where that began when it never ended (an unclosed quote or bracket)."""
    found, began = exc.problem_mark, exc.context_mark
    if "<block end>" in problem or "<block mapping start>" in problem:
        problem += " (check the indentation)"
    if exc.context and began is not None and (found is None or began.line != found.line):
        unclosed = exc.context.startswith("while scanning") or "end of stream" in problem or "flow" in exc.context
        where = f"line {found.line + 1}, column {found.column + 1}" if found is not None else "the end"
        if unclosed:
            what = exc.context.removeprefix("while scanning ").removeprefix("while parsing ")
            message = f"{what} that starts here (column {began.column + 1}) is not closed: {problem} ({where})"
            return began.line + 1, f"YAML syntax error: {message}"
        message = f"{problem}, {exc.context} that starts on line {began.line + 1}"
        return found.line + 1 if found is not None else None, f"YAML syntax error: {message}"
    mark = found or began
    return (mark.line + 1 if mark else None), f"YAML syntax error: {problem}"


class _MarkedLoader(yaml.SafeLoader):
    def __init__(self, stream: Any):
        super().__init__(stream)
        self.duplicates: list[tuple[int, str]] = []

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        distinct, expanded = _node_counts(node)
        limit = max(MIN_EXPANSION_LIMIT, MAX_EXPANSION_FACTOR * distinct)
        if expanded > limit:
            raise yaml.YAMLError(
                f"anchors and aliases expand this document to more than {limit:,} values ({distinct:,} written)"
            )
        return self.construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.append((line, f"duplicate key {shown(key)} (first on line {seen[key]})"))
            else:
                seen[key] = line
        mapping = MarkedDict(super().construct_mapping(node, deep=True))
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = seen
        return mapping

    def construct_sequence(self, node, deep=False):
        sequence = MarkedList(super().construct_sequence(node, deep=True))
        sequence.line = node.start_mark.line + 1
        sequence.item_lines = [child.start_mark.line + 1 for child in node.value]
        return sequence


_MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _MarkedLoader.construct_mapping)
_MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _MarkedLoader.construct_sequence)


def _node_counts(root: yaml.Node) -> tuple[int, int]:
    """(distinct nodes, nodes with every alias expanded), without expanding anything."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack = [root]
    while stack:  # children before parents, iteratively: documents can nest deeply
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = 0
        order.append(node)
        stack.extend(_children(node))
    for node in reversed(order):
        sizes[id(node)] = 1 + sum(sizes[id(child)] for child in _children(node))
    return len(order), sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def read_yaml(path: Path) -> Any:
    """Parse a YAML file safely; raise ManifestError naming the file and line of every problem found."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ManifestError([Problem(name, None, "", "file not found")]) from None
    except IsADirectoryError:
        raise ManifestError([Problem(name, None, "", "is a folder, not a manifest file")]) from None
    except OSError as exc:
        raise ManifestError([Problem(name, None, "", f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        raise ManifestError([Problem(name, line, "", message)]) from None
    loader = _MarkedLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or "invalid YAML"
        if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
            mark = exc.problem_mark or exc.context_mark
            line, problem = (
                mark.line + 1 if mark else None,
                f"tag {problem.split('tag ')[-1]} is not allowed (only plain YAML data)",
            )
        else:
            line, problem = _syntax_error(exc, problem)
        raise ManifestError([Problem(name, line, "", problem)]) from None
    except yaml.YAMLError as exc:
        raise ManifestError([Problem(name, None, "", f"YAML error: {exc}")]) from None
    except RecursionError:
        raise ManifestError([Problem(name, None, "", "YAML nested too deeply to read")]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        problems = [Problem(name, line, "", message) for line, message in sorted(loader.duplicates)]
        raise DuplicateKeysError(problems, data)
    return data
