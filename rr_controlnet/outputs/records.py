"""What an output folder records: each item's outcome, and the batch's summary of them.

Typed from the moment an item finishes until the moment it is written (summary.json, the journal);
documents read back become these records again, or are refused whole when they are not this tool's.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from rr_controlnet.outputs.names import listed_file
from rr_controlnet.spec import SweepPlace

SUMMARY_VERSION: Final = 1
STATUSES: Final = ("done", "failed", "pending")


ONE_TO_ONE: Final = "one-to-one"


@dataclass(frozen=True)
class EdgeScores:
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class Adherence:
    strict: EdgeScores
    tolerant: EdgeScores
    tolerance_px: float
    ssim: float
    control_edges: int  # edge pixels of the control map
    output_edges: int  # edge pixels of the output's own Canny map
    matching: str = ONE_TO_ONE  # ONE_TO_ONE; older folders may hold "upper-bound"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Adherence:
        """From summary.json's `adherence` (as_dict's); raises KeyError, TypeError or ValueError otherwise."""
        return cls(
            strict=EdgeScores(**document["strict"]),
            tolerant=EdgeScores(**document["tolerant"]),
            tolerance_px=float(document["tolerance_px"]),
            ssim=float(document["ssim"]),
            control_edges=int(document["control_edges"]),
            output_edges=int(document["output_edges"]),
            matching=str(document.get("matching", ONE_TO_ONE)),
        )

    def scalars(self) -> dict[str, float]:
        """The scores recorded as scalars: f1, precision, recall (strict, then _tolerant), ssim."""
        scores = {}
        for kind, suffix in ((self.strict, ""), (self.tolerant, "_tolerant")):
            scores |= {f"f1{suffix}": kind.f1, f"precision{suffix}": kind.precision, f"recall{suffix}": kind.recall}
        return {**scores, "ssim": self.ssim}


@dataclass
class ItemOutcome:
    """What became of one item: done (with verified files), failed (with the reason) or pending."""

    id: str
    status: str  # one of STATUSES
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the effective parameters (spec.GenerationParams)
    params_hash: str = ""
    image: str = ""  # the input image: absolute here, relative to the output folder on disk
    seconds: float | None = None
    files: list[str] = field(default_factory=list)
    error: str | None = None
    # name -> {"bytes", "sha256", "mtime_ns"} of each file, taken once the file was verified complete
    checksums: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    adherence: Adherence | None = None  # of a done item, when scored
    sweep: SweepPlace | None = None  # a sweep variant's source, values and place in the sweep's grid
    size: list[int] | None = None  # [width, height] generated (params may leave them to the image's aspect)
    input_sha256: str = ""  # of the input image's file, as it was when the item was planned
    retries: list[str] = field(default_factory=list)  # why earlier tries ended (a Ray worker that died)

    @classmethod
    def pending(cls, item_id: str, **known: Any) -> ItemOutcome:
        """An item not finished (yet): planned, interrupted, or known only by its id."""
        return cls(item_id, "pending", **known)

    def as_failed(self, reason: str, seconds: float, warnings: list[str] | None = None) -> ItemOutcome:
        """This item, failed for `reason` after `seconds`: no files, no scores."""
        return replace(
            self,
            status="failed",
            error=paths_named(reason),
            seconds=round(seconds, 3),
            warnings=list(warnings or []),
            files=[],
            checksums={},
            adherence=None,
        )

    def file(self, folder: Path, suffix: str) -> Path | None:
        """The first of its files with this suffix (".png", ".rrd"), in `folder`."""
        return listed_file(folder, self.files, suffix)

    def to_document(self, folder: Path | None = None) -> dict[str, Any]:
        """As summary.json and the journal hold it: with `folder`, the input's path relative to it."""
        document = {item.name: getattr(self, item.name) for item in fields(self)}
        document["image"] = folder_relative(self.image, folder)
        document["params"] = unit_paths_relative(self.params, folder)
        document["adherence"] = self.adherence.as_dict() if self.adherence is not None else None
        document["sweep"] = asdict(self.sweep) if self.sweep is not None else None
        return document

    @classmethod
    def from_document(cls, entry: Any, folder: Path | None = None) -> ItemOutcome | None:
        """An outcome from a summary or journal entry (a relative input path is `folder`'s); None when the
        entry is not one of ours."""
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
            return None
        if entry.get("status") not in STATUSES:
            return None
        known = {item.name: entry[item.name] for item in fields(cls) if item.name in entry}
        try:
            adherence = known.pop("adherence", None)
            sweep = known.pop("sweep", None)
            outcome = cls(**{"seed": None, "params": {}, "params_hash": "", **known})
            outcome.image = folder_resolved(outcome.image, folder)
            if isinstance(outcome.params, dict):
                outcome.params = unit_paths_resolved(outcome.params, folder)
            outcome.adherence = Adherence.from_dict(adherence) if adherence is not None else None
            outcome.sweep = SweepPlace.from_dict(sweep) if sweep is not None else None
        except (TypeError, KeyError, ValueError):
            return None
        shapes_ok = (
            isinstance(outcome.params, dict)
            and isinstance(outcome.files, list)
            and all(_is_plain_name(name) for name in outcome.files)
            and isinstance(outcome.checksums, dict)
            and all(isinstance(checksum, dict) for checksum in outcome.checksums.values())
            and isinstance(outcome.warnings, list)
            and isinstance(outcome.params_hash, str)
            and isinstance(outcome.size, list | None)
            and isinstance(outcome.input_sha256, str)
            and isinstance(outcome.retries, list)
        )
        return outcome if shapes_ok else None


