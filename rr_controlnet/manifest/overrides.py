"""Values given on the command line, which win over everything in the manifest."""

from __future__ import annotations

from dataclasses import dataclass

from rr_controlnet.errors import UsageError
from rr_controlnet.manifest.checks import value_problems
from rr_controlnet.manifest.fields import Params
from rr_controlnet.models.presets import PRESETS


@dataclass(frozen=True)
class Overrides:
    """Values given on the command line; they win over everything in the manifest. Checked on
    construction with the manifest's own rules (UsageError naming the field)."""

    model: str | None = None
    steps: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        given = {name: getattr(self, name) for name in ("steps", "seed") if getattr(self, name) is not None}
        problems = value_problems(Params, given, "Overrides")
        if self.model is not None and self.model not in PRESETS:
            problems.append(f"Overrides.model must be one of {', '.join(PRESETS)}, got {self.model!r}")
        if problems:
            raise UsageError("; ".join(problems))
