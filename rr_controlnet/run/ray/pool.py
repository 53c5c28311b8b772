"""The batch's Ray workers and the driver's loop over them: workers started and loaded, jobs handed out and
results taken back, the dead replaced, each worker's rate shown.

A small state machine with bounded waits. Each worker is loading, ready or lost. Each turn of the loop
first asks whether to stop (a signal, a full disk) and whether the cluster is still there
(ray_cluster.ClusterWatch), hands a job to every ready worker with room, and then waits at most WAIT_STEP
seconds for a result or a loaded worker. A worker that dies has its jobs tried again elsewhere (up to
ray_queue.MAX_TRIES tries) and is replaced, unless the cluster itself went with it: then the batch stops,
its unfinished items pending.

    pool = WorkerPool(ray, make_actor, watch, stop, log)
    pool.load(2)                                            # stage 3: ModelLoadError, ClusterError
    Drive(pool, queue, state, context, progress, log, on_change).run()    # stage 5
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from rr_controlnet.errors import ClusterError, DeviceError, ModelLoadError, RrControlnetError, one_line
from rr_controlnet.run.delivery import deliver
from rr_controlnet.run.ray.cluster import dismiss
from rr_controlnet.run.ray.queue import MAX_TRIES, Job, Queue, failed_outcome

if TYPE_CHECKING:
    from rr_controlnet.run.progress import Progress
    from rr_controlnet.run.ray.cluster import ClusterWatch
    from rr_controlnet.run.ray.workers import WorkerReport
    from rr_controlnet.run.state import BatchState
    from rr_controlnet.spec import StopRequest

JOBS_PER_WORKER: Final = 2  # one generating, one being finished (ray_workers.ItemWorker overlaps them)
WAIT_STEP: Final = 0.25  # the longest the driver waits for Ray before it looks at its stop and the cluster again
LOAD_STEP: Final = 1.0  # the same, while the workers load
WAIT_NOTE_SECONDS: Final = 60.0  # how long workers may take to load before the driver says it still waits
RATES_EVERY: Final = 1.0  # seconds between updates of the workers' rates on the progress bar
FETCH_SECONDS: Final = 300.0  # for a finished job's files to come to the driver
LOADING, READY, LOST = "loading", "ready", "lost"


class ClusterLost(Exception):
    """The cluster went away (its message says how); the batch stops."""


@dataclass
class Worker:
    """One worker actor, from its start to its loss."""

    index: int
    actor: Any
    load_ref: Any
    state: str = LOADING
    report: WorkerReport | None = None  # once loaded
    jobs: int = 0  # sent and not yet back
    lost: str | None = None  # why it was given up on

    def name(self) -> str:
        return self.report.describe() if self.report is not None else f"worker {self.index}"

    def record(self) -> dict[str, Any]:
        """Where it ran, for summary.json's run record."""
        r = self.report
        record = {"worker": r.index, "host": r.host, "pid": r.pid, "device": r.device, "device_name": r.device_name}
        return record | ({"lost": self.lost} if self.lost else {})


