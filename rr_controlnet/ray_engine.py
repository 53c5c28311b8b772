"""Batches past one machine, on Ray: a dynamic queue of items across workers that each load the model once.

    options = BatchOptions(out_dir=Path("out"), ray=RayOptions(workers=2))
    report = run_batch(manifest, options)           # batch.run_batch runs it through RayEngine

The driver (this process) owns the output folder exactly as a single process does: the lock, the
journal, summary.json and the review files. Workers (ray_workers.ItemWorker, one per GPU or per
`workers`) get each item's input image through Ray's object store and send back its encoded files,
which the driver writes and verifies (delivery.deliver); so the folder need exist only where the driver
runs. Each group of items (up to the batch size) goes to whichever worker is free, the costliest first
(steps x pixels), so items of very different cost balance themselves and the last to finish are small;
while the queue is long, each worker holds a second group, which it generates while the first one's
files are finished.

Faults: a worker that dies (its process killed, its node lost) is replaced, and the items it held are
tried again on another worker, up to MAX_TRIES tries in all; every earlier try is noted in the item's
`retries`, and the item fails with the reason after the last. An exception inside an item fails that
item alone, as in one process, and is not retried. A model that cannot load on a worker stops the batch
before it starts (exit 2). A stop (Ctrl-C, SIGTERM, a full disk) kills the workers; unfinished items stay
pending for a rerun.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from rr_controlnet.errors import ClusterError, DeviceError, ModelLoadError, RrControlnetError, UsageError, one_line
from rr_controlnet.signals import keep_stop_handlers

if TYPE_CHECKING:
    from rr_controlnet.batch import BatchOptions, BatchState
    from rr_controlnet.loading import Runtime
    from rr_controlnet.plan import PlannedItem
    from rr_controlnet.progress import Progress
    from rr_controlnet.ray_workers import WorkerReport
    from rr_controlnet.spec import Manifest, StopRequest

MAX_TRIES: Final = 3  # an item is tried this many times at most, each on a worker that then died
JOBS_PER_WORKER: Final = 2  # one generating, one being finished (ray_workers.ItemWorker overlaps them)
INSTALL_HINT: Final = "pip install 'rr-controlnet[ray]'"
HEAD_PORT: Final = 6379  # `ray start --head`'s default
CLIENT_PORT: Final = 10001  # the Ray Client server's, for ray:// addresses
PROBE_SECONDS: Final = 5.0
RATES_EVERY: Final = 1.0  # seconds between updates of the workers' rates on the progress bar
WAIT_NOTE_SECONDS: Final = 60.0  # how long workers may take to load before the driver says it still waits


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a batch runs on Ray; checked on construction (UsageError)."""

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


# --- the cluster ------------------------------------------------------------------------------------


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(f"--ray needs Ray, an optional extra: {INSTALL_HINT}") from None
    return ray


