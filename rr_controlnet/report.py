"""What a batch leaves beside the recordings: summary.json, PNG metadata and readable parameter text."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from rr_controlnet.files import write_atomic
from rr_controlnet.manifest import GenerationParams, Item, ModelSpec

SUMMARY_NAME: Final = "summary.json"
BLUEPRINT_NAME: Final = "batch.rbl"
SUMMARY_MARKDOWN_NAME: Final = "summary.md"
OVERVIEW_NAME: Final = "overview.png"
SUMMARY_VERSION: Final = 1
STATUSES: Final = ("done", "failed", "pending")
VERSIONED_PACKAGES: Final = ("rr-controlnet", "diffusers", "torch", "transformers", "rerun-sdk")


@dataclass
class ItemOutcome:
    id: str
    status: str  # one of STATUSES
    seed: int | None
    params: dict[str, Any]
    params_hash: str
    image: str = ""  # the input image, absolute
    seconds: float | None = None
    files: list[str] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def pending(cls, item: Item, params_hash: str) -> ItemOutcome:
        return cls(item.id, "pending", item.params.seed, asdict(item.params), params_hash, str(item.image.resolve()))


@dataclass
class BatchSummary:
    manifest: str
    model: dict[str, Any]
    recording_id: str
    items: list[ItemOutcome]
    versions: dict[str, str] = field(default_factory=dict)
    item_ids: list[str] = field(default_factory=list)  # every item of the manifest, in order
    shard: str | None = None  # "I/N" when this summary covers one shard's items only

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> BatchSummary:
        return cls(
            manifest=document["manifest"],
            model=document["model"],
            recording_id=document["recording_id"],
            items=[ItemOutcome(**item) for item in document["items"]],
            versions=document.get("versions", {}),
            item_ids=document.get("item_ids", [item["id"] for item in document["items"]]),
            shard=document.get("shard"),
        )

    def counts(self) -> dict[str, int]:
        return {status: sum(1 for outcome in self.items if outcome.status == status) for status in STATUSES}

    def to_json(self) -> str:
        document = {
            "version": SUMMARY_VERSION,
            "manifest": self.manifest,
            "model": self.model,
            "recording_id": self.recording_id,
            "counts": self.counts(),
            "versions": self.versions,
            "item_ids": self.item_ids,
            "shard": self.shard,
            "items": [asdict(outcome) for outcome in self.items],
        }
        return json.dumps(document, indent=2) + "\n"


def write_summary(summary: BatchSummary, out_dir: Path, name: str = SUMMARY_NAME) -> Path:
    return write_atomic(Path(out_dir) / name, summary.to_json())


def read_previous_outcomes(out_dir: Path) -> dict[str, ItemOutcome]:
    """Outcomes recorded by earlier runs into this folder (shard summaries included), newest first."""
    from rr_controlnet.distributed import read_summary_documents

    outcomes = {}
    for document in read_summary_documents(out_dir):
        for entry in document.get("items", []):
            try:
                outcomes[entry["id"]] = ItemOutcome(**entry)
            except (TypeError, KeyError):
                continue
    return outcomes


def library_versions() -> dict[str, str]:
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def prompt_markdown(params: GenerationParams) -> str:
    negative = params.negative_prompt or "*(none)*"
    return f"## Prompt\n\n{params.prompt or '*(empty)*'}\n\n## Negative prompt\n\n{negative}\n"


def params_markdown(
    item: Item, model: ModelSpec, context: dict[str, Any], params_hash: str, versions: dict[str, str]
) -> str:
    """Every effective parameter, the model and the libraries, as a markdown table."""
    rows = [("item", item.id), ("image", str(item.image)), ("params hash", params_hash)]
    rows += [
        (name, _cell(value)) for name, value in asdict(item.params).items() if name not in ("prompt", "negative_prompt")
    ]
    rows += [(f"model.{name}", _cell(value)) for name, value in asdict(model).items() if value is not None]
    rows += [(name, _cell(value)) for name, value in context.items()]
    rows += [(f"version: {name}", version) for name, version in versions.items()]
    lines = ["| parameter | value |", "| --- | --- |"] + [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return "auto" if value is None else str(value).replace("|", "\\|")


def png_text_chunks(
    item: Item, model: ModelSpec, sampler: str, size: tuple[int, int], params_hash: str
) -> dict[str, str]:
    """`parameters` in the format common Stable Diffusion tools read, plus all parameters as JSON."""
    params = item.params
    width, height = size
    controlnet = (
        f'"Module: canny, Model: {model.controlnet}, Weight: {params.controlnet_conditioning_scale:g}, '
        f"Guidance Start: {params.control_guidance_start:g}, Guidance End: {params.control_guidance_end:g}, "
        f'Threshold A: {params.canny_low}, Threshold B: {params.canny_high}, Resize Mode: {params.resize}"'
    )
    settings = [
        f"Steps: {params.steps}",
        f"Sampler: {sampler}",
        f"CFG scale: {params.guidance_scale:g}",
        f"Seed: {params.seed}",
        f"Size: {width}x{height}",
        f"Model: {model.base}",
        f"ControlNet 0: {controlnet}",
    ]
    parameters = f"{params.prompt}\nNegative prompt: {params.negative_prompt}\n{', '.join(settings)}"
    full = {
        "id": item.id,
        "params": asdict(params),
        "model": asdict(model),
        "size": [width, height],
        "sampler": sampler,
    }
    full["params_hash"] = params_hash
    return {"parameters": parameters, "rr-controlnet": json.dumps(full, sort_keys=True)}
