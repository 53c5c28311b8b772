"""What the presets or manifests named on the command line (`fetch`, `models`) load: each target's model,
and the hub repos its control units read."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from rr_controlnet.errors import UsageError
from rr_controlnet.manifest.document import load_manifest
from rr_controlnet.models.control_models import unit_hub_repos
from rr_controlnet.models.hub import HubRepo
from rr_controlnet.models.presets import PRESETS, model_spec_from_preset
from rr_controlnet.spec import ModelSpec


def models_named(targets: Sequence[str]) -> list[tuple[str, ModelSpec]]:
    """Each target with the model it names: a preset, or a manifest's model (read without its images)."""

    named = []
    for target in targets:
        if target in PRESETS:
            named.append((target, model_spec_from_preset(target)))
        elif Path(target).is_file():
            named.append((target, load_manifest(target, check_images=False).model))
        else:
            close = difflib.get_close_matches(target, list(PRESETS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; presets: {', '.join(PRESETS)}"
            raise UsageError(f"{target!r} is neither a model preset nor a manifest file{hint}")
    return named


def units_hub_repos(targets: Sequence[str]) -> list[tuple[str, HubRepo]]:
    """The hub repos of the control units the manifests among `targets` name, each with its manifest."""
    repos = []
    for target in targets:
        if target not in PRESETS and Path(target).is_file():
            manifest = load_manifest(target, check_images=False)
            units = [unit for item in manifest.items for unit in item.controls]
            repos += [(target, repo) for repo in unit_hub_repos(units, manifest.model)]
    return repos


def unit_repos(targets: Sequence[str]) -> list[tuple[str, HubRepo]]:
    """The hub repos of the control units the manifests among `targets` name, each labelled by its manifest."""
    return [(f"{target} {repo.label} {repo.repo}", repo) for target, repo in units_hub_repos(targets)]
