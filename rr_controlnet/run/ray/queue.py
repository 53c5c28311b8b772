"""Which items a Ray worker gets next: the batch's items in the groups one process makes, the costliest group
first, and each group's tries on workers that died.

    queue = Queue(to_run, batch_size=2, native=512, log=print)   # every input image read once, for its size
    job = queue.take()                                            # the costliest group left
    worker.run.remote(context, job.planned, *queue.images_for(job))   # the job's image bytes go with it
    failed = queue.retry(job, "worker 1 died", MAX_TRIES)         # back at the front, or failed outcomes

A job's input images travel as the bytes of its call, which Ray passes (through its object store where
they are large) and forgets once the call is done: the driver keeps no object of its own in the store
(ray.put), whose loss with a node would have Ray end the driver's process at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from rr_controlnet.control_maps import map_paths, units_batch_key
from rr_controlnet.generation.generate import batch_key, batch_runs
from rr_controlnet.images import SIZE_MULTIPLE, oriented_size, target_size
from rr_controlnet.run.runner import failed_outcome as failed

if TYPE_CHECKING:
    from rr_controlnet.outputs import ItemOutcome
    from rr_controlnet.run.plan import PlannedItem

MAX_TRIES: Final = 3  # an item is tried this many times at most, each on a worker that then died


@dataclass
class Job:
    """A group of items for one worker, and the tries it has had on workers that died."""

    planned: list[PlannedItem]
    retries: list[str] = field(default_factory=list)


class Queue:
    """Items waiting for a worker, in the groups a single process makes (generate.batch_runs), the costliest group
    first (so that the last to finish are small); each input image read once here for its size (sweep variants
    share theirs), and again as each job that needs it is sent.
    """

    def __init__(
        self,
        to_run: Sequence[PlannedItem],
        batch_size: int,
        native: int,
        log: Callable[[str], None],
        multiple: int = SIZE_MULTIPLE,
    ):

        self.log = log
        image_sizes: dict[Path, tuple[int, int] | None] = {}
        for planned in to_run:
            path = planned.item.image
            if path not in image_sizes:
                try:
                    image_sizes[path] = oriented_size(path.read_bytes())
                except OSError as exc:  # the item fails on its worker, saying why
                    log(f"item {planned.item.id!r}: cannot read {path}: {exc.strerror or exc}")
                    image_sizes[path] = None
        self.readable = {path for path, size in image_sizes.items() if size is not None}
        sizes = {p.item.id: generation_size(p, image_sizes[p.item.image], native, multiple) for p in to_run}
        groups = list(batch_runs(to_run, batch_size, lambda p: _batch_key(p, sizes[p.item.id])))
        groups.sort(key=lambda group: -sum(estimated_cost(p, sizes[p.item.id], native) for p in group))  # stable
        self.jobs = deque(Job(group) for group in groups)

    def __len__(self) -> int:
        return len(self.jobs)

    def take(self) -> Job:
        return self.jobs.popleft()

    def images_for(self, job: Job) -> list[Any]:
        """The arguments a worker's run takes after the items: the image paths, then their bytes (the input
        images, then the control units' maps). An image that cannot be read now is left out: its items fail on
        the worker, saying why."""
        paths, images = [], []
        wanted = [p.item.image for p in job.planned if p.item.image in self.readable]
        wanted += [path for p in job.planned for path in map_paths(p.item.controls)]
        for path in dict.fromkeys(wanted):
            try:
                images.append(path.read_bytes())
            except OSError as exc:
                self.log(f"cannot read {path}: {exc.strerror or exc}")
                continue
            paths.append(path)
        return [paths, *images]

    def retry(self, job: Job, reason: str, max_tries: int) -> list[ItemOutcome]:
        """Put a dead worker's job back at the front; once it has had max_tries, its items' failed outcomes."""
        job.retries.append(reason)
        if len(job.retries) < max_tries:
            self.jobs.appendleft(job)
            return []
        failure = f"tried {len(job.retries)} times, and each time its worker died; the last: {reason}"
        return [replace(failed_outcome(planned, failure), retries=list(job.retries)) for planned in job.planned]


def generation_size(
    planned: PlannedItem, image_size: tuple[int, int] | None, native: int, multiple: int = SIZE_MULTIPLE
) -> tuple[int, int] | None:
    """The (width, height) the item is generated at, as the runner derives it; None when its image cannot
    be read here."""

    params = planned.item.params
    return target_size(image_size, params.width, params.height, native, multiple) if image_size is not None else None


def _batch_key(planned: PlannedItem, size: tuple[int, int] | None) -> tuple | None:
    """generate.batch_key, or None for an item whose image cannot be read here (it fails on its worker)."""

    if size is None:
        return None
    return batch_key(planned.item.params, size) + units_batch_key(planned.item.controls)


def estimated_cost(planned: PlannedItem, size: tuple[int, int] | None, native: int) -> int:
    """Steps x pixels (the model's native square where the size is unknown): near enough to hand the
    largest items out first."""
    width, height = size or (native, native)
    return planned.item.params.steps * width * height


def failed_outcome(planned: PlannedItem, reason: str) -> ItemOutcome:
    """The item failed, for `reason`, without a second spent on it here."""

    return failed(planned, reason, 0.0)