def probe_address(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Fail at once, in one line, when nothing answers at a cluster address (Ray itself would retry for
    minutes). "auto" and "local" are Ray's to resolve."""
    if address in ("auto", "local"):
        return
    client = address.startswith("ray://")
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        host, port = address.removeprefix("ray://"), str(CLIENT_PORT if client else HEAD_PORT)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(
            f"cannot reach a Ray cluster at {address}: {reason} (start one there with `ray start --head`, "
            "or leave out --ray-address and RAY_ADDRESS for a local Ray)"
        ) from None


def connect_failure(address: str | None, exc: BaseException, environ: Mapping[str, str] = os.environ) -> str:
    """Why joining a cluster failed, with what to do: a cluster started by `ray start --head` (Ray 2.59 and
    later) asks for a token, which Ray sends to an address given by hand only when told to."""
    message = f"cannot connect to the Ray cluster at {address or 'a new local Ray'}: {one_line(exc)}"
    if address not in (None, "auto", "local") and "RAY_AUTH_MODE" not in environ:
        message += (
            "; if the cluster uses token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (from "
            "`ray get-auth-token` on its head), or run on the head with --ray-address auto"
        )
    return message


def cluster_runtime(device: str, dtype: str, gpus: float) -> Runtime:
    """The device and dtype every worker runs with, from the cluster's GPUs (not the driver's)."""
    from rr_controlnet.loading import Runtime

    if device == "auto":
        device = "cuda" if gpus >= 1 else "cpu"
    if device.startswith("cuda:"):
        raise DeviceError(f"--device {device}: under --ray each worker gets a GPU of its own; use --device cuda")
    if device == "cuda" and gpus < 1:
        raise DeviceError("--device cuda: the Ray cluster has no GPUs; use --device cpu with --workers N")
    if device not in ("cuda", "cpu"):
        raise DeviceError(f"--device {device}: Ray workers run on cuda or cpu")
    if dtype == "auto":
        dtype = "fp32" if device == "cpu" else "fp16"
    return Runtime(device=device, dtype_name=dtype)


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
    address is given), and on exit stops the workers and disconnects."""

    def __init__(self, options: BatchOptions, stop: StopRequest):
        self.options = options
        self.ray_options: RayOptions = options.ray
        self.stop = stop  # a stop while workers load leaves the batch before it starts
        self.ray: Any = None
        self.connected_here = False
        self.runtime: Runtime | None = None
        self.workers: dict[int, Any] = {}  # index -> actor handle
        self.reports: dict[int, WorkerReport] = {}
        self.setup: Any = None
        self.next_index = 1

    # --- connect ---------------------------------------------------------------------------------

    def __enter__(self) -> RayEngine:
        self.ray = ray = import_ray()
        address = self.ray_options.address or os.environ.get("RAY_ADDRESS") or None
        if not ray.is_initialized():
            if address is not None:
                probe_address(address)
            settings: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
            if address is None:
                settings["include_dashboard"] = False
            try:
                # "local": a Ray of the batch's own, even where `ray start` left one running (or its address
                # file, after a crash): joining that takes --ray-address auto.
                with keep_stop_handlers():
                    ray.init(address=address or "local", **settings)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ClusterError(connect_failure(address, exc)) from None
            self.connected_here = True
        resources = ray.cluster_resources()
        self.runtime = cluster_runtime(self.options.device, self.options.dtype, resources.get("GPU", 0))
        self.count = worker_count(self.ray_options.workers, self.runtime, resources)
        if self.count < 1:
            raise UsageError("the Ray cluster has no GPUs to give workers; use --device cpu with --workers N")
        if address is None and self.connected_here:
            self._check_local_capacity(resources)
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
        for actor in self.workers.values():
            with contextlib.suppress(Exception):  # a cluster already gone must not hide the batch's own error
                self.ray.kill(actor, no_restart=True)
        self.workers.clear()
        if self.connected_here:
            self.ray.shutdown()

    # --- load -------------------------------------------------------------------------------------

    def load(self, manifest: Manifest, log: Callable[[str], None]) -> None:
        """Start the workers; each loads the model. Raises ModelLoadError (or DeviceError) when one cannot,
        before anything in the output folder changes."""
        from rr_controlnet.ray_workers import WorkerSetup

        options = self.options
        self.setup = WorkerSetup(
            manifest,
            self.runtime,
            options.recording,
            options.batch_size,
            options.threads,
            options.allow_unsafe_weights,
            options.offload,
            options.compile_models,
        )
        log(f"ray: starting {self.count} worker{'s' if self.count != 1 else ''} ({self.runtime.device})")
        starting = [self._start_worker() for _ in range(self.count)]
        loading = {self.workers[index].load.remote(): index for index in starting}
        since = time.monotonic()
        while loading and not self.stop.requested:
            ready, _ = self.ray.wait(list(loading), num_returns=1, timeout=1.0)
            for ref in ready:
                index = loading.pop(ref)
                self.reports[index] = self._loaded(ref, index)
                log(f"ray: {self.reports[index].describe()} ready")
            if not ready and time.monotonic() - since > WAIT_NOTE_SECONDS:
                log(
                    f"ray: still waiting for {len(loading)} worker{'s' if len(loading) != 1 else ''}: loading the "
                    "model (weights download into each node's cache), or waiting for room on the cluster"
                )
                since = time.monotonic()

    def _start_worker(self) -> int:
        """A new worker actor (not yet loaded); its index."""
        from rr_controlnet.ray_workers import ItemWorker

        index, self.next_index = self.next_index, self.next_index + 1
        actor_class = self.ray.remote(ItemWorker).options(
            num_cpus=self._cpus_per_worker(),
            num_gpus=1 if self.runtime.device == "cuda" else 0,
            max_concurrency=JOBS_PER_WORKER,
            max_restarts=0,
            max_task_retries=0,
        )
        self.workers[index] = actor_class.remote(index, self.setup)
        return index

    def _loaded(self, ref: Any, index: int) -> WorkerReport:
        """A worker's report once its model is loaded; its failure, as the batch's error."""
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return self.ray.get(ref)
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, RrControlnetError):
                raise (DeviceError if isinstance(cause, DeviceError) else ModelLoadError)(
                    f"on Ray worker {index}: {cause}"
                ) from None
            raise ModelLoadError(f"Ray worker {index} could not load the model: {one_line(cause)}") from None
        except RayActorError as exc:
            raise ModelLoadError(f"Ray worker {index} died while loading the model: {_death(exc)}") from None

    def describe(self) -> dict[str, Any]:
        """For summary.json's run record: the engine and where each worker ran."""
        return {
            "engine": "ray",
            "workers": [
                {"worker": r.index, "host": r.host, "pid": r.pid, "device": r.device, "device_name": r.device_name}
                for r in self.reports.values()
            ],
        }

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
        from rr_controlnet.layout import batch_properties
        from rr_controlnet.presets import native_size
        from rr_controlnet.ray_workers import RunContext

        context = RunContext(
            state.folder.path,
            state.summary.recording_id,
            batch_properties(manifest.path, state.folder.path, time.time_ns()),
        )
        queue = Queue(self.ray, to_run, self.options.batch_size, native_size(manifest.model), log)
        progress.start(len(to_run))
        rates = WorkerRates(progress)
        try:
            self._drive(state, queue, context, progress, rates, log)
        finally:
            progress.close()

    def _drive(
        self,
        state: BatchState,
        queue: Queue,
        context: Any,
        progress: Progress,
        rates: WorkerRates,
        log: Callable[[str], None],
    ) -> None:
        from ray.exceptions import RayActorError, RayTaskError

        in_flight = dict.fromkeys(self.workers, 0)  # ready workers -> jobs sent and not yet back
        running: dict[Any, tuple[int, Job]] = {}  # a job's result (a ref) -> (its worker, the job)
        loading: dict[Any, int] = {}  # a replacement worker's load (a ref) -> the worker

        def send_jobs() -> None:
            """A job to every free worker; then, while the queue outnumbers the workers, a second one to
            each, to generate while the first one's files are finished. Near the end, jobs wait for a free
            worker rather than queue behind a busy one."""
            for limit in (1, JOBS_PER_WORKER):
                for index in in_flight:
                    while queue and in_flight[index] < limit and (limit == 1 or len(queue) >= len(in_flight)):
                        job = queue.take()
                        rates.begin(index)
                        in_flight[index] += 1
                        worker = self.workers[index]
                        running[worker.run.remote(context, job.planned, *queue.images_for(job))] = (index, job)

        def job_back(index: int) -> None:
            if index in in_flight:  # a result that was ready before its worker died: the worker is gone
                in_flight[index] -= 1

        while (queue or running) and not state.stop.requested:
            send_jobs()
            if not running and not loading:
                state.stop.reason = "every Ray worker was lost, and none could be started in their place"
                break
            ready, _ = self.ray.wait([*running, *loading], num_returns=1, timeout=0.25)
            for ref in ready:
                if ref in loading:
                    index = loading.pop(ref)
                    if self._replacement_ready(ref, index, log):
                        in_flight[index] = 0
                    continue
                index, job = running.pop(ref)
                try:
                    result = self.ray.get(ref)
                except RayActorError as exc:
                    lost = f"{self._name(index)} died: {_death(exc)}"
                    if in_flight.pop(index, None) is not None:  # the first of its jobs to come back
                        log(f"ray: {lost}; its items go to another worker")
                        self.workers.pop(index, None)
                        rates.forget(index)
                        replacement = self._start_worker()
                        loading[self.workers[replacement].load.remote()] = replacement
                    for outcome in queue.retry(job, lost, MAX_TRIES):
                        state.record(outcome)
                        progress.finish_items(1)
                    continue
                except RayTaskError as exc:  # a fault in the worker's own code: the job's items fail, once
                    job_back(index)
                    reason = f"{self._name(index)}: {one_line(exc.cause)}"
                    for planned in job.planned:
                        log(f"item {planned.item.id!r}: failed: {reason}")
                        state.record(_failed(planned, reason))
                    progress.finish_items(len(job.planned))
                    continue
                job_back(index)
                send_jobs()  # the worker's next job starts before this one's files are written
                self._record(state, job, result, log)
                progress.finish_items(len(job.planned))
                rates.add(index, len(job.planned))

    def _replacement_ready(self, ref: Any, index: int, log: Callable[[str], None]) -> bool:
        try:
            self.reports[index] = self._loaded(ref, index)
        except RrControlnetError as exc:
            log(f"ray: {exc}")
            self.workers.pop(index, None)
            return False
        log(f"ray: {self.reports[index].describe()} ready, in place of a lost worker")
        return True

    @staticmethod
    def _record(state: BatchState, job: Job, result: Any, log: Callable[[str], None]) -> None:
        """A job's results into the folder: finished items written and verified, every outcome recorded
        with the job's earlier tries."""
        from rr_controlnet.delivery import deliver

        for line in result.log:
            log(line)
        for finished in result.finished:
            finished.outcome.retries = list(job.retries)
            state.record(deliver(state.folder, finished, state.stop, log))
        for outcome in result.outcomes:
            state.record(replace(outcome, retries=list(job.retries)))

    def _name(self, index: int) -> str:
        report = self.reports.get(index)
        return report.describe() if report is not None else f"worker {index}"


