"""The pull request's comment: `compare --comment-to FILE`.

Short markdown: the counts, then the failed, missing and changed items worst first, each with its reason
and a link into the artifact (the comparison page's item, or its path in the folder when no artifact URL
is given). GitHub refuses a comment over 65,536 characters: the list stops before that, saying how many
items it left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final
from urllib.parse import quote

from rr_controlnet.outputs.files import write_atomic
from rr_controlnet.outputs.names import PAGE_NAME
from rr_controlnet.review.compare import WORST_FIRST, Comparison, ItemComparison
from rr_controlnet.review.markdown import cell

COMMENT_LIMIT: Final = 65_536  # characters, GitHub's limit for a comment's body
REASON_CHARACTERS: Final = 200
LISTED: Final = ("failed", "missing", "changed")


def comparison_comment(comparison: Comparison, artifact_url: str = "", page: str = PAGE_NAME) -> str:
    """The comment: counts and the items that need a look, within COMMENT_LIMIT characters. `artifact_url`:
    where the comparison folder can be browsed (links go to its page's items); `page`: the page's path."""
    tally = comparison.counts()
    counts = ", ".join(f"{tally[status]} {status}" for status in WORST_FIRST if tally[status])
    verdict = "passed" if comparison.passed else "needs review"
    base = artifact_url.rstrip("/") + "/" if artifact_url else ""
    head = [
        f"### rr-controlnet compare: {verdict}",
        "",
        f"{counts or 'no items'} ({cell(Path(comparison.baseline).name)} → {cell(Path(comparison.new).name)})",
        "",
        f"The comparison page: [{page}]({base}{page}); accept single items there, then run the command it shows.",
    ]
    listed = [item for item in comparison.items if item.status in LISTED]  # worst first, as compared
    lines = ["", "| item | status | reason |", "| --- | --- | --- |"] if listed else []
    size = sum(len(line) + 1 for line in head + lines)
    room = COMMENT_LIMIT - size - 200  # the closing line
    shown = 0
    for item in listed:
        row = _row(item, base, page)
        if len(row) + 1 > room:
            break
        lines.append(row)
        room -= len(row) + 1
        shown += 1
    if shown < len(listed):
        left_out = len(listed) - shown
        lines += ["", f"... and {left_out:,} more not listed here (the comment's limit): the page lists all."]
    return "\n".join(head + lines) + "\n"


def _row(item: ItemComparison, base: str, page: str) -> str:
    reason = "; ".join(item.notes) or item.status
    if len(reason) > REASON_CHARACTERS:
        reason = reason[: REASON_CHARACTERS - 3] + "..."
    link = f"[{cell(item.id)}]({base}{page}#item={_url_part(item.id)})"
    return f"| {link} | **{item.status}** | {cell(reason)} |"


def _url_part(text: str) -> str:
    return quote(text, safe="")


def write_comment(comparison: Comparison, path: Path, artifact_url: str = "", page: str = PAGE_NAME) -> Path:
    return write_atomic(Path(path), comparison_comment(comparison, artifact_url, page))
