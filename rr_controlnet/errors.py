"""Exception types. Library code raises these; only the CLI turns them into messages and exit codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class RrControlnetError(Exception):
    """Base class of every error this package raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest, located as precisely as the YAML allows."""

    file: str
    line: int | None
    where: str  # "item 'cat' (#3)", "defaults", "model", or "" for the top level
    message: str

    def __str__(self) -> str:
        location = f"{self.file}:{self.line}" if self.line else self.file
        return f"{location}: {self.where}: {self.message}" if self.where else f"{location}: {self.message}"


class ManifestError(RrControlnetError):
    """A manifest has one or more problems; all of them are listed."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class DuplicateKeysError(ManifestError):
    """A YAML document that reads, but repeats keys: `data` holds it (later values win), so that the rest
    of the manifest can be checked too."""

    def __init__(self, problems: list[Problem], data: Any):
        super().__init__(problems)
        self.data = data


class UsageError(RrControlnetError):
    """Options that cannot go together, or that this situation does not allow."""


class ModelLoadError(RrControlnetError):
    """A model could not be loaded (missing weights, unsafe format, wrong folder)."""


class WeightsUnavailable(ModelLoadError):
    """Hub weights neither in the cache nor downloadable from here: offline, or the hub out of reach."""

    def __init__(self, reason: str, missing: list[tuple[str, str]], advice: str = ""):
        self.reason = reason
        self.missing = list(missing)  # (label, repo id) of each missing repo
        names = ", ".join(f"{label} {repo!r}" for label, repo in self.missing)
        super().__init__(f"not available on this machine ({reason}): {names}" + (f". {advice}" if advice else ""))


class DeviceError(RrControlnetError):
    """The requested device or dtype is not usable on this machine."""


class ClusterError(RrControlnetError):
    """A Ray cluster that cannot be reached or joined."""


class Interrupted(RrControlnetError):
    """A stop (Ctrl-C, SIGTERM) before the batch began, while joining a Ray cluster: nothing was generated, and
    the output folder is as it was. `signal_name` is the signal's ("SIGINT"), None for a stop of another kind."""

    def __init__(self, message: str, signal_name: str | None = None):
        super().__init__(message)
        self.signal_name = signal_name


class OutputFolderError(RrControlnetError):
    """The output folder cannot be used: not creatable, not writable, or in use by another run."""


class OutputWriteError(RrControlnetError):
    """A file could not be written completely (a full disk, an I/O error)."""

    def __init__(self, message: str, disk_full: bool = False):
        super().__init__(message)
        self.disk_full = disk_full


class ItemFailed(RrControlnetError):
    """One item could not be generated; the batch goes on without it."""


def one_line(exc: BaseException) -> str:
    """An item's failure in one line: our own errors say what went wrong in words; others are named by
    their type."""
    text = str(exc).strip().splitlines()
    if isinstance(exc, RrControlnetError) and text:
        return text[0]
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class CompareError(RrControlnetError):
    """A folder that cannot be compared (not an output of this tool, unreadable)."""


class ScoringStopped(RrControlnetError):
    """The batch was asked to stop while an output was being scored."""
