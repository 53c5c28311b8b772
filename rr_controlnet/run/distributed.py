"""One manifest across many processes: shards, torchrun/accelerate ranks, and merging their results.

Items are split round-robin in manifest order, so every process can tell which items are its own
without talking to the others. Each process writes its own items' files and a shard summary into the
shared output folder; `review.summarize_outputs` (run by rank 0, or by `rr-controlnet summarize`) merges
them into the batch's summary.json.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

SHARD_PATTERN: Final = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def owns(self, position: int) -> bool:
        """Whether the item at this 1-based manifest position belongs to this shard."""
        return (position - 1) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`I/N` with 0 <= I < N, as in `--shard 0/4`."""
    match = SHARD_PATTERN.match(text.strip())
    if not match:
        raise ValueError(f"expected I/N such as 0/4, got {text!r}")
    index, count = int(match[1]), int(match[2])
    if count < 1:
        raise ValueError(f"the number of shards must be at least 1, got {text!r}")
    if not 0 <= index < count:
        raise ValueError(f"the shard index must be 0..{max(count - 1, 0)} for {count} shards, got {text!r}")
    return Shard(index, count)


@dataclass(frozen=True)
class LaunchedProcess:
    """What torchrun or `accelerate launch` tell a process about itself."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.world_size)

    @property
    def is_coordinator(self) -> bool:
        return self.rank == 0


def launched_process(environ: Mapping[str, str] = os.environ) -> LaunchedProcess | None:
    """The rank of this process under a launcher, or None when it runs alone."""
    world_size = int(environ.get("WORLD_SIZE", "1") or 1)
    if world_size <= 1:
        return None
    rank = int(environ.get("RANK", "0"))
    return LaunchedProcess(rank=rank, world_size=world_size, local_rank=int(environ.get("LOCAL_RANK", rank)))


def device_for(process: LaunchedProcess, requested: str) -> str:
    """cuda:LOCAL_RANK for CUDA processes; CPU processes stay on the CPU."""
    import torch

    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{process.local_rank % torch.cuda.device_count()}"
    return "cpu" if requested == "auto" else requested


class ProcessGroup:
    """torch.distributed over gloo, used only to wait for every rank before rank 0 summarizes."""

    def __init__(self, process: LaunchedProcess):
        self.process = process

    def __enter__(self) -> ProcessGroup:
        import datetime

        import torch.distributed as dist

        if not dist.is_initialized():
            # Items can take long; the barrier waits for the slowest rank's whole share.
            dist.init_process_group(backend="gloo", timeout=datetime.timedelta(hours=24))
        return self

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def __exit__(self, *exc: object) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
