"""Getting model weights: what a run lacks downloaded into the Hugging Face cache, saying what comes, with the
hub's own bars; and the model libraries' other chatter kept quiet while they load.

    weights = ensure_weights(hub_repos(spec), "fp16", DownloadDisplay())   # cached, or downloaded now
    with quiet_library_logging():                                          # every setting restored after
        pipe = load(...)

huggingface_hub, transformers and diffusers are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import glob
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rr_controlnet.errors import ModelLoadError, WeightsUnavailable
from rr_controlnet.models.hub import (
    HubRepo,
    RepoWeights,
    hub_failure,
    hub_unreachable,
    human_size,
    offline,
    plan_weights,
)


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
            message = f"downloading {entry.repo.label} {entry.repo.repo!r} failed: {hub_failure(exc)}"
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
    # FluxControlNetModel (diffusers 0.42) builds the FluxPosEmbed it deprecates itself: nothing the user can change.
    warnings.filterwarnings("ignore", message=".*FluxPosEmbed.*", category=FutureWarning)
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
