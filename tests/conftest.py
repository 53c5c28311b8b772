"""The test session's setup: tiny models built once into a private cache, offline, CI set. Helpers that tests
share are in helpers.py (no test imports this file)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    sys._called_from_test = True  # the CLI re-raises what it does not expect, as simonw/llm's does


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that drives a browser is an integration test, as are whole files that start Ray, viewers or
    benchmarks (their own `pytestmark`): `-m "not integration"` is the fast loop."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny models are built once per session into a private cache, never into the user's home."""
    cache = tmp_path_factory.mktemp("model-cache")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("RR_CONTROLNET_CACHE", str(cache))
    patcher.setenv("HF_HUB_OFFLINE", "1")
    patcher.setenv("CI", "1")
    patcher.setenv("RR_CONTROLNET_DEBUG", "1")  # a CLI a test starts shows a bug's traceback, not one line
    yield cache
    patcher.undo()
