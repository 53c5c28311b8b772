"""What a model family refuses that the fields alone allow: a negative prompt where guidance is distilled
(Flux), a scheduler it cannot run (flow matching or not), sizes that are not a multiple of its latent grid.
(A union model's units are checked with the other unit rules, in manifest/controls.)

Each rule is reported once, at its first item, with how many other items break it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rr_controlnet.manifest.checks import Problems
from rr_controlnet.manifest.yaml_source import line_of, shown
from rr_controlnet.models.families import FAMILIES
from rr_controlnet.spec import Item


def family_problems(family: str, scheduler: str | None, items: Sequence[Item], raw: Any, problems: Problems) -> None:
    entry = FAMILIES[family]
    if scheduler is not None and scheduler not in entry.schedulers:
        message = (
            f"scheduler {shown(scheduler)} cannot run {entry.title} ({family}); it takes {', '.join(entry.schedulers)}"
        )
        problems.add(line_of(raw, "scheduler") if isinstance(raw, dict) else None, "", message)
    found: dict[str, list[Item]] = {}
    for item in items:
        for rule in _item_rules(family, item):
            found.setdefault(rule, []).append(item)
    for message, broken in found.items():
        first = broken[0]
        more = f" (and {len(broken) - 1} more items)" if len(broken) > 1 else ""
        problems.add(first.line, f"item {shown(first.id)} (#{first.index})", message + more)


def _item_rules(family: str, item: Item) -> list[str]:
    entry = FAMILIES[family]
    params = item.params
    rules = []
    if params.negative_prompt and not entry.true_cfg:
        rules.append(
            f"negative_prompt: {entry.title} ({family}) has no classifier-free guidance (its guidance is "
            "distilled), so a negative prompt would be ignored; remove it"
        )
    for side in ("width", "height"):
        value = getattr(params, side)
        if value is not None and value % entry.size_multiple:
            rules.append(f"{side}: {entry.title} ({family}) needs a multiple of {entry.size_multiple}, got {value}")
    return rules
