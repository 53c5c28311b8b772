"""The README's two commands stay true: CI runs exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)]


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


def test_readme_field_table_is_the_models() -> None:
    from rr_controlnet.fields import field_table

    readme = (ROOT / "README.md").read_text()
    assert field_table() in readme, (
        "regenerate README's table: python -c 'from rr_controlnet.fields import field_table; print(field_table())'"
    )
