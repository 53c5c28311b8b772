"""README and docs/ stay true: CI runs exactly the README's test command, every command line names
commands and options that exist, every manifest in them is valid, every link leads somewhere, the field
table is the models', and the layout lists every module."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)]


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.DOTALL)


def command_lines(path: Path) -> list[str]:
    """Every `rr-controlnet ...` line of a document's shell blocks and CI recipes, comments and
    continuations aside."""
    lines = []
    for block in blocks(path, "sh") + blocks(path, "yaml"):
        for line in block.replace("\\\n", " ").splitlines():
            found = re.search(r"(?:^|run: |&& )(rr-controlnet [^#]*)", line.strip())
            if found:
                lines.append(found.group(1).strip())
    return lines


def test_readme_quick_start_has_exactly_two_commands() -> None:
    setup_and_run, tests = quick_start_commands()
    assert "rr-controlnet batch manifests/example.yaml --model tiny-sd15" in setup_and_run
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, tests = quick_start_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ci_lines[-1] == tests


def test_ci_installs_the_cpu_torch_wheel_before_the_project() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert script.index("torch==2.13.0") < script.index("-e '.[test]'")
    assert "ruff check" in script and "ruff format --check" in script


def test_the_docs_field_table_is_the_models() -> None:
    from rr_controlnet.manifest.fields import field_table

    manifest_doc = (ROOT / "docs" / "manifest.md").read_text()
    assert field_table() in manifest_doc, (
        "regenerate docs/manifest.md's table: python -c 'from rr_controlnet.manifest.fields import field_table; "
        "print(field_table())'"
    )


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_every_command_line_names_commands_and_options_that_exist(path: Path) -> None:
    from rr_controlnet.cli import cli

    for line in command_lines(path):
        words = shlex.split(line, comments=True)
        name = next((word for word in words[1:] if not word.startswith("-")), None)
        command = cli.commands.get(name)
        assert command is not None, f"{path.name}: {line!r}: no command {name!r}"
        known = {option for parameter in command.params for option in (*parameter.opts, *parameter.secondary_opts)}
        for word in words[1:]:
            if word.startswith("--"):
                assert word.split("=", 1)[0] in known, f"{path.name}: {line!r}: {command.name} has no {word}"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_every_manifest_and_ci_recipe_in_the_docs_reads(path: Path) -> None:
    from rr_controlnet.manifest.document import parse_manifest

    for block in blocks(path, "yaml"):
        document = yaml.safe_load(block)
        if isinstance(document, dict) and "items" in document:
            parse_manifest(document, ROOT / "manifests" / "example.yaml", check_images=False)
        elif isinstance(document, list):  # a GitHub Actions recipe: steps that run or use something
            assert all({"run", "uses"} & set(step) for step in document), block
        else:
            assert isinstance(document, dict), block  # a part of a manifest (a model, a sweep)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_every_link_leads_somewhere(path: Path) -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", path.read_text()):
        if "://" not in target:
            assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"


def test_the_docs_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = blocks(ROOT / "docs" / "api.md", "python")
    (tmp_path / "manifests").symlink_to(ROOT / "manifests")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/api.md", "exec"), {})
    assert (tmp_path / "api-output" / "summary.json").is_file()
