"""Model weights on the hub and in the cache: which repos and files a model needs, and what the cache holds.

    repos = hub_repos(spec)                                  # the hub repos a model loads (local paths need none)
    weights = plan_weights(repos, "fp16", ask_hub=False)     # per repo: its files, which are cached, sizes

The files are the ones a diffusers pipeline reads: model_index.json, each component's config and
safetensors weights (the fp16 files where a half-precision run can read them), tokenizer and scheduler
files; never other variants, pickles, ONNX or Flax files. A repo the cache holds completely is used as it
is, without asking the hub. Getting missing files is downloads.py's; huggingface_hub is imported inside
the functions that need it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rr_controlnet.models.families import FAMILIES
from rr_controlnet.models.presets import built_weights
from rr_controlnet.spec import ModelSpec

# Half-precision copies some repos publish beside the full weights (diffusers' and transformers' `variant`
# naming: diffusion_pytorch_model.fp16.safetensors, model.fp16-00001-of-00002.safetensors).
FP16_WEIGHTS: Final = re.compile(r"\.fp16(-\d+-of-\d+)?\.safetensors$")
# The safetensors weights (and shard indexes) diffusers and transformers read from a model folder.
WEIGHT_FILE: Final = re.compile(r"^(diffusion_pytorch_model|model)(\.fp16)?(-\d{5}-of-\d{5})?\.safetensors$")
WEIGHT_INDEX: Final = re.compile(r"^(diffusion_pytorch_model|model)\.safetensors\.index(\.fp16)?\.json$")
# A folder holding any of these is a model's folder (its config and weights are read), not a tokenizer's.
WEIGHT_SUFFIXES: Final = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".pkl", ".msgpack", ".onnx", ".pb", ".h5")
PIPELINE_INDEX: Final = "model_index.json"
MODEL_CONFIG: Final = "config.json"
# Pipeline components loading never reads from the base repo: SD1.5's safety checker is left out (and with
# it its feature extractor); the ControlNet, and the VAE when the model names one, come from their own repos.
UNLOADED_COMPONENTS: Final = {name: entry.unloaded for name, entry in FAMILIES.items()}
# Without the hub in reach, huggingface_hub retries each missing model for about 30 s: ask once, briefly.
HUB_PROBE_SECONDS: Final = 5.0
HUB_TIMEOUT_SECONDS: Final = 30.0


@dataclass(frozen=True)
class HubRepo:
    """A hub repo a model loads: a pipeline (its model_index.json components less `passed`) or one model."""

    repo: str
    label: str  # how messages name it: "model.base", "sdxl controlnet", "preview decoder"
    pipeline: bool
    passed: tuple[str, ...] = ()  # pipeline components loading supplies itself


@dataclass(frozen=True)
class RepoWeights:
    """The files one run reads from a hub repo, with their listed sizes, and which of them the cache holds."""

    repo: HubRepo
    commit: str | None
    variant: str | None  # "fp16", or None for the full files
    sizes: dict[str, int | None]  # each file loading reads -> its size as listed (None: not listed)
    cached: dict[str, int] = field(default_factory=dict)  # those in the cache -> their size there
    problem: str | None = None  # why the files are not known or cannot load (nothing cached, no safetensors)

    @property
    def missing(self) -> list[str]:
        return [name for name in self.sizes if name not in self.cached]

    @property
    def complete(self) -> bool:
        return self.problem is None and bool(self.sizes) and not self.missing

    @property
    def bytes_missing(self) -> int | None:
        sizes = [self.sizes[name] for name in self.missing]
        return None if self.problem or None in sizes else sum(size or 0 for size in sizes)

    @property
    def bytes_cached(self) -> int:
        return sum(self.cached.values())

    @property
    def snapshot(self) -> Path | None:
        return _snapshot_folder(self.repo.repo, self.commit) if self.commit else None

    @property
    def weights_name(self) -> str:
        """ "fp16" or "full" as tables and notices say it; "?" while the repo's files are not known."""
        if not self.sizes:
            return "?"
        return "fp16" if self.variant == "fp16" else "full"


# --- where things are -------------------------------------------------------------------------------


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def is_hub_id(source: str) -> bool:
    """A hub repo id, not a local path (the manifest makes those absolute) nor a single weights file."""
    path = Path(source)
    return not path.is_absolute() and not path.exists() and path.suffix.lower() not in WEIGHT_SUFFIXES


def is_single_file(source: str) -> bool:
    """Whether a model source is one weights file (safetensors or a pickle) rather than a hub id or a folder."""
    return Path(source).suffix.lower() in (".safetensors", ".ckpt", ".bin", ".pt", ".pth", ".pkl")


