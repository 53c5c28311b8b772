"""Every name in an output folder, in one place: item files, the batch's own files, shard files, locks
and temporaries, with the patterns that read them back.

    <out>/<id>.rrd, <id>.png          one recording and one image per item
    <out>/summary.json                every item's outcome (a shard's: summary.shard-I-of-N.json)
    <out>/.journal.jsonl              outcomes since summary.json was last written (.journal.shard-I-of-N.jsonl)
    <out>/summary.md, overview*.png   review files; batch.rbl the batch's blueprint
    <out>/index.html, review/         the review page and its files
    <out>/.rr-controlnet.lock         held while a run writes (a shard's: .rr-controlnet.shard-I-of-N.lock)
    <out>/.<name>.<random>.partial    a file being written; it takes its name when complete
    <out>/compare/                    what `rr-controlnet compare` writes
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from rr_controlnet.spec import Shard

SUMMARY_NAME: Final = "summary.json"
SUMMARY_MARKDOWN_NAME: Final = "summary.md"
BLUEPRINT_NAME: Final = "batch.rbl"
OVERVIEW_NAME: Final = "overview.png"
OVERVIEW_PAGE_PATTERN: Final = re.compile(r"^overview-\d{3,}\.png$")
JOURNAL_NAME: Final = ".journal.jsonl"
LOCK_NAME: Final = ".rr-controlnet.lock"
LOCK_GLOB: Final = ".rr-controlnet*.lock"
SHARD_SUMMARY_GLOB: Final = "summary.shard-*-of-*.json"
SHARD_JOURNAL_GLOB: Final = ".journal.shard-*-of-*.jsonl"
PARTIAL_SUFFIX: Final = ".partial"
PARTIAL_GLOB: Final = f".*{PARTIAL_SUFFIX}"
PROBE_PREFIX: Final = ".rr-controlnet-probe-"
COMPARE_FOLDER: Final = "compare"
PAGE_NAME: Final = "index.html"
REVIEW_FOLDER: Final = "review"
RECORDING_SUFFIX: Final = ".rrd"
IMAGE_SUFFIX: Final = ".png"
# Ids that would name the batch's own files (overview.png, summary.json, batch.rbl, ...).
RESERVED_ID_STEMS: Final = ("overview", "summary", "batch", "journal", "compare")
# A shard's own files: summary.shard-I-of-N.json, .journal.shard-I-of-N.jsonl, .rr-controlnet.shard-I-of-N.lock
SHARD_FILE: Final = re.compile(
    r"^(?:summary|\.journal|\.rr-controlnet)\.shard-(?P<index>\d+)-of-(?P<count>\d+)\.(?:json|jsonl|lock)$"
)


def default_out_dir(manifest_path: Path) -> Path:
    """An output folder beside the manifest, named after it."""
    manifest_path = Path(manifest_path)
    return manifest_path.parent / f"{manifest_path.stem}-output"


def recording_name(item_id: str) -> str:
    return f"{item_id}{RECORDING_SUFFIX}"


def image_name(item_id: str) -> str:
    return f"{item_id}{IMAGE_SUFFIX}"


def item_file_names(item_id: str, with_recording: bool = True) -> list[str]:
    return [recording_name(item_id), image_name(item_id)] if with_recording else [image_name(item_id)]


def _shard_suffix(shard: Shard) -> str:
    return f"shard-{shard.index}-of-{shard.count}"


def summary_name(shard: Shard | None = None) -> str:
    return f"summary.{_shard_suffix(shard)}.json" if shard is not None else SUMMARY_NAME


def journal_name(shard: Shard | None = None) -> str:
    return f".journal.{_shard_suffix(shard)}.jsonl" if shard is not None else JOURNAL_NAME


def lock_name(shard: Shard | None = None) -> str:
    return f".rr-controlnet.{_shard_suffix(shard)}.lock" if shard is not None else LOCK_NAME


def shard_of(name: str) -> Shard | None:
    """The shard a shard file (summary, journal or lock) belongs to; None for any other name."""
    match = SHARD_FILE.match(name)
    return Shard(int(match["index"]), int(match["count"])) if match else None


def batch_file_names(shard: Shard | None = None) -> list[str]:
    """The files a run writes besides its items' (their temporaries are its to clean up)."""
    names = [summary_name(shard), journal_name(shard)]
    return names if shard is not None else [*names, BLUEPRINT_NAME, SUMMARY_MARKDOWN_NAME, OVERVIEW_NAME]


def written_names(item_ids: Sequence[str]) -> set[str]:
    """Every name (casefolded) a whole batch of these items writes at the top of its folder, overview
    pages aside (is_overview_page): what no file of someone else's may be called there."""
    names = {name for item_id in item_ids for name in item_file_names(item_id)}
    names |= {*batch_file_names(), LOCK_NAME, PAGE_NAME, REVIEW_FOLDER}
    return {name.casefold() for name in names}


def is_batch_file(name: str) -> bool:
    """Whether the batch writes a file of this name itself (any case: some file systems ignore it)."""
    folded = name.casefold()
    fixed = {SUMMARY_NAME, SUMMARY_MARKDOWN_NAME, BLUEPRINT_NAME, OVERVIEW_NAME, JOURNAL_NAME, LOCK_NAME}
    return folded in fixed or bool(OVERVIEW_PAGE_PATTERN.match(folded)) or shard_of(folded) is not None


def is_overview_page(name: str) -> bool:
    return name == OVERVIEW_NAME or bool(OVERVIEW_PAGE_PATTERN.match(name))


def reserved_id_reason(item_id: str) -> str | None:
    """Why an item id cannot name files beside the batch's own, or None."""
    stem = item_id.split(".", 1)[0].casefold()
    if stem in RESERVED_ID_STEMS or re.fullmatch(r"overview-\d+", stem):
        return f"is reserved: the batch writes files named {stem}.* itself"
    if re.fullmatch(r"con|prn|aux|nul|com[1-9]|lpt[1-9]", stem):
        return "is a device name on Windows, where its files could not be created"
    return None


def listed_file(folder: Path, files: Sequence[str], suffix: str) -> Path | None:
    """The first of an outcome's files with this suffix, in `folder`."""
    name = next((name for name in files if name.endswith(suffix)), None)
    return Path(folder) / name if name else None


def partial_final_name(name: str) -> str | None:
    """The final name a temporary `.<final>.<random>.partial` is written for; None for other names."""
    if not (name.startswith(".") and name.endswith(PARTIAL_SUFFIX)):
        return None
    return name[1 : -len(PARTIAL_SUFFIX)].rsplit(".", 1)[0]