@dataclass
class Job:
    """A group of items for one worker, and the tries it has had on workers that died."""

    planned: list[PlannedItem]
    retries: list[str] = field(default_factory=list)


class Queue:
    """Items waiting for a worker, in the groups a single process makes (generate.batch_runs), the costliest group
    first (so that the last to finish are small); their input images put in the object store once each
    (sweep variants share theirs).
    """

    def __init__(
        self, ray: Any, to_run: Sequence[PlannedItem], batch_size: int, native: int, log: Callable[[str], None]
    ):
        from rr_controlnet.generate import batch_runs
        from rr_controlnet.images import oriented_size

        self.ray = ray
        self.images: dict[Path, Any] = {}
        image_sizes: dict[Path, tuple[int, int] | None] = {}
        for planned in to_run:
            path = planned.item.image
            if path not in image_sizes:
                try:
                    data = path.read_bytes()
                except OSError as exc:  # the item fails on its worker, saying why
                    log(f"item {planned.item.id!r}: cannot read {path}: {exc.strerror or exc}")
                    image_sizes[path] = None
                    continue
                self.images[path] = ray.put(data)
                image_sizes[path] = oriented_size(data)
        sizes = {p.item.id: generation_size(p, image_sizes[p.item.image], native) for p in to_run}
        groups = list(batch_runs(to_run, batch_size, lambda p: _batch_key(p, sizes[p.item.id])))
        groups.sort(key=lambda group: -sum(estimated_cost(p, sizes[p.item.id], native) for p in group))  # stable
        self.jobs = deque(Job(group) for group in groups)

    def __len__(self) -> int:
        return len(self.jobs)

    def take(self) -> Job:
        return self.jobs.popleft()

    def images_for(self, job: Job) -> list[Any]:
        """The arguments a worker's run takes after the items: the image paths, then their bytes (refs that
        Ray resolves as the call starts)."""
        paths = list(dict.fromkeys(p.item.image for p in job.planned if p.item.image in self.images))
        return [paths, *(self.images[path] for path in paths)]

    def retry(self, job: Job, reason: str, max_tries: int) -> list[Any]:
        """Put a dead worker's job back at the front; once it has had max_tries, its items' failed outcomes."""
        job.retries.append(reason)
        if len(job.retries) < max_tries:
            self.jobs.appendleft(job)
            return []
        failure = f"tried {len(job.retries)} times, and each time its worker died; the last: {reason}"
        return [replace(_failed(planned, failure), retries=list(job.retries)) for planned in job.planned]