def models_cache_dir() -> Path:
    """Where built-in random-weight models are saved once: $RR_CONTROLNET_CACHE or ~/.cache."""
    configured = os.environ.get("RR_CONTROLNET_CACHE")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "rr-controlnet"


def cache_folders() -> dict[str, str]:
    """The folders model weights are kept in: Hugging Face's (HF_HOME, HF_HUB_CACHE) and the built models'."""
    from huggingface_hub import constants

    return {
        "HF_HOME": os.environ.get("HF_HOME") or constants.HF_HOME,
        "HF_HUB_CACHE": str(constants.HF_HUB_CACHE),
        "RR_CONTROLNET_CACHE": str(models_cache_dir()),
    }


def hub_unreachable(timeout: float = HUB_PROBE_SECONDS) -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None when it answers."""
    import urllib.error
    import urllib.request

    endpoint = _endpoint()
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()  # noqa: S310 - the hub's own https endpoint
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, a malformed endpoint
        reason = getattr(exc, "reason", None) or exc
        return f"{endpoint} cannot be reached: {reason}"
    return None


def _endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _snapshot_folder(repo: str, commit: str) -> Path:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model") / "snapshots" / commit


# --- which files --------------------------------------------------------------------------------------


def variant_for(file_names: Iterable[str], dtype_name: str) -> str | None:
    """The weights a run in `dtype_name` reads: "fp16" when it is half precision and the files include fp16
    weights (half the download and reading of the full ones), None for the full files."""
    if dtype_name != "fp16":
        return None
    return "fp16" if any(FP16_WEIGHTS.search(name) for name in file_names) else None


def needed_files(
    file_names: Collection[str], variant: str | None, components: Collection[str] | None
) -> tuple[list[str], list[str]]:
    """The files loading reads from a repo of `file_names`, and the folders that have no safetensors weights
    for it. A pipeline names its `components` (model_index.json's, less those passed in); a single model
    (components None) is its config and weights."""
    if components is None:
        return _folder_files(file_names, "", variant, is_model=True)
    needed, lacking = [PIPELINE_INDEX], []
    for component in sorted(components):
        inside = [name for name in file_names if name.startswith(f"{component}/")]
        is_model = any(name.endswith(WEIGHT_SUFFIXES) for name in inside)
        files, lacks = _folder_files(inside, f"{component}/", variant, is_model)
        needed += files
        lacking += lacks
    return needed, lacking


def _folder_files(
    file_names: Iterable[str], prefix: str, variant: str | None, is_model: bool
) -> tuple[list[str], list[str]]:
    names = [name[len(prefix) :] for name in file_names if name.startswith(prefix)]
    if not is_model:  # a tokenizer, scheduler or feature extractor: every file it keeps
        return sorted(prefix + name for name in names if not name.endswith(WEIGHT_SUFFIXES)), []
    direct = [name for name in names if "/" not in name]
    weights = [name for name in direct if WEIGHT_FILE.match(name) or WEIGHT_INDEX.match(name)]
    half = [name for name in weights if ".fp16" in name]
    chosen = half if variant == "fp16" and half else [name for name in weights if ".fp16" not in name]
    if not chosen:
        return [], [prefix.rstrip("/") or "."]
    config = [MODEL_CONFIG] if MODEL_CONFIG in direct else []
    return [prefix + name for name in config + sorted(chosen)], []


def pipeline_components(model_index: dict[str, Any], passed: Collection[str]) -> list[str]:
    """The components model_index.json lists with a class (not [null, null]), less those passed in."""
    return [
        name
        for name, value in model_index.items()
        if not name.startswith("_") and isinstance(value, list) and value and value[0] and name not in passed
    ]


def hub_repos(spec: ModelSpec, label_prefix: str = "model.") -> list[HubRepo]:
    """The hub repos `spec` loads: its base pipeline (less the components loading supplies) and its ControlNet
    and VAE; local folders and files, and the models built in code, need none."""
    if built_weights(spec) is not None:
        return []
    passed = ("controlnet", *(("vae",) if spec.vae else ()), *UNLOADED_COMPONENTS[spec.family])
    wanted = [(spec.base, "base", True), (spec.controlnet, "controlnet", False), (spec.vae, "vae", False)]
    if FAMILIES[spec.family].denoiser is not None and is_single_file(spec.base):
        # A control model's transformer file: its config repo gives every other component.
        passed, wanted[0] = (*passed, "transformer"), (spec.config, "config", True)
    return [
        HubRepo(source, f"{label_prefix}{component}", pipeline, passed if pipeline else ())
        for source, component, pipeline in wanted
        if source and is_hub_id(source)
    ]


# --- what the cache holds, what the hub lists ---------------------------------------------------------


@dataclass(frozen=True)
class _Listing:
    commit: str
    sizes: dict[str, int | None]
    from_hub: bool


def plan_weights(repos: Sequence[HubRepo], dtype_name: str, ask_hub: bool) -> list[RepoWeights]:
    """What each repo's load reads, and what of it the cache holds: from the cache's own listing of the repo
    where that is complete, otherwise (when `ask_hub`) from the hub's."""
    planned = []
    for repo in repos:
        weights = _plan(repo, _cached_listing(repo.repo), dtype_name)
        if ask_hub and not weights.complete:
            try:
                weights = _plan(repo, _hub_listing(repo.repo), dtype_name)
            except Exception as exc:  # noqa: BLE001 - any failure to list it is reported with the repo's name
                weights = RepoWeights(repo, None, None, {}, problem=hub_failure(exc))
        planned.append(weights)
    return planned


def listed_files(repo: str, ask_hub: bool) -> list[str]:
    """A hub repo's files as the cache lists them, or else (when `ask_hub`) as the hub does; [] when neither can."""
    listing = _cached_listing(repo)
    if listing is None and ask_hub:
        try:
            listing = _hub_listing(repo)
        except Exception:  # noqa: BLE001 - no answer from the hub (network, auth): the loader will say so
            return []
    return list(listing.sizes) if listing else []


def _plan(repo: HubRepo, listing: _Listing | None, dtype_name: str) -> RepoWeights:
    if listing is None:
        return RepoWeights(repo, None, None, {}, problem="not in the cache")
    variant = variant_for(listing.sizes, dtype_name)
    components = None
    if repo.pipeline:
        model_index = _read_model_index(repo.repo, listing)
        if model_index is None:
            return RepoWeights(repo, listing.commit, variant, {}, problem=f"no {PIPELINE_INDEX}")
        components = pipeline_components(model_index, repo.passed)
    names, lacking = needed_files(listing.sizes, variant, components)
    problem = None
    if lacking:
        problem = f"no .safetensors weights in {', '.join(f'{folder}/' for folder in lacking)}"
        if not listing.from_hub:
            problem = "not completely in the cache"  # the hub may list what the cache lacks
    snapshot = _snapshot_folder(repo.repo, listing.commit)
    cached = {name: (snapshot / name).stat().st_size for name in names if (snapshot / name).is_file()}
    return RepoWeights(repo, listing.commit, variant, {name: listing.sizes[name] for name in names}, cached, problem)


def _cached_listing(repo: str) -> _Listing | None:
    """The repo's files as the cache knows them: the listing the hub gave when it was downloaded, or else the
    files its snapshot holds."""
    from huggingface_hub import constants, get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError
    from huggingface_hub.file_download import repo_folder_name

    ref = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model") / "refs" / "main"
    if not ref.is_file():
        return None
    commit = ref.read_text().strip()
    try:
        sizes: dict[str, int | None] = {
            entry.path: entry.size for entry in get_cached_repo_tree(repo, cache_dir=constants.HF_HUB_CACHE)
        }
    except CachedRepoTreeNotFoundError:
        snapshot = _snapshot_folder(repo, commit)
        files = [path for path in snapshot.rglob("*") if path.is_file()]
        sizes = {path.relative_to(snapshot).as_posix(): path.stat().st_size for path in files}
    return _Listing(commit, sizes, from_hub=False)


def _hub_listing(repo: str) -> _Listing:
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo, files_metadata=True, timeout=HUB_TIMEOUT_SECONDS)
    return _Listing(info.sha or "main", {sibling.rfilename: sibling.size for sibling in info.siblings or []}, True)


