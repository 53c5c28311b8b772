"""Where and how wide a batch runs on Ray (the driver's choice; nothing here imports Ray)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rr_controlnet.errors import UsageError
from rr_controlnet.run.options import live_refused


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a batch runs on Ray; checked on construction (UsageError)."""

    name: ClassVar[str] = "ray"
    streams_live: ClassVar[bool] = False  # the driver writes what workers made: files only
    address: str | None = None  # HOST:PORT, ray://HOST:PORT or "auto"; None: RAY_ADDRESS, else a local Ray
    workers: int | None = None  # None: one per GPU in the cluster (required where it has none)

    def __post_init__(self) -> None:
        problems = []
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            problems.append(f"RayOptions.address must be a Ray address such as 10.0.0.5:6379, got {self.address!r}")
        workers = self.workers
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            problems.append(f"RayOptions.workers must be a whole number of at least 1, got {workers!r}")
        if problems:
            raise UsageError("; ".join(problems))

    def problems(self, options: Any) -> list[str]:
        problems = []
        if options.shard is not None:
            problems.append("--ray hands items out to its workers itself: it cannot be combined with --shard")
        if options.recording.live_url is not None or options.recording.mirror is not None:
            problems.append(live_refused(self.name))
        return problems