class WorkerPool:
    """The batch's workers, by index; `make_actor(index)` starts one (an actor whose load has not begun)."""

    def __init__(
        self, ray: Any, make_actor: Callable[[int], Any], watch: ClusterWatch, stop: StopRequest, log: Callable
    ):
        self.ray = ray
        self.make_actor = make_actor
        self.watch = watch
        self.stop = stop
        self.log = log
        self.workers: dict[int, Worker] = {}

    def start(self) -> Worker:
        index = len(self.workers) + 1
        with self.calling():
            actor = self.make_actor(index)
            worker = self.workers[index] = Worker(index, actor, actor.load.remote())
        return worker

    @contextlib.contextmanager
    def calling(self) -> Iterator[None]:
        """A block of calls to Ray: an error of Ray's own (its connection to this machine's raylet broken, say)
        raises ClusterLost when the cluster is gone, else goes on as it is."""
        from ray.exceptions import RayActorError, RayTaskError

        try:
            yield
        except (ClusterLost, RrControlnetError, RayActorError, RayTaskError):  # said, or the caller's to handle
            raise
        except Exception:
            self.lost_now()
            raise

    def lost_now(self) -> None:
        """Raise ClusterLost if the cluster is gone, as far as a check made now can tell."""
        if lost := self.watch.check_now():
            raise ClusterLost(lost)

    def wait(self, refs: list[Any], seconds: float) -> list[Any]:
        """Those of `refs` ready within `seconds` (at least one, unless none is); ClusterLost once the cluster is
        gone, whether the watch saw it or Ray did."""
        if self.watch.lost:
            raise ClusterLost(self.watch.lost)
        with self.calling():
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=seconds)
        return ready

    def in_state(self, state: str) -> list[Worker]:
        return [worker for worker in self.workers.values() if worker.state == state]

    def load(self, count: int) -> None:
        """Stage 3: `count` workers, each loading the model, until all are ready or the batch stops. Raises
        ModelLoadError (or DeviceError) when one cannot load, ClusterError when the cluster is lost."""
        try:
            self._load(count)
        except ClusterLost as lost:
            raise ClusterError(f"{lost}, while the workers loaded the model") from None

    def _load(self, count: int) -> None:
        for _ in range(count):
            self.start()
        since = time.monotonic()
        while (loading := {w.load_ref: w for w in self.in_state(LOADING)}) and not self.stop.requested:
            ready = self.wait(list(loading), LOAD_STEP)
            for ref in ready:
                worker = loading[ref]
                self.loaded(worker)
                self.log(f"ray: {worker.name()} ready")
            if not ready and time.monotonic() - since > WAIT_NOTE_SECONDS:
                self.log(
                    f"ray: still waiting for {len(loading)} worker{'s' if len(loading) != 1 else ''}: loading the "
                    "model (weights download into each node's cache), or waiting for room on the cluster"
                )
                since = time.monotonic()

    def loaded(self, worker: Worker) -> None:
        """A worker whose load came back: ready, or its failure raised as the batch's error."""
        from ray.exceptions import RayActorError, RayTaskError

        index = worker.index
        try:
            with self.calling():
                worker.report = self.ray.get(worker.load_ref)
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, RrControlnetError):
                raise (DeviceError if isinstance(cause, DeviceError) else ModelLoadError)(
                    f"on Ray worker {index}: {cause}"
                ) from None
            raise ModelLoadError(f"Ray worker {index} could not load the model: {one_line(cause)}") from None
        except RayActorError as exc:
            self.lost_now()
            raise ModelLoadError(f"Ray worker {index} died while loading the model: {death(exc)}") from None
        worker.state = READY

    def lose(self, worker: Worker, reason: str) -> bool:
        """Give up on a worker (its actor killed, if it lives); whether it was not given up on before."""
        if worker.state == LOST:
            return False
        worker.state, worker.lost = LOST, reason
        dismiss(self.ray, worker.actor)
        return True

    def records(self) -> list[dict[str, Any]]:
        """Every worker that loaded, replacements and lost ones included."""
        return [worker.record() for worker in self.workers.values() if worker.report is not None]

    def actors(self) -> list[Any]:
        return [worker.actor for worker in self.workers.values() if worker.state != LOST]


