"""Batches past one machine, on Ray: a dynamic queue of items across workers that each load the model once.

    options = BatchOptions(out_dir=Path("out"), engine=RayOptions(workers=2))
    report = run_batch(manifest, options)           # batch.run_batch runs it through RayEngine

The driver (this process) owns the output folder exactly as a single process does: the lock, the
journal, summary.json and the review files. Workers (ray_workers.ItemWorker, one per GPU or per
`workers`) get each item's input image with the call that hands them the item, and send back its
encoded files, which the driver writes and verifies (delivery.deliver); so the folder need exist only
where the driver runs. Each group of items (up to the batch size) goes to whichever worker is free, the costliest first
(ray_queue), so items of very different cost balance themselves and the last to finish are small; while
the queue is long, each worker holds a second group, which it generates while the first one's files are
finished (ray_pool).

This module joins the parts: the cluster (ray_cluster: connecting within a bound, watching it, leaving
it), the workers and the driver's loop (ray_pool), the queue (ray_queue). Faults: a worker that dies (its
process killed, its node lost) is replaced, and the items it held are tried again on another worker, up
to ray_queue.MAX_TRIES tries in all; every earlier try is noted in the item's `retries`, and the item fails with
the reason after the last. An exception inside an item fails that item alone, as in one process, and is
not retried. A model that cannot load on a worker, or a cluster that cannot be joined (or is lost before
any item starts), stops the batch before it starts (exit 2). A cluster lost while items run (the
driver's own node, or the head) stops the batch: finished items are kept, the rest stay pending (exit 1).
A stop (Ctrl-C, SIGTERM, a full disk) kills the workers; unfinished items stay pending for a rerun.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rr_controlnet.errors import DeviceError, UsageError
from rr_controlnet.models.families import FAMILIES
from rr_controlnet.models.loading import Runtime, auto_dtype
from rr_controlnet.models.presets import native_size
from rr_controlnet.recording.layout import batch_properties
from rr_controlnet.run.ray.cluster import ClusterWatch, Connection, import_ray, node_check
from rr_controlnet.run.ray.options import RayOptions
from rr_controlnet.run.ray.pool import JOBS_PER_WORKER, Drive, WorkerPool
from rr_controlnet.run.ray.queue import Queue
from rr_controlnet.run.ray.workers import ItemWorker, RunContext, WorkerSetup
from rr_controlnet.run.signals import keep_stop_handlers

if TYPE_CHECKING:
    from rr_controlnet.models.loading import Runtime, auto_dtype
    from rr_controlnet.run.options import BatchOptions
    from rr_controlnet.run.plan import PlannedItem
    from rr_controlnet.run.progress import Progress
    from rr_controlnet.run.state import BatchState
    from rr_controlnet.spec import Manifest, StopRequest


def cluster_runtime(device: str, dtype: str, gpus: float) -> Runtime:
    """The device and dtype every worker runs with, from the cluster's GPUs (not the driver's)."""

    if device == "auto":
        device = "cuda" if gpus >= 1 else "cpu"
    if device.startswith("cuda:"):
        raise DeviceError(f"--device {device}: under --ray each worker gets a GPU of its own; use --device cuda")
    if device == "cuda" and gpus < 1:
        raise DeviceError("--device cuda: the Ray cluster has no GPUs; use --device cpu with --workers N")
    if device not in ("cuda", "cpu"):
        raise DeviceError(f"--device {device}: Ray workers run on cuda or cpu")
    return Runtime(device=device, dtype_name=auto_dtype(device) if dtype == "auto" else dtype)


def worker_count(requested: int | None, runtime: Runtime, resources: Mapping[str, float]) -> int:
    """--workers, or one per GPU in the cluster."""
    if requested is not None:
        return requested
    if runtime.device == "cpu":
        cpus = int(resources.get("CPU", 0))
        raise UsageError(f"--workers N is needed for CPU workers (the Ray cluster has {cpus} CPUs)")
    return int(resources.get("GPU", 0))


class RayEngine:
    """Runs a batch's items on Ray workers; connects to the cluster on entry (starting a local Ray when no
    address is given), and on exit stops the workers and disconnects, each within a bound."""

    def __init__(self, options: BatchOptions, stop: StopRequest):
        self.options = options
        self.ray_options: RayOptions = options.engine
        self.stop = stop  # a stop while connecting or loading leaves the batch before it starts
        self.ray: Any = None
        self.connection: Connection | None = None
        self.watch: ClusterWatch | None = None
        self.pool: WorkerPool | None = None
        self.runtime: Runtime | None = None
        self.count = 0

    # --- connect ---------------------------------------------------------------------------------

    def __enter__(self) -> RayEngine:
        self.ray = import_ray()
        address = self.ray_options.address or os.environ.get("RAY_ADDRESS") or None
        self.connection = Connection(self.ray, address)
        with keep_stop_handlers():  # Ray's core worker may take SIGTERM for itself as it starts
            facts = self.connection.open(self.stop)
        node_alive = node_check(self.ray, facts.node_id) if facts.node_id else None
        self.watch = ClusterWatch(facts.endpoints, self.connection.subject, node_alive).start()
        try:
            self.runtime = cluster_runtime(self.options.device, self.options.dtype, facts.resources.get("GPU", 0))
            self.count = worker_count(self.ray_options.workers, self.runtime, facts.resources)
            if self.count < 1:
                raise UsageError("the Ray cluster has no GPUs to give workers; use --device cpu with --workers N")
            if address is None and self.connection.owned:
                self._check_local_capacity(facts.resources)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _check_local_capacity(self, resources: Mapping[str, float]) -> None:
        """A local Ray cannot grow: refuse workers it cannot place, rather than wait for them forever."""
        cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
        per_worker = self._cpus_per_worker()
        if self.count * per_worker > cpus or (self.runtime.device == "cuda" and self.count > gpus):
            have = f"{int(cpus)} CPUs" + (f" and {int(gpus)} GPUs" if self.runtime.device == "cuda" else "")
            raise UsageError(
                f"--workers {self.count}: this machine's Ray has {have}, and each worker takes {per_worker} CPU"
                f"{'s' if per_worker > 1 else ''}{' and a GPU' if self.runtime.device == 'cuda' else ''}; "
                "ask for fewer workers or fewer --threads"
            )

    def _cpus_per_worker(self) -> int:
        """A CPU worker takes as many CPUs as it runs threads; a GPU worker, one besides its GPU."""
        return (self.options.threads or 1) if self.runtime.device == "cpu" else 1

    def __exit__(self, *exc_info: Any) -> None:
        """The workers killed and Ray left, within ray_cluster's bounds (shorter once the batch is stopping)."""
        self.watch.close()
        self.connection.close(self.pool.actors() if self.pool else [], self.stop)

    # --- load -------------------------------------------------------------------------------------

    def load(self, manifest: Manifest, log: Callable[[str], None]) -> None:
        """Start the workers; each loads the model. Raises ModelLoadError (or DeviceError) when one cannot,
        ClusterError when the cluster is lost meanwhile, before anything in the output folder changes."""

        options = self.options
        setup = WorkerSetup(
            manifest,
            options.load_request(manifest, self.runtime),
            options.recording,
            options.batch_size,
            options.threads,
        )
        self.pool = WorkerPool(self.ray, lambda index: self._actor(index, setup), self.watch, self.stop, log)
        log(f"ray: starting {self.count} worker{'s' if self.count != 1 else ''} ({self.runtime.device})")
        self.pool.load(self.count)

    def _actor(self, index: int, setup: Any) -> Any:
        """A new worker actor (its model not yet loading)."""

        actor_class = self.ray.remote(ItemWorker).options(
            num_cpus=self._cpus_per_worker(),
            num_gpus=1 if self.runtime.device == "cuda" else 0,
            max_concurrency=JOBS_PER_WORKER,
            max_restarts=0,
            max_task_retries=0,
        )
        return actor_class.remote(index, setup)

    def describe(self) -> dict[str, Any]:
        """For summary.json's run record: the engine and where each worker ran (replacements are added, and
        lost workers marked, as the batch runs)."""
        return {"engine": "ray", "workers": self.pool.records() if self.pool else []}

    # --- run --------------------------------------------------------------------------------------

    def run(
        self,
        state: BatchState,
        manifest: Manifest,
        to_run: list[PlannedItem],
        progress: Progress,
        log: Callable[[str], None],
    ) -> None:
        """Every item through the workers from one queue; each finished item is written and recorded as it
        comes back."""

        if state.stop.requested:  # stopped while the workers loaded
            return
        context = RunContext(
            state.folder.path,
            state.summary.recording_id,
            batch_properties(manifest.path, state.folder.path, time.time_ns()),
        )
        multiple = FAMILIES[manifest.model.family].size_multiple
        queue = Queue(to_run, self.options.batch_size, native_size(manifest.model), log, multiple)

        def workers_changed() -> None:
            with state.lock:
                state.summary.run["workers"] = self.pool.records()

        progress.start(len(to_run))
        try:
            Drive(self.pool, queue, state, context, progress, log, workers_changed).run()
        finally:
            progress.close()
