"""Progress of a batch, for whoever shows it: bars on a terminal, nothing in a script.

A batch reports through `Progress`: `start(total)` with the number of items to generate, then
`start_item(label, steps)`, `step()` per denoising step, `finish_items(count)`, and `close()`. A Ray
batch, whose steps happen on its workers, reports items only, and each worker's rate through `note(text)`
where the progress has one.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def start_item(self, label: str, steps: int) -> None: ...
    def step(self) -> None: ...
    def finish_items(self, count: int) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    """Reports nothing."""

    def start(self, total: int) -> None:
        pass

    def start_item(self, label: str, steps: int) -> None:
        pass

    def step(self) -> None:
        pass

    def finish_items(self, count: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressBars:
    """tqdm bars: items overall, and steps of the item(s) in flight."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.items = None
        self.steps = None

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self.items = tqdm(total=total, desc="items", unit="item", file=self.stream, position=0)

    def start_item(self, label: str, steps: int) -> None:
        from tqdm import tqdm

        if self.steps is not None:
            self.steps.close()
        self.steps = tqdm(total=steps, desc=label, unit="step", leave=False, file=self.stream, position=1)

    def step(self) -> None:
        if self.steps is not None:
            self.steps.update(1)

    def finish_items(self, count: int) -> None:
        if self.steps is not None:
            self.steps.close()
            self.steps = None
        if self.items is not None:
            self.items.update(count)

    def note(self, text: str) -> None:
        """A few words beside the items bar (each Ray worker's rate)."""
        if self.items is not None:
            self.items.set_postfix_str(text)

    def close(self) -> None:
        if self.steps is not None:
            self.steps.close()
            self.steps = None
        if self.items is not None:
            self.items.close()
            self.items = None
