"""Whole models on this machine: `rr-controlnet fetch` (every repo a model loads, into the cache; tiny
models built) and `rr-controlnet models` (each component, what would load, what is cached, its size).

    print(models_table(model_statuses([("sdxl", model_spec_from_preset("sdxl"))], "fp16")))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rr_controlnet.models.downloads import DownloadDisplay, ensure_weights, quiet_library_logging
from rr_controlnet.models.hub import (
    PIPELINE_INDEX,
    HubRepo,
    RepoWeights,
    hub_repos,
    hub_unreachable,
    human_size,
    is_hub_id,
    models_cache_dir,
    offline,
    plan_weights,
    variant_for,
)
from rr_controlnet.models.large_configs import CONTROLNET_PARAMETERS, RANDOM_TWINS
from rr_controlnet.models.presets import GATED_REPOS, PRESETS, built_weights
from rr_controlnet.models.random_transformer_models import save_pipeline
from rr_controlnet.spec import ModelSpec


@dataclass(frozen=True)
class ComponentStatus:
    """One component of a model as this machine holds it, for `rr-controlnet models`."""

    model: str  # a preset name, or a manifest as given
    component: str  # "base", "controlnet", "vae"; "all" for the models built in code
    source: str  # a hub repo id, a local path, or where a built model is kept
    kind: str  # "hub", "local", "tiny" (built once into the rr-controlnet cache), "random" (built in memory)
    weights: str  # "fp16", "full", "?" (not known), "-" (not applicable)
    cached: bool | None  # on this machine; None where nothing is kept (random models)
    bytes_cached: int | None
    bytes_to_fetch: int | None  # what fetching it would download (None: not known or nothing)
    unknown_because: str | None = None  # why the hub was not asked what fetching would download
    parameters: int | None = None  # a preset's ControlNet's, counted from its published config


@dataclass(frozen=True)
class FetchOutcome:
    """What fetching did for one model, and the line that said so."""

    model: str
    came_now: bool  # something was downloaded or built now
    line: str


def random_model_folder(name: str) -> Path:
    """The diffusers folder of a tiny model, built and saved on first use."""

    folder = models_cache_dir() / "models" / name
    if not (folder / PIPELINE_INDEX).exists():
        try:
            with quiet_library_logging():
                save_pipeline(name, folder)
        except FileExistsError:
            pass  # another process saved it first; its rename made it complete
    return folder


def fetch_models(
    named: Sequence[tuple[str, ModelSpec]],
    dtype_name: str,
    display: DownloadDisplay,
    unit_repos: Sequence[tuple[str, HubRepo]] = (),
) -> list[FetchOutcome]:
    """Get each named model's weights onto this machine, for runs in `dtype_name`: hub repos into the Hugging
    Face cache (one notice for all, the hub's bars), tiny models built into their folder; and the control
    units' ControlNets `unit_repos` names (a label for each). Says one line per model and per unit repo.
    Raises as ensure_weights does, before anything is downloaded."""
    repos = {_repo_key(repo): repo for model, spec in named for repo in hub_repos(spec, f"{model} ")}
    repos.update({_repo_key(repo): repo for _, repo in unit_repos if _repo_key(repo) not in repos})
    before = {_repo_key(entry.repo): entry.complete for entry in plan_weights(list(repos.values()), dtype_name, False)}
    fetched = {_repo_key(entry.repo): entry for entry in ensure_weights(list(repos.values()), dtype_name, display)}
    outcomes = []
    for model, spec in named:
        built = built_weights(spec)
        if built == "random":
            outcome = FetchOutcome(model, False, f"{model}: built in memory when a batch loads it, nothing to fetch")
        elif built == "tiny":
            already = (models_cache_dir() / "models" / spec.name / PIPELINE_INDEX).is_file()
            folder = random_model_folder(spec.name)
            outcome = FetchOutcome(
                model, not already, f"{model}: {'already built in' if already else 'built into'} {folder}"
            )
        else:
            keys = [_repo_key(repo) for repo in hub_repos(spec)]
            outcome = _hub_outcome(model, [fetched[key] for key in keys], any(not before[key] for key in keys))
        display.say(outcome.line)
        outcomes.append(outcome)
    for label, repo in unit_repos:
        key = _repo_key(repo)
        outcome = _hub_outcome(label, [fetched[key]], not before[key])
        display.say(outcome.line)
        outcomes.append(outcome)
    return outcomes


def _repo_key(repo: HubRepo) -> tuple:
    return repo.repo, repo.pipeline, repo.passed


def _hub_outcome(model: str, weights: list[RepoWeights], came_now: bool) -> FetchOutcome:
    if not weights:
        return FetchOutcome(model, False, f"{model}: local files only, nothing to fetch")
    kinds = " and ".join(sorted({entry.weights_name for entry in weights}))
    size = human_size(sum(entry.bytes_cached for entry in weights))
    held = f"{len(weights)} repo{'s' if len(weights) != 1 else ''}, {kinds} weights, {size}"
    if came_now:
        return FetchOutcome(model, True, f"{model}: ready in the cache ({held})")
    return FetchOutcome(model, False, f"{model}: already in the cache ({held}), nothing downloaded")


def model_statuses(
    named: Sequence[tuple[str, ModelSpec]], dtype_name: str, unit_repos: Sequence[tuple[str, HubRepo]] = ()
) -> list[ComponentStatus]:
    """Each component of each named model as this machine holds it, and the hub ControlNets of the control
    units each model's manifest names (`unit_repos`: model name, repo). For repos the cache lacks, the hub
    (when in reach) tells which weights would load and how much fetching them downloads."""
    repos = [repo for _, spec in named for repo in hub_repos(spec)] + [repo for _, repo in unit_repos]
    planned = plan_weights(repos, dtype_name, ask_hub=False)
    unknown_because = None
    if not all(entry.complete for entry in planned):
        unknown_because = "HF_HUB_OFFLINE is set" if offline() else hub_unreachable()
        if unknown_because is None:
            asked = (entry if entry.complete else plan_weights([entry.repo], dtype_name, True)[0] for entry in planned)
            planned = list(asked)
    by_repo = {entry.repo.repo: entry for entry in planned}
    rows = [row for model, spec in named for row in _component_rows(model, spec, dtype_name, by_repo)]
    for model, repo in unit_repos:
        entry = by_repo[repo.repo]
        to_fetch = None if entry.complete else entry.bytes_missing
        weights = (entry.weights_name, entry.complete, entry.bytes_cached, to_fetch)
        rows.append(ComponentStatus(model, repo.label, repo.repo, "hub", *weights))
    return [replace(row, unknown_because=unknown_because) if _size_text(row) == "?" else row for row in rows]


def _component_rows(
    model: str, spec: ModelSpec, dtype_name: str, planned: dict[str, RepoWeights]
) -> list[ComponentStatus]:
    built = built_weights(spec)
    if built == "random":  # its ControlNet is its published twin's
        parameters = CONTROLNET_PARAMETERS.get(RANDOM_TWINS.get(spec.name, ""))
        source = "built in memory when loaded"
        return [ComponentStatus(model, "all", source, "random", "-", None, None, None, parameters=parameters)]
    if built == "tiny":
        folder = models_cache_dir() / "models" / spec.name
        cached = (folder / PIPELINE_INDEX).is_file()
        return [
            ComponentStatus(model, "all", str(folder), "tiny", "-", cached, _bytes_in(folder) if cached else None, None)
        ]
    rows = []
    for component, source in (("base", spec.base), ("controlnet", spec.controlnet), ("vae", spec.vae)):
        entry = planned.get(source) if source and is_hub_id(source) else None
        if entry is not None:
            to_fetch = None if entry.complete else entry.bytes_missing
            parameters = _preset_controlnet_parameters(spec) if component == "controlnet" else None
            rows.append(
                ComponentStatus(
                    model,
                    component,
                    source,
                    "hub",
                    entry.weights_name,
                    entry.complete,
                    entry.bytes_cached,
                    to_fetch,
                    parameters=parameters,
                )
            )
        elif source:
            local = Path(source)
            weights = (variant_for(_names_in(local), dtype_name) or "full") if local.is_dir() else "-"
            rows.append(
                ComponentStatus(model, component, source, "local", weights, local.exists(), _bytes_in(local), None)
            )
    return rows


def _preset_controlnet_parameters(spec: ModelSpec) -> int | None:
    preset = PRESETS.get(spec.name)
    return CONTROLNET_PARAMETERS.get(spec.name) if preset and preset.controlnet == spec.controlnet else None


def models_table(rows: Sequence[ComponentStatus]) -> str:
    """The rows as an aligned text table: model, component, source, weights, cached, size; then what each
    preset's ControlNet weighs, computed from its config."""
    header = ("MODEL", "COMPONENT", "SOURCE", "WEIGHTS", "CACHED", "SIZE")
    lines = [header] + [
        (row.model, row.component, _source_text(row), row.weights, _yes_no(row.cached), _size_text(row)) for row in rows
    ]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    table = "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines
    )
    reasons = sorted({row.unknown_because or "the hub did not say" for row in rows if _size_text(row) == "?"})
    weighed = [
        f"{row.model} {human_size(2 * row.parameters)} ({row.parameters / 1e9:.2f} B parameters)"
        for row in rows
        if row.parameters is not None
    ]
    notes = [f"? size not known: {reason}" for reason in reasons]
    if weighed:
        notes.append(f"ControlNets in fp16/bf16, computed from their configs: {', '.join(weighed)}")
    return "\n".join([table, *notes])


def _source_text(row: ComponentStatus) -> str:
    return f"{row.source} (gated)" if row.kind == "hub" and row.source in GATED_REPOS else row.source


def _yes_no(cached: bool | None) -> str:
    return "-" if cached is None else "yes" if cached else "no"


def _size_text(row: ComponentStatus) -> str:
    if row.cached:
        return human_size(row.bytes_cached)
    if row.cached is None or row.kind != "hub":
        return "-"
    return "?" if row.bytes_to_fetch is None else f"{human_size(row.bytes_to_fetch)} to fetch"


def _names_in(folder: Path) -> list[str]:
    return [path.relative_to(folder).as_posix() for path in folder.rglob("*.safetensors")]


def _bytes_in(path: Path) -> int | None:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return None
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
