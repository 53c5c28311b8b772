"""The package's layout, as docs/development.md draws it: floors that imports only go down, no circles, no
module of ours imported inside a function, and every module listed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rr_controlnet"
DEVELOPMENT = PACKAGE.parent / "docs" / "development.md"


def module_name(path: Path) -> str:
    """rr_controlnet/run/ray/engine.py -> run/ray/engine; a package's __init__ -> the package."""
    relative = path.relative_to(PACKAGE).with_suffix("")
    if relative.name == "__init__":
        return "" if relative.parent == Path() else relative.parent.as_posix()
    return relative.as_posix()


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def own_imports(path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """The modules of ours `path` imports at its top (TYPE_CHECKING blocks left out), and those it imports
    inside functions."""
    top, inside = set(), set()

    def visit(node: ast.AST, in_function: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, True, typing_only)
            elif isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                visit(child, in_function, True)
            elif isinstance(child, ast.ImportFrom | ast.Import):
                for name in imported(child, known):
                    if not typing_only:
                        (inside if in_function else top).add(name)
            else:
                visit(child, in_function, typing_only)

    visit(ast.parse(path.read_text(encoding="utf-8")), False, False)
    return top, inside


def imported(node: ast.ImportFrom | ast.Import, known: set[str]) -> list[str]:
    """Our modules an import statement names: `from rr_controlnet.run import batch` names run/batch,
    `from rr_controlnet.outputs import OutputFolder` names outputs (the package)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif node.module and node.level == 0:
        names = [node.module]
        submodules = [f"{node.module}.{alias.name}" for alias in node.names]
        names = [name for name in submodules if as_module(name) in known] or names
    else:
        return []
    return [as_module(name) for name in names if as_module(name) in known]


def as_module(dotted: str) -> str | None:
    """rr_controlnet.run.batch -> run/batch; None for anything not ours."""
    if dotted != "rr_controlnet" and not dotted.startswith("rr_controlnet."):
        return None
    return dotted.removeprefix("rr_controlnet").removeprefix(".").replace(".", "/")


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: own_imports(path, set(found))[0] - {name} for name, path in found.items()}


def floors() -> dict[str, int]:
    """docs/development.md's table: floor -> the packages (and root modules) on it."""
    table = {}
    for floor, names in re.findall(r"^\| (\d+) \| (.+) \|$", DEVELOPMENT.read_text(encoding="utf-8"), re.M):
        for name in re.findall(r"`([\w/]+)`", names):
            table[name] = int(floor)
    return table


def floor_of(module: str, table: dict[str, int]) -> int:
    return table[module.split("/")[0]] if module else 0  # the package's own __init__: its version


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return found


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_one() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_runs_up_a_floor() -> None:
    table = floors()
    upward = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in targets
        if floor_of(target, table) > floor_of(module, table)
    ]
    assert upward == []


def test_no_module_of_ours_is_imported_inside_a_function() -> None:
    found = modules()
    inside = {name: sorted(own_imports(path, set(found))[1]) for name, path in found.items()}
    assert {name: targets for name, targets in inside.items() if targets} == {}


def test_every_package_has_a_floor_and_the_docs_list_every_module() -> None:
    table = floors()
    found = modules()
    assert {name.split("/")[0] for name in found if name} <= set(table)
    text = DEVELOPMENT.read_text(encoding="utf-8")
    listed = set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+)`", text))
    packages = {name for name, path in found.items() if path.name == "__init__.py"}
    assert sorted(set(found) - packages - listed) == []


def test_modules_stay_small() -> None:
    """About 400 lines a module (the CLI's click declarations aside)."""
    long = {name: lines for name, path in modules().items() if (lines := len(path.read_text().splitlines())) > 430}
    assert set(long) <= {"cli", "review/adherence"}, long


def package_imports() -> set[tuple[str, str]]:
    """Which package imports which: the import graph seen from the floors' table (the package's own
    __init__, which holds the version, is `rr_controlnet`)."""

    def package(module: str) -> str:
        return module.split("/")[0] if module else "rr_controlnet"

    return {
        (package(module), package(target))
        for module, targets in import_graph().items()
        if module
        for target in targets
        if package(module) != package(target)
    }


def drawn_imports() -> set[tuple[str, str]]:
    """The arrows of the mermaid drawing in docs/development.md, by the names its nodes show."""
    drawing = re.search(r"```mermaid\n(.*?)```", DEVELOPMENT.read_text(encoding="utf-8"), re.S).group(1)
    shown = dict(re.findall(r"(\w+)\[\"([\w ()]+?)(?: \(its version\))?\"\]", drawing))
    arrows = re.findall(r"^\s*(\w+)(?:\[.*?\])? --> (\w+)(?:\[.*?\])?$", drawing, re.M)
    return {(shown.get(source, source), shown.get(target, target)) for source, target in arrows}


def test_the_drawing_of_the_imports_is_the_code() -> None:
    assert drawn_imports() == package_imports()


def test_every_arrow_of_the_drawing_points_down() -> None:
    table = floors() | {"rr_controlnet": 0}
    assert [arrow for arrow in drawn_imports() if table[arrow[1]] > table[arrow[0]]] == []


def drawing() -> str:
    """The mermaid drawing of package_imports(), as docs/development.md holds it."""
    shown = {"__main__": 'main["__main__"]', "rr_controlnet": 'version["rr_controlnet (its version)"]'}
    arrows = [f"    {shown.get(a, a)} --> {shown.get(b, b)}" for a, b in sorted(package_imports())]
    return "\n".join(["```mermaid", "flowchart TD", *arrows, "```"])


if __name__ == "__main__":  # `python tests/test_layout.py` redraws the drawing in docs/development.md
    text = DEVELOPMENT.read_text(encoding="utf-8")
    DEVELOPMENT.write_text(re.sub(r"```mermaid\n.*?```", lambda _: drawing(), text, count=1, flags=re.S))