def unit_map_paths(params: dict[str, Any], convert: Callable[[Any], Any]) -> dict[str, Any]:
    """`params` with each control unit's paths converted: its map (params["controls"][<unit>]["image"]) and its
    ControlNet (["model"], a local one; a preset name or hub id is left as it is by local_relative/_resolved)."""
    units = params.get("controls")
    if not isinstance(units, dict):
        return params

    def converted(unit: dict[str, Any]) -> dict[str, Any]:
        return {**unit, **{key: convert(unit[key]) for key in ("image", "model") if key in unit}}

    return {
        **params,
        "controls": {name: converted(unit) if isinstance(unit, dict) else unit for name, unit in units.items()},
    }


def unit_paths_relative(params: dict[str, Any], folder: Path | None) -> dict[str, Any]:
    """`params` as the folder's files name its units: maps and local ControlNets relative to `folder`, starting
    with ./ or ../ (older folders wrote a map as the manifest named it, relative to where the batch ran)."""
    return unit_map_paths(params, lambda path: local_relative(path, folder))


def unit_paths_resolved(params: dict[str, Any], folder: Path | None) -> dict[str, Any]:
    """unit_paths_relative read back: absolute again; an older folder's map path without ./ or ../ stays as it
    was written (it was relative to where that batch ran, not to the folder)."""
    return unit_map_paths(params, lambda path: local_resolved(path, folder))


MODEL_PATH_KEYS: Final = ("base", "controlnet", "vae", "config")


def model_paths_relative(model: Mapping[str, Any], folder: Path | None) -> dict[str, Any]:
    """A run's model as the folder's files name it: a local weights path relative to the folder, always starting
    with ./ or ../ so that it reads apart from a preset name or hub id."""
    return {key: local_relative(value, folder) if key in MODEL_PATH_KEYS else value for key, value in model.items()}


def model_paths_resolved(model: Mapping[str, Any], folder: Path | None) -> dict[str, Any]:
    """model_paths_relative read back: its ./ and ../ paths absolute again (preset names and hub ids as they are)."""
    return {key: local_resolved(value, folder) if key in MODEL_PATH_KEYS else value for key, value in model.items()}


def local_relative(path: Any, folder: Path | None) -> Any:
    """A local file or folder as the output folder's files name it: relative to `folder`, starting with ./ or
    ../; anything else (a preset name, a hub id, a path already relative) as it is."""
    shown = folder_relative(path, folder)
    if shown is path or not isinstance(shown, str) or shown.startswith("../"):
        return shown
    return f"./{shown}"


def local_resolved(path: Any, folder: Path | None) -> Any:
    local = isinstance(path, str) and (path.startswith("./") or path.startswith("../"))
    return folder_resolved(path, folder) if local else path


def folder_relative(path: Any, folder: Path | None) -> Any:
    """An absolute path as the output folder writes it: relative to the folder (with / between parts), so
    that no file in it holds the machine's layout and the paths stay right where the folder is copied."""
    if not isinstance(path, str) or not path or folder is None or not os.path.isabs(path):
        return path
    try:
        return Path(os.path.relpath(path, os.path.abspath(folder))).as_posix()
    except ValueError:  # another drive (Windows): the name alone
        return Path(path).name


def folder_resolved(path: Any, folder: Path | None) -> Any:
    """A path read from the output folder, absolute again (older folders wrote absolute paths)."""
    if not isinstance(path, str) or not path or folder is None or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(os.path.abspath(folder), path))


# An absolute POSIX path in a message: from a / that starts a word (or follows a quote, bracket or =) to
# the next blank, quote, bracket, comma or semicolon.
_ABSOLUTE_PATH: Final = re.compile(r"""(?<![^\s'"`(=])/[^\s'"`(),;]+""")


