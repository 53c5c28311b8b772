"""SIGINT and SIGTERM stop a batch at the next denoising step; a second signal exits at once."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Final

from rr_controlnet.spec import StopRequest

EXIT_CODES_BY_SIGNAL: Final = {"SIGINT": 130, "SIGTERM": 143}


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest, say: Callable[[str], None]) -> Iterator[None]:
    """While the block runs, a first SIGINT/SIGTERM sets `stop`; a second exits the process at once."""

    def request_stop(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.requested:
            # Finished items are already complete on disk; the item in flight only has
            # temporary files, which the next run removes.
            say(f"\n{name} again: exiting now")
            os._exit(EXIT_CODES_BY_SIGNAL.get(name, 130))
        stop.signal_name = name
        say(f"\n{name}: stopping after the current step...")

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def keep_stop_handlers() -> Iterator[None]:
    """Put this process's SIGINT and SIGTERM handlers back after the block, for a library that installs
    its own (Ray's core worker exits at once on SIGTERM, leaving the batch's stop unheard)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread sets handlers
        yield
        return
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            if handler is not None:  # None: set outside Python, nothing of ours to put back
                signal.signal(sig, handler)
