"""A Ray worker: an actor that loads the model once and generates whatever items the driver sends it.

    worker = ray.remote(ItemWorker).options(num_gpus=1, max_concurrency=2).remote(1, setup)
    report = ray.get(worker.load.remote())                      # WorkerReport: where it runs; or raises
    result = ray.get(worker.run.remote(context, planned, [path], image_bytes))   # GroupResult

It never touches the output folder: each finished item's files travel back, encoded, in the result, and
the driver (ray_engine) writes them. Input images come the same way, as bytes, so a worker needs neither
the driver's disk nor its paths. The class is plain Python; ray_engine makes it an actor, so this module
imports no Ray.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rr_controlnet.models.downloads import DownloadDisplay
from rr_controlnet.models.loading import LoadRequest, Runtime, load_batch_models
from rr_controlnet.outputs import ItemOutcome
from rr_controlnet.recording.layout import RecordingProperties
from rr_controlnet.recording.write import RecordingOptions
from rr_controlnet.run.delivery import FinishedItem
from rr_controlnet.run.plan import PlannedItem
from rr_controlnet.run.runner import GroupRunner
from rr_controlnet.spec import Manifest


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker loads and runs with, sent once as it starts."""

    manifest: Manifest
    load: LoadRequest  # on the cluster's runtime: "cuda" is the worker's own GPU (Ray sets CUDA_VISIBLE_DEVICES)
    recording: RecordingOptions
    batch_size: int = 1
    threads: int | None = None  # torch CPU threads; None: as many as the worker's CPUs (Ray sets OMP_NUM_THREADS)

    @property
    def runtime(self) -> Runtime:
        return self.load.runtime


@dataclass(frozen=True)
class RunContext:
    """The run a group belongs to: what its recordings are named and when the batch started."""

    out_dir: Path  # the driver's folder, as the recordings name it; never written by the worker
    recording_id: str
    properties: RecordingProperties


@dataclass(frozen=True)
class WorkerReport:
    """Where a worker runs, once its model is loaded."""

    index: int
    pid: int
    host: str
    device: str
    device_name: str | None = None  # the GPU's name

    def describe(self) -> str:
        where = f"{self.device} ({self.device_name})" if self.device_name else self.device
        return f"worker {self.index} (pid {self.pid} on {self.host}, {where})"


@dataclass
class GroupResult:
    """What became of a group: finished items with their encoded files, failed or interrupted items'
    outcomes, and the lines the worker would have logged."""

    finished: list[FinishedItem] = field(default_factory=list)
    outcomes: list[ItemOutcome] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


class ItemWorker:
    """One model, loaded once; groups of planned items in, their results out.

    The actor takes two calls at a time (ray_engine sends a second while the queue is long): one
    generates while the other's items are finished (PNG encoded, edges scored, recording closed) on a
    thread of their own, as a single process overlaps them, so the device does not wait for the CPU.
    """

    def __init__(self, index: int, setup: WorkerSetup):
        self.index = index
        self.setup = setup
        self.model: Any = None
        self.preview_decoder: Any = None
        self.runner: Any = None
        self.context: RunContext | None = None
        self.generating = threading.Lock()  # one call generates at a time
        self.finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rr-controlnet-finish")
        self.kept: dict[str, FinishedItem] = {}  # finished items, by id, until their call returns them
        self.lines: list[str] = []  # what the worker would have logged, until a call returns it
        self.held = threading.Lock()  # guards kept and lines

    def load(self) -> WorkerReport:
        """Load the model (weights missing from this node's cache are downloaded first); raises
        ModelLoadError or DeviceError, which fail the whole batch."""

        setup = self.setup
        if setup.threads:
            import torch

            torch.set_num_threads(setup.threads)
        self.model, self.preview_decoder = load_batch_models(setup.load, DownloadDisplay(bars=False, log=self._log))
        device_name = None
        if setup.runtime.device.startswith("cuda"):
            import torch

            device_name = torch.cuda.get_device_name(setup.runtime.device)
        return WorkerReport(self.index, os.getpid(), socket.gethostname(), setup.runtime.device, device_name)

    def run(
        self, context: RunContext, planned: Sequence[PlannedItem], image_paths: Sequence[Path], *images: bytes
    ) -> GroupResult:
        """Generate and record the items, in groups of at most the batch size; `images` are the bytes of
        `image_paths`, sent with the call."""
        finishing: list[Future] = []
        outcomes: list[ItemOutcome] = []
        with self.generating:
            runner = self._runner(context)
            runner.image_data = dict(zip(image_paths, images, strict=True))
            runner.finisher = _Collecting(self.finisher, finishing)
            for group in runner.prepared_groups(planned, self.setup.batch_size):
                outcomes += [group] if isinstance(group, ItemOutcome) else runner.run_group(group)
        outcomes += [future.result() for future in finishing]  # each finish returns its item's outcome
        result = GroupResult()
        with self.held:
            result.log, self.lines = self.lines, []
            for outcome in outcomes:
                finished = self.kept.pop(outcome.id, None)
                if finished is not None:
                    result.finished.append(finished)
                else:
                    result.outcomes.append(outcome)
        return result

    def _runner(self, context: RunContext) -> Any:
        """The group runner for this run, made once (its recording streams are reused item to item)."""

        if self.runner is None or self.context != context:
            if self.runner is not None:
                self.runner.close()
            self.runner = GroupRunner(
                self.model,
                context.out_dir,
                context.recording_id,
                self.setup.manifest.items,
                self.setup.recording,
                log=self._log,
                preview_decoder=self.preview_decoder,
                properties=context.properties,
                deliver=self._keep,
            )
            self.context = context
        return self.runner

    def _keep(self, finished: FinishedItem) -> ItemOutcome:
        """Where the runner delivers a finished item: kept for the call that made it to return."""
        with self.held:
            self.kept[finished.outcome.id] = finished
        return finished.outcome

    def _log(self, line: str) -> None:
        with self.held:
            self.lines.append(line)


class _Collecting(Executor):
    """The worker's finishing thread, keeping the futures of one call's items."""

    def __init__(self, pool: Executor, futures: list[Future]):
        self.pool = pool
        self.futures = futures

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future = self.pool.submit(fn, *args, **kwargs)
        self.futures.append(future)
        return future
