"""Progress bars on stderr: items overall, and steps of the item(s) in flight."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TextIO


class Progress:
    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.items = tqdm(total=total, desc="items", unit="item", disable=not enabled, file=self.stream, position=0)
        self.steps = None

    def start_item(self, label: str, steps: int) -> None:
        if self.steps is not None:
            self.steps.close()
        self.steps = self._tqdm(
            total=steps, desc=label, unit="step", leave=False, disable=not self.enabled, file=self.stream, position=1
        )

    def step(self) -> None:
        if self.steps is not None:
            self.steps.update(1)

    def finish_items(self, count: int) -> None:
        if self.steps is not None:
            self.steps.close()
            self.steps = None
        self.items.update(count)

    def close(self) -> None:
        if self.steps is not None:
            self.steps.close()
        self.items.close()


@contextlib.contextmanager
def progress_bars(total: int, enabled: bool) -> Iterator[Progress]:
    bars = Progress(total, enabled)
    try:
        yield bars
    finally:
        bars.close()
