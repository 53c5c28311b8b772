"""How a batch runs: BatchOptions, and the options of the engine that generates its items.

    options = BatchOptions(out_dir=Path("out"), engine=RayOptions(workers=2))

Every engine's options say what they refuse in a batch's other options (`problems`) and whether the
engine can stream to a live viewer; engines.ENGINES pairs each options type with its engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from rr_controlnet.errors import UsageError
from rr_controlnet.manifest.checks import value_problems
from rr_controlnet.manifest.fields import RunOptions
from rr_controlnet.models.control_models import unit_hub_repos
from rr_controlnet.models.loading import LoadRequest, Runtime
from rr_controlnet.recording.write import RecordingOptions
from rr_controlnet.spec import Manifest, Shard


def live_refused(engine: str) -> str:
    """Why an engine that writes files only refuses a live viewer."""
    return f"--{engine} writes files only: it cannot stream to a live viewer (--spawn, --connect, --serve-web)"


class EngineOptions(Protocol):
    name: ClassVar[str]  # as summary.json's run record and messages name the engine
    streams_live: ClassVar[bool]  # whether items can stream to a live viewer as they are made

    def problems(self, options: BatchOptions) -> list[str]:
        """What this engine cannot do with the batch's other options, worded for the user."""


@dataclass(frozen=True)
class LocalOptions:
    """The items generated in this process."""

    name: ClassVar[str] = "local"
    streams_live: ClassVar[bool] = True

    def problems(self, options: BatchOptions) -> list[str]:
        return []


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs; checked on construction with the command line's rules (UsageError naming every
    wrong field). Paths may be str or Path."""

    out_dir: Path
    device: str = "auto"
    dtype: str = "auto"
    force: bool = False
    batch_size: int = 1
    allow_unsafe_weights: bool = False
    threads: int | None = None  # torch CPU threads (CPU results depend on it); None leaves torch's choice
    recording: RecordingOptions = field(default_factory=RecordingOptions)  # what is recorded and scored, where it goes
    summary_to: Path | None = None  # a file to append summary.md to, such as $GITHUB_STEP_SUMMARY
    shard: Shard | None = None  # generate only this shard's items
    offload: bool = False  # model CPU offload, for GPUs too small to hold every model
    compile_models: bool = False  # torch.compile the UNet or transformer and the ControlNet (CUDA)
    download_bars: bool | None = None  # huggingface_hub's bars for weights downloaded first; None: on a terminal
    engine: EngineOptions = field(default_factory=LocalOptions)  # where the items run: engines.ENGINES lists them
    ray: Any = None  # the same as engine=RayOptions(...), as earlier versions spelled it

    def __post_init__(self) -> None:

        own = {name: getattr(self, name) for name in ("device", "dtype", "batch_size", "threads")}
        problems = value_problems(RunOptions, own, "BatchOptions")
        for name in ("out_dir", "summary_to"):
            value = getattr(self, name)
            if isinstance(value, str) and value:
                object.__setattr__(self, name, Path(value))
            elif not isinstance(value, Path) and not (value is None and name == "summary_to"):
                problems.append(f"BatchOptions.{name} must be a path (str or Path), got {value!r}")
        flags = ("force", "allow_unsafe_weights", "offload", "compile_models")
        problems += [
            f"BatchOptions.{name} must be True or False, got {getattr(self, name)!r}"
            for name in flags
            if not isinstance(getattr(self, name), bool)
        ]
        if self.download_bars not in (None, True, False):
            problems.append(f"BatchOptions.download_bars must be True, False or None, got {self.download_bars!r}")
        if not isinstance(self.recording, RecordingOptions):
            problems.append(f"BatchOptions.recording must be a RecordingOptions, got {self.recording!r}")
        if self.shard is not None and not isinstance(self.shard, Shard):
            problems.append(f"BatchOptions.shard must be a Shard (spec.parse_shard('I/N')), got {self.shard!r}")
        if self.ray is not None:
            if not isinstance(self.engine, LocalOptions) and self.engine != self.ray:
                problems.append("BatchOptions: give engine or ray, not both")
            object.__setattr__(self, "engine", self.ray)
        if not callable(getattr(self.engine, "problems", None)):
            problems.append(
                f"BatchOptions.engine must be the options of an engine (engines.ENGINES), got {self.engine!r}"
            )
        else:
            problems += self.engine.problems(self)
        if problems:
            raise UsageError("; ".join(problems))

    def load_request(self, manifest: Manifest, runtime: Runtime) -> LoadRequest:
        """What every engine loads for `manifest`, on `runtime`."""
        unit_repos = unit_hub_repos([unit for item in manifest.items for unit in item.controls], manifest.model)
        return LoadRequest(
            manifest.model,
            runtime,
            manifest.scheduler,
            self.recording.preview,
            self.allow_unsafe_weights,
            self.offload,
            self.compile_models,
            unit_repos=tuple(unit_repos),
        )