def generation_size(planned: PlannedItem, image_size: tuple[int, int] | None, native: int) -> tuple[int, int] | None:
    """The (width, height) the item is generated at, as the runner derives it; None when its image cannot
    be read here."""
    from rr_controlnet.images import target_size

    params = planned.item.params
    return target_size(image_size, params.width, params.height, native) if image_size is not None else None


def _batch_key(planned: PlannedItem, size: tuple[int, int] | None) -> tuple | None:
    """generate.batch_key, or None for an item whose image cannot be read here (it fails on its worker)."""
    from rr_controlnet.generate import batch_key

    return batch_key(planned.item.params, size) if size is not None else None


def estimated_cost(planned: PlannedItem, size: tuple[int, int] | None, native: int) -> int:
    """Steps x pixels (the model's native square where the size is unknown): near enough to hand the
    largest items out first."""
    width, height = size or (native, native)
    return planned.item.params.steps * width * height


class WorkerRates:
    """Items per second of each worker since it took its first item, shown beside the items bar."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.started: dict[int, float] = {}
        self.done: dict[int, int] = {}
        self.shown = 0.0

    def begin(self, index: int) -> None:
        self.started.setdefault(index, time.monotonic())

    def add(self, index: int, items: int) -> None:
        if index not in self.started:  # a worker forgotten as lost, whose last result came back after all
            return
        now = time.monotonic()
        self.done[index] = self.done.get(index, 0) + items
        note = getattr(self.progress, "note", None)
        if note is None or now - self.shown < RATES_EVERY:
            return
        self.shown = now
        parts = []
        for worker, count in sorted(self.done.items()):
            seconds = now - self.started[worker]
            parts.append(f"w{worker} {count / seconds:.2f}/s" if seconds > 0 else f"w{worker} {count}")
        note(" ".join(parts))

    def forget(self, index: int) -> None:
        self.started.pop(index, None)
        self.done.pop(index, None)


def _failed(planned: PlannedItem, reason: str) -> Any:
    from rr_controlnet.runner import failed_outcome

    return failed_outcome(planned, reason, 0.0)


def _death(exc: BaseException) -> str:
    """Ray's many-line account of a lost worker, in a few words."""
    if getattr(exc, "preempted", False):
        return "its node was preempted"
    text = " ".join(str(exc).split())
    detail = re.search(r"Worker exit detail: (.*?\.)(?: |$)", text)
    detail = detail or re.search(r"(The actor is dead because .*?\.)", text)
    return detail[1] if detail else one_line(exc)[:200]
