"""Markdown for job summaries (summary.md, compare.md): safe table cells, bounded size, appending.

GitHub refuses a step summary over 1 MiB, so each document keeps to half of that, leaving room for
what else a step appends; its tables also stop at TABLE_ROW_LIMIT rows and say what they left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from rr_controlnet.outputs.files import write_failure

TABLE_ROW_LIMIT: Final = 500
MAX_BYTES: Final = 512 * 1024


def cell(value: Any) -> str:
    """Text safe inside a markdown table cell: one line, pipes escaped, no raw HTML."""
    text = " ".join(str(value).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def bounded(lines: Sequence[str], complete_in: str) -> str:
    """The lines as a document of at most MAX_BYTES, cut at a line with a note naming the complete file."""
    note = f"\n... cut at {MAX_BYTES // 1024} kB: {complete_in} lists everything.\n"
    budget = MAX_BYTES - len(note.encode())
    kept = []
    for line in lines:
        budget -= len(line.encode()) + 1
        if budget < 0:
            return "\n".join(kept) + "\n" + note
        kept.append(line)
    return "\n".join(kept) + "\n"


def append_summary(markdown: str, path: Path) -> None:
    """Append `markdown` to `path` (e.g. $GITHUB_STEP_SUMMARY), creating the file if it is missing."""
    try:
        with Path(path).open("a", encoding="utf-8") as summary:
            summary.write(markdown if markdown.endswith("\n") else markdown + "\n")
    except OSError as exc:
        raise write_failure(exc, Path(path)) from None
