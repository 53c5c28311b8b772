"""The engines, listed: each engine's options type and the engine it opens. A new engine is a module with
its options and its Engine, and one line here.

    with open_engine(options, stop) as engine: ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from rr_controlnet.errors import UsageError
from rr_controlnet.run.engine import Engine
from rr_controlnet.run.local import LocalEngine
from rr_controlnet.run.options import BatchOptions, LocalOptions
from rr_controlnet.run.ray.engine import RayEngine
from rr_controlnet.run.ray.options import RayOptions
from rr_controlnet.spec import StopRequest

ENGINES: Final[dict[type, Callable[[BatchOptions, StopRequest], Engine]]] = {
    LocalOptions: LocalEngine,
    RayOptions: RayEngine,
}


def open_engine(options: BatchOptions, stop: StopRequest) -> Engine:
    """The engine options.engine names, not yet entered (`with open_engine(...) as engine`)."""
    engine = ENGINES.get(type(options.engine))
    if engine is None:
        raise UsageError(f"no engine runs {type(options.engine).__name__}: engines.ENGINES lists them")
    return engine(options, stop)