class Drive:
    """Stage 5 on Ray: every job of the queue through the pool's workers, each outcome recorded as it comes
    back; `on_change` hears when a worker joins or is lost (for summary.json's run record)."""

    def __init__(
        self,
        pool: WorkerPool,
        queue: Queue,
        state: BatchState,
        context: Any,
        progress: Progress,
        log: Callable[[str], None],
        on_change: Callable[[], None],
    ):
        self.pool, self.queue, self.state, self.context = pool, queue, state, context
        self.progress, self.log, self.on_change = progress, log, on_change
        self.rates = WorkerRates(progress)
        self.running: dict[Any, tuple[Worker, Job]] = {}  # a job's result (a ref) -> its worker, the job
        self.idle_since = time.monotonic()  # when the driver last had a job out or took something in

    def run(self) -> None:
        """Turns until every job is back, the batch stops, or the cluster is lost (the batch then stops)."""
        try:
            while self.turn():
                pass
        except ClusterLost as lost:
            self.state.stop.reason = str(lost)  # unfinished items stay pending, with no try counted

    def turn(self) -> bool:
        """One turn of the loop; whether to go on."""
        stop = self.state.stop
        if stop.requested or not (self.queue or self.running):
            return False
        self.send()
        loading = {worker.load_ref: worker for worker in self.pool.in_state(LOADING)}
        if not self.running and not loading:
            stop.reason = "every Ray worker was lost, and none could be started in their place"
            return False
        ready = self.pool.wait([*self.running, *loading], WAIT_STEP)
        for ref in ready:
            if ref in loading:
                self.joined(loading[ref])
            else:
                self.back(ref)
        self.note_waiting(bool(ready))
        return True

    def send(self) -> None:
        """A job to every ready worker without one; then, while the queue outnumbers the workers, a second
        one to each, to generate while the first one's files are finished. Near the end, jobs wait for a free
        worker rather than queue behind a busy one."""
        ready = self.pool.in_state(READY)
        for limit in (1, JOBS_PER_WORKER):
            for worker in ready:
                while self.queue and worker.jobs < limit and (limit == 1 or len(self.queue) >= len(ready)):
                    job = self.queue.take()
                    self.rates.begin(worker.index)
                    worker.jobs += 1
                    with self.pool.calling():
                        result = worker.actor.run.remote(self.context, job.planned, *self.queue.images_for(job))
                    self.running[result] = (worker, job)

    def back(self, ref: Any) -> None:
        """A job's result: its items written and recorded, or failed, or tried again after its worker died
        (or its result was lost on the way)."""
        from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

        worker, job = self.running.pop(ref)
        worker.jobs -= 1
        try:
            with self.pool.calling():
                result = self.pool.ray.get(ref, timeout=FETCH_SECONDS)
        except RayActorError as exc:
            self.died(worker, job, f"{worker.name()} died: {death(exc)}")
            return
        except GetTimeoutError:
            self.died(worker, job, f"{worker.name()}'s results did not come within {FETCH_SECONDS:g} s")
            return
        except RayTaskError as exc:  # a fault in the worker's own code: the job's items fail, once
            reason = f"{worker.name()}: {one_line(exc.cause)}"
            for planned in job.planned:
                self.log(f"item {planned.item.id!r}: failed: {reason}")
                self.state.record(failed_outcome(planned, reason))
            self.progress.finish_items(len(job.planned))
            return
        except RayError as exc:  # its result lost on the way (its node gone since, say)
            self.died(worker, job, f"{worker.name()}'s results were lost: {one_line(exc)[:200]}")
            return
        self.send()  # the worker's next job starts before this one's files are written
        self.record(job, result)
        self.progress.finish_items(len(job.planned))
        self.rates.add(worker.index, len(job.planned))

    def died(self, worker: Worker, job: Job, reason: str) -> None:
        """A job whose worker died (`reason` says how): the batch stops if the cluster went too, else the job is
        tried again elsewhere (or fails, after its last try) and the worker is replaced."""
        self.pool.lost_now()
        if self.pool.lose(worker, reason):  # the first of its jobs to come back
            self.log(f"ray: {reason}; its items go to another worker")
            self.rates.forget(worker.index)
            self.pool.start()
            self.on_change()
        for outcome in self.queue.retry(job, reason, MAX_TRIES):
            self.state.record(outcome)
            self.progress.finish_items(1)

    def joined(self, worker: Worker) -> None:
        """A replacement whose load came back: ready, or lost with its reason logged."""
        try:
            self.pool.loaded(worker)
        except (ModelLoadError, DeviceError) as exc:
            self.log(f"ray: {exc}")
            self.pool.lose(worker, str(exc))
            return
        self.log(f"ray: {worker.name()} ready, in place of a lost worker")
        self.on_change()

    def record(self, job: Job, result: Any) -> None:
        """A job's results into the folder: finished items written and verified, every outcome recorded
        with the job's earlier tries."""

        state = self.state
        for line in result.log:
            self.log(line)
        for finished in result.finished:
            finished.outcome.retries = list(job.retries)
            state.record(deliver(state.folder, finished, state.stop, self.log))
        for outcome in result.outcomes:
            state.record(replace(outcome, retries=list(job.retries)))

    def note_waiting(self, progressed: bool) -> None:
        """Say so when no worker has had a job for a while (replacements waiting for room, or loading)."""
        now = time.monotonic()
        if progressed or self.running:
            self.idle_since = now
        elif now - self.idle_since > WAIT_NOTE_SECONDS:
            self.log("ray: still waiting for a worker in place of the lost ones (loading, or waiting for room)")
            self.idle_since = now


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


def death(exc: BaseException) -> str:
    """Ray's many-line account of a lost worker, in a few words."""
    if getattr(exc, "preempted", False):
        return "its node was preempted"
    text = " ".join(str(exc).split())
    detail = re.search(r"Worker exit detail: (.*?\.)(?: |$)", text)
    detail = detail or re.search(r"(The actor is dead because .*?\.)", text)
    return detail[1] if detail else one_line(exc)[:200]
