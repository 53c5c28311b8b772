"""Model weights: which repos and files a model needs, what the cache holds of them, downloads with visible progress.

    repos = hub_repos(spec)                                  # the hub repos a model loads (local paths need none)
    weights = ensure_weights(repos, "fp16", DownloadDisplay())   # cached, or downloaded now with the hub's bars
    weights[0].snapshot                                      # the folder loading reads

The files are the ones a diffusers pipeline reads: model_index.json, each component's config and
safetensors weights (the fp16 files where a half-precision run can read them), tokenizer and scheduler
files; never other variants, pickles, ONNX or Flax files. A repo the cache holds completely is used as it
is, without asking the hub. While weights load, transformers' and diffusers' own chatter is kept quiet
(quiet_library_logging); the hub's download bars stay ours to show. huggingface_hub, transformers and
diffusers are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final

from rr_controlnet.errors import ModelLoadError, WeightsUnavailable
from rr_controlnet.presets import built_weights
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
UNLOADED_COMPONENTS: Final = {"sd15": ("safety_checker", "feature_extractor"), "sdxl": ()}
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


@dataclass(frozen=True)
class DownloadDisplay:
    """How downloads show on stderr: the hub's own bars (True: always, False: never, None: when stderr is a
    terminal), and `log`, which hears one line before downloading and one per finished repo."""

    bars: bool | None = None
    log: Callable[[str], None] | None = None

    def say(self, message: str) -> None:
        (self.log or _to_stderr)(message)

    def shows_bars(self) -> bool:
        return sys.stderr.isatty() if self.bars is None else self.bars


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- where things are -------------------------------------------------------------------------------


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def is_hub_id(source: str) -> bool:
    """A hub repo id, not a local path (the manifest makes those absolute) nor a single weights file."""
    path = Path(source)
    return not path.is_absolute() and not path.exists() and path.suffix.lower() not in WEIGHT_SUFFIXES


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
                weights = RepoWeights(repo, None, None, {}, problem=_hub_failure(exc))
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


def _hub_failure(exc: Exception) -> str:
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    if isinstance(exc, GatedRepoError):
        return "gated: accept its terms on the hub, then log in with `hf auth login`"
    if isinstance(exc, RepositoryNotFoundError):
        return f"not found on {_endpoint()} (private or gated repos need `hf auth login`)"
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return f"{_endpoint()} answered {exc.response.status_code}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{_endpoint()} cannot be reached: {text}"


# --- getting them -------------------------------------------------------------------------------------


def ensure_weights(repos: Sequence[HubRepo], dtype_name: str, display: DownloadDisplay) -> list[RepoWeights]:
    """Each repo's files for a run in `dtype_name`, complete in the cache: downloaded now where missing, after
    one line naming what comes and with the hub's bars as `display` says.

    Raises WeightsUnavailable naming every repo that is missing when offline or the hub is out of reach, and
    ModelLoadError for repos the hub does not have (or that have no safetensors weights)."""
    weights = plan_weights(repos, dtype_name, ask_hub=False)
    if all(entry.complete for entry in weights):
        return weights
    reason = "offline" if offline() else hub_unreachable()
    if reason is not None:
        raise WeightsUnavailable(
            reason, [(entry.repo.label, entry.repo.repo) for entry in weights if not entry.complete]
        )
    weights = [entry if entry.complete else plan_weights([entry.repo], dtype_name, True)[0] for entry in weights]
    failed = [entry for entry in weights if entry.problem]
    if failed:
        raise ModelLoadError("; ".join(f"{e.repo.label} {e.repo.repo!r}: {e.problem}" for e in failed))
    download(weights, display)
    weights = [entry if entry.complete else plan_weights([entry.repo], dtype_name, False)[0] for entry in weights]
    incomplete = [entry for entry in weights if not entry.complete]
    if incomplete:  # the repo changed between listing and downloading, or files went missing at once
        raise ModelLoadError(
            "; ".join(f"{e.repo.label} {e.repo.repo!r}: downloaded, yet incomplete" for e in incomplete)
        )
    return weights


def download(weights: Sequence[RepoWeights], display: DownloadDisplay) -> None:
    """Download the missing files of `weights` (planned from the hub's listing) into the Hugging Face cache."""
    from huggingface_hub import constants, snapshot_download

    wanted = [entry for entry in weights if entry.missing]
    if not wanted:
        return
    sizes = [entry.bytes_missing for entry in wanted]
    total = human_size(sum(size or 0 for size in sizes)) if None not in sizes else "size not listed"
    listed = ", ".join(f"{e.repo.repo} ({e.weights_name} weights, {human_size(e.bytes_missing)})" for e in wanted)
    display.say(f"downloading {total} into {constants.HF_HUB_CACHE}: {listed}")
    bars = _bar_class(display.shows_bars())
    for entry in wanted:
        started = time.monotonic()
        try:
            snapshot_download(
                entry.repo.repo, allow_patterns=[glob.escape(name) for name in entry.sizes], tqdm_class=bars
            )
        except Exception as exc:  # noqa: BLE001 - a failed download is named with its repo; what came stays cached
            message = f"downloading {entry.repo.label} {entry.repo.repo!r} failed: {_hub_failure(exc)}"
            raise ModelLoadError(message) from None
        finally:
            bars.close_all()
        seconds = time.monotonic() - started
        display.say(f"downloaded {entry.repo.repo}: {human_size(entry.bytes_missing)} in {seconds:.1f} s")


def _bar_class(shown: bool) -> Any:
    """huggingface_hub's bar class, shown or hidden whatever the stream (its own rule draws some bars even into
    logs); its global switch and HF_HUB_DISABLE_PROGRESS_BARS still turn them off. `close_all()` ends the bars
    snapshot_download leaves open, which would otherwise be drawn again, late, when the process exits."""
    from huggingface_hub.utils import tqdm as hub_tqdm

    class DownloadBars(hub_tqdm):
        opened: ClassVar[list[Any]] = []

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = not shown
            super().__init__(*args, **kwargs)
            DownloadBars.opened.append(self)

        @classmethod
        def close_all(cls) -> None:
            while cls.opened:
                cls.opened.pop().close()

    return DownloadBars


# --- the libraries' other output ---------------------------------------------------------------------


class _QuietLibraries:
    """Counts the blocks that want the libraries quiet: the first to start silences them, the last to end
    restores what it found, so nested and concurrent blocks (batches in threads) leave nothing behind."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.restore = contextlib.ExitStack()

    @contextlib.contextmanager
    def block(self) -> Iterator[None]:
        with self.lock:
            if self.depth == 0:
                self.restore = _silence_libraries()
            self.depth += 1
        try:
            yield
        finally:
            with self.lock:
                self.depth -= 1
                if self.depth == 0:
                    self.restore.close()


_QUIET = _QuietLibraries()


def quiet_library_logging() -> contextlib.AbstractContextManager[None]:
    """For the block: transformers' and diffusers' advisory warnings and loading bars off the user's terminal.
    huggingface_hub's download bars are left as they are (downloads say what they do); every setting changed
    is restored when the block ends."""
    return _QUIET.block()


def _silence_libraries() -> contextlib.ExitStack:
    """Silence transformers and diffusers; the returned stack restores what was there."""
    import warnings

    import diffusers
    import transformers
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    restore = contextlib.ExitStack()
    restore.enter_context(warnings.catch_warnings())
    warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*", category=UserWarning)
    hub_bars = not are_progress_bars_disabled()

    def hub_bars_as_found() -> None:
        # transformers' bar switch flips huggingface_hub's global one too: put the hub's back as it was.
        if hub_bars == are_progress_bars_disabled():
            (enable_progress_bars if hub_bars else disable_progress_bars)()

    restore.callback(hub_bars_as_found)  # last, after the libraries' own switches are restored
    for library in (transformers.utils.logging, diffusers.utils.logging):
        level, bars = library.get_verbosity(), library.is_progress_bar_enabled()
        restore.callback(library.enable_progress_bar if bars else library.disable_progress_bar)
        restore.callback(library.set_verbosity, level)
        library.set_verbosity_error()
        library.disable_progress_bar()
    hub_bars_as_found()
    return restore


# --- whole models -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchOutcome:
    """What fetching did for one model, and the line that said so."""

    model: str
    came_now: bool  # something was downloaded or built now
    line: str


def random_model_folder(name: str) -> Path:
    """The diffusers folder of a tiny model, built and saved on first use."""
    from rr_controlnet.random_models import save_random_pipeline

    folder = models_cache_dir() / "models" / name
    if not (folder / PIPELINE_INDEX).exists():
        try:
            with quiet_library_logging():
                save_random_pipeline(name, folder)
        except FileExistsError:
            pass  # another process saved it first; its rename made it complete
    return folder


def fetch_models(
    named: Sequence[tuple[str, ModelSpec]], dtype_name: str, display: DownloadDisplay
) -> list[FetchOutcome]:
    """Get each named model's weights onto this machine, for runs in `dtype_name`: hub repos into the Hugging
    Face cache (one notice for all, the hub's bars), tiny models built into their folder. Says one line per
    model. Raises as ensure_weights does, before anything is downloaded."""
    repos = {_repo_key(repo): repo for model, spec in named for repo in hub_repos(spec, f"{model} ")}
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


def model_statuses(named: Sequence[tuple[str, ModelSpec]], dtype_name: str) -> list[ComponentStatus]:
    """Each component of each named model as this machine holds it. For repos the cache lacks, the hub (when
    in reach) tells which weights would load and how much fetching them downloads."""
    repos = [repo for _, spec in named for repo in hub_repos(spec)]
    planned = plan_weights(repos, dtype_name, ask_hub=False)
    if not all(entry.complete for entry in planned) and not offline() and hub_unreachable() is None:
        planned = [entry if entry.complete else plan_weights([entry.repo], dtype_name, True)[0] for entry in planned]
    by_repo = {entry.repo.repo: entry for entry in planned}
    return [row for model, spec in named for row in _component_rows(model, spec, dtype_name, by_repo)]


def _component_rows(
    model: str, spec: ModelSpec, dtype_name: str, planned: dict[str, RepoWeights]
) -> list[ComponentStatus]:
    built = built_weights(spec)
    if built == "random":
        return [ComponentStatus(model, "all", "built in memory when loaded", "random", "-", None, None, None)]
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
            rows.append(
                ComponentStatus(
                    model, component, source, "hub", entry.weights_name, entry.complete, entry.bytes_cached, to_fetch
                )
            )
        elif source:
            local = Path(source)
            weights = (variant_for(_names_in(local), dtype_name) or "full") if local.is_dir() else "-"
            rows.append(
                ComponentStatus(model, component, source, "local", weights, local.exists(), _bytes_in(local), None)
            )
    return rows


def models_table(rows: Sequence[ComponentStatus]) -> str:
    """The rows as an aligned text table: model, component, source, weights, cached, size."""
    header = ("MODEL", "COMPONENT", "SOURCE", "WEIGHTS", "CACHED", "SIZE")
    lines = [header] + [
        (row.model, row.component, row.source, row.weights, _yes_no(row.cached), _size_text(row)) for row in rows
    ]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _yes_no(cached: bool | None) -> str:
    return "-" if cached is None else "yes" if cached else "no"


def _size_text(row: ComponentStatus) -> str:
    if row.cached:
        return human_size(row.bytes_cached)
    if row.cached is None or row.kind != "hub":
        return "-"
    return "?" if row.bytes_to_fetch is None else f"{human_size(row.bytes_to_fetch)} to fetch"


def human_size(count: int | None) -> str:
    """Bytes in decimal units, as the hub lists file sizes: 512 B, 3.4 MB, 6.9 GB; "?" when not known."""
    if count is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _names_in(folder: Path) -> list[str]:
    return [path.relative_to(folder).as_posix() for path in folder.rglob("*.safetensors")]


def _bytes_in(path: Path) -> int | None:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return None
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
