"""The schedulers a manifest may name, each with its diffusers class and settings: the one table that the
manifest's `scheduler` field, its JSON Schema and the loader all read."""

from __future__ import annotations

from typing import Any, Final

SCHEDULER_CLASSES: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "flow_euler": ("FlowMatchEulerDiscreteScheduler", {}),  # SD3 and Flux (flow matching) only
}


def make_scheduler(name: str, config: Any) -> Any:
    import diffusers

    class_name, extra = SCHEDULER_CLASSES[name]
    return getattr(diffusers, class_name).from_config(config, **extra)