def paths_named(text: str) -> str:
    """A message as the output folder's files hold it: each absolute path in it named by its file or folder
    name alone (`model '/data/cm/sd' cannot be loaded` -> `model 'sd' ...`), the layout of the machine left out;
    a sentence's full stop after a path stays."""

    def named(found: re.Match) -> str:
        path = found.group(0)
        stem = path.rstrip(".")
        return (Path(stem).name or stem) + path[len(stem) :]

    return _ABSOLUTE_PATH.sub(named, text)


def shown_path(path: Path | str, relative_to: Path | None) -> str:
    """A path as a file in the output folder names it: relative to `relative_to` (made absolute first);
    as given without one."""
    return str(path) if relative_to is None else folder_relative(os.path.abspath(path), relative_to)


def _is_plain_name(name: Any) -> bool:
    """A file name inside the output folder, as this tool writes them: no folder, nothing hidden."""
    return isinstance(name, str) and name == Path(name).name and not name.startswith(".")


@dataclass
class BatchSummary:
    """A batch as summary.json records it: the run's settings and every item's outcome, in manifest order."""

    manifest: str  # absolute here, relative to the output folder on disk
    model: dict[str, Any]
    recording_id: str
    items: list[ItemOutcome]
    versions: dict[str, str] = field(default_factory=dict)
    item_ids: list[str] = field(default_factory=list)  # every item of the manifest, in order
    shard: str | None = None  # "I/N" when this summary covers one shard's items only
    # What the run decided besides the model and each item's parameters: scheduler, dtype, and what it
    # recorded (preview, latent_every); the first two decide outputs too.
    settings: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)  # the run that wrote it: device, dtype, started, wall_seconds

    @classmethod
    def from_document(cls, document: Mapping[str, Any], folder: Path | None = None) -> BatchSummary:
        """A summary document's outcomes that are this tool's (others are left out); relative paths are
        `folder`'s."""
        entries = (ItemOutcome.from_document(entry, folder) for entry in document.get("items", []))
        items = [outcome for outcome in entries if outcome]
        return cls(
            manifest=folder_resolved(document.get("manifest", ""), folder),
            model=model_paths_resolved(document.get("model") or {}, folder),
            recording_id=document.get("recording_id", ""),
            items=items,
            versions=document.get("versions") or {},
            item_ids=document.get("item_ids") or [item.id for item in items],
            shard=document.get("shard"),
            settings=document.get("settings") or {},
            run=document.get("run") or {},
        )

    def counts(self) -> dict[str, int]:
        return {status: sum(1 for outcome in self.items if outcome.status == status) for status in STATUSES}

    def by_id(self) -> dict[str, ItemOutcome]:
        return {outcome.id: outcome for outcome in self.items}

    def to_document(self, folder: Path | None = None) -> dict[str, Any]:
        """As summary.json holds it: with `folder`, paths relative to it."""
        return {
            "version": SUMMARY_VERSION,
            "manifest": folder_relative(self.manifest, folder),
            "model": model_paths_relative(self.model, folder),
            "recording_id": self.recording_id,
            "counts": self.counts(),
            "versions": self.versions,
            "item_ids": self.item_ids,
            "shard": self.shard,
            "settings": self.settings,
            "run": self.run,
            "items": [outcome.to_document(folder) for outcome in self.items],
        }

    def to_json(self, folder: Path | None = None) -> str:
        return json.dumps(self.to_document(folder), indent=2) + "\n"


def outputs_fingerprint(summary: BatchSummary) -> str:
    """A hash over every item's id, status and its files' SHA-256 (as summary.json records them), in id
    order: it changes whenever a run changes what the folder holds."""
    described = sorted(
        [outcome.id, outcome.status, [[name, _sha256(outcome.checksums, name)] for name in outcome.files]]
        for outcome in summary.items
    )
    return hashlib.sha256(json.dumps(described, separators=(",", ":")).encode()).hexdigest()


def outputs_changed_at(summary: BatchSummary) -> str | None:
    """When the outputs last changed, as far as summary.json tells (UTC): the newest of its files' recorded
    modification times and the end of the run that wrote it."""
    times = [
        sums["mtime_ns"] / 1e9
        for outcome in summary.items
        for sums in outcome.checksums.values()
        if isinstance(sums, dict) and isinstance(sums.get("mtime_ns"), int)
    ]
    try:
        started = datetime.datetime.fromisoformat(str(summary.run.get("started")))
        times.append(started.timestamp() + float(summary.run.get("wall_seconds") or 0))
    except (TypeError, ValueError):
        pass
    if not times:
        return None
    return datetime.datetime.fromtimestamp(max(times), datetime.UTC).isoformat(timespec="seconds")


def now_text() -> str:
    """This moment as compare.json's `made` records it (UTC, as summary.json's `run.started`)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _sha256(checksums: dict[str, Any], name: str) -> str | None:
    sums = checksums.get(name)
    return sums.get("sha256") if isinstance(sums, dict) else None