def _read_model_index(repo: str, listing: _Listing) -> dict[str, Any] | None:
    """model_index.json from the cache, or read from the hub without caching it (listing writes nothing)."""
    if PIPELINE_INDEX not in listing.sizes:
        return None
    cached = _snapshot_folder(repo, listing.commit) / PIPELINE_INDEX
    if cached.is_file():
        return json.loads(cached.read_text())
    if not listing.from_hub:
        return None
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(repo, PIPELINE_INDEX, revision=listing.commit, endpoint=_endpoint())
    response = get_session().get(url, headers=build_hf_headers(), follow_redirects=True, timeout=HUB_TIMEOUT_SECONDS)
    hf_raise_for_status(response)
    return response.json()


def hub_failure(exc: Exception) -> str:
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    if isinstance(exc, GatedRepoError):
        return (
            "gated: accept its terms on its hub page, then give this machine a token of that account "
            "(set HF_TOKEN, or run `hf auth login`)"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return f"not found on {_endpoint()} (private or gated repos need `hf auth login`)"
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return f"{_endpoint()} answered {exc.response.status_code}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{_endpoint()} cannot be reached: {text}"


def human_size(count: int | None) -> str:
    """Bytes in decimal units, as the hub lists file sizes: 512 B, 3.4 MB, 6.9 GB; "?" when not known."""
    if count is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"
