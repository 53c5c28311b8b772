"""What a run has to do: fingerprint every item, and skip those whose outputs are already what they would be.

An item's fingerprint (its params hash) covers everything that decides its output: effective
parameters, model, scheduler, the input image's bytes, dtype and what gets recorded. A rerun skips an
item only when its last outcome is `done` with the same hash, its files are intact, and it holds what
this run would write (a recording, control adherence).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from rr_controlnet.control_maps import map_paths
from rr_controlnet.manifest.controls import units_record
from rr_controlnet.outputs import ItemOutcome, OutputFolder, item_file_names
from rr_controlnet.spec import GenerationParams, Item, Manifest, ModelSpec, Shard


@dataclass(frozen=True)
class ParamsFingerprint:
    """What decides an item's output; its hash lets a rerun skip unchanged items."""

    params: GenerationParams
    model: ModelSpec
    scheduler: str | None
    image_sha256: str
    extra: dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        payload = {
            "params": asdict(self.params),
            "model": asdict(self.model),
            "scheduler": self.scheduler,
            "image_sha256": self.image_sha256,
            "extra": self.extra,
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PlannedItem:
    item: Item
    params_hash: str
    image_sha256: str = ""
    controls: dict[str, Any] = field(default_factory=dict)  # {"controls": {...}} for an item with units


def plan_items(
    manifest: Manifest, dtype_name: str, shard: Shard | None = None, recording: Mapping[str, Any] | None = None
) -> list[PlannedItem]:
    """Fingerprint every item (of the shard). Each image file is read once, however many items use it."""
    image_hashes: dict[Path, str] = {}
    planned = []
    for item in manifest.items:
        if shard is not None and not shard.owns(item.position or item.index):
            continue
        for path in [item.image, *map_paths(item.controls)]:
            if path not in image_hashes:
                image_hashes[path] = file_sha256(path)
        controls = units_record(item, image_hashes, manifest.model.family)
        fingerprint = ParamsFingerprint(
            params=item.params,
            model=manifest.model,
            scheduler=manifest.scheduler,
            image_sha256=image_hashes[item.image],
            extra={"dtype": dtype_name, **(recording or {}), **controls},
        )
        planned.append(PlannedItem(item, fingerprint.digest(), image_hashes[item.image], controls))
    return planned


def file_sha256(path: Path) -> str:
    try:
        with open(path, "rb") as source:
            return hashlib.file_digest(source, "sha256").hexdigest()
    except OSError:
        return "unreadable"


# Why an item is made: the manifest's reasons; stale_reason's others are about the files an item left.
NOT_DONE: Final = "not done yet"
CHANGED: Final = "changed"


def stale_reason(
    planned: PlannedItem,
    previous: Mapping[str, ItemOutcome],
    out_dir: Path,
    with_recordings: bool = True,
    with_adherence: bool = True,
) -> str | None:
    """Why an item must be made (again), or None when it is up to date: done with the same fingerprint,
    files intact, and holding what this run would write: a recording (unless --no-save) and control
    adherence (unless --no-adherence)."""
    earlier = previous.get(planned.item.id)
    if earlier is None or earlier.status != "done":
        return NOT_DONE
    if earlier.params_hash != planned.params_hash:
        return CHANGED
    if not set(item_file_names(planned.item.id, with_recordings)) <= set(earlier.files):
        return "made without a recording (--no-save) before"
    scored = not planned.item.controls or any(unit.type == "canny" for unit in planned.item.controls)
    if earlier.adherence is None and with_adherence and scored:
        return "made without control adherence (--no-adherence) before"
    if not OutputFolder(out_dir).intact(earlier):
        return "its files changed or are gone since it was done"
    return None


def split_up_to_date(
    planned: Sequence[PlannedItem],
    previous: Mapping[str, ItemOutcome],
    out_dir: Path,
    with_recordings: bool = True,
    with_adherence: bool = True,
    log: Callable[[str], None] = lambda message: None,
) -> tuple[list[PlannedItem], list[PlannedItem]]:
    """(items to generate, items already up to date), each in manifest order; items that were done and
    are made again for their files' sake are named in the log."""
    to_run, skipped = [], []
    for entry in planned:
        reason = stale_reason(entry, previous, out_dir, with_recordings, with_adherence)
        if reason not in (None, NOT_DONE, CHANGED):  # done, unchanged, and yet made again: say why
            log(f"item {entry.item.id!r}: {reason}; making it again")
        (skipped if reason is None else to_run).append(entry)
    return to_run, skipped
