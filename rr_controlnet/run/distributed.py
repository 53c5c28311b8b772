"""One manifest across many processes: shards, torchrun/accelerate ranks, and merging their results.

Items are split round-robin in manifest order, so every process can tell which items are its own
without talking to the others. Each process writes its own items' files and a shard summary into the
shared output folder; `review.summarize_outputs` (run by rank 0, or by `rr-controlnet summarize`) merges
them into the batch's summary.json.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from rr_controlnet.spec import Shard


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
