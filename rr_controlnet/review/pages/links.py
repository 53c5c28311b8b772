"""review/links.js: what the batch page links to that was made after the batch, the comparison in
OUT/compare, marked out of date once a rerun changed the outputs it compared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from rr_controlnet.errors import OutputFolderError
from rr_controlnet.outputs import BatchSummary, OutputFolder
from rr_controlnet.outputs.files import write_atomic
from rr_controlnet.outputs.names import COMPARE_FOLDER
from rr_controlnet.outputs.records import outputs_changed_at, outputs_fingerprint
from rr_controlnet.review.pages.html import LINKS_NAME, PAGE_NAME, data_script
from rr_controlnet.review.pages.items import REVIEW_FOLDER

COMPARE_PAGE: Final = f"{COMPARE_FOLDER}/{PAGE_NAME}"


def write_review_links(out_dir: Path, summary: BatchSummary | None = None) -> Path | None:
    """review/links.js: the comparison page in OUT/compare, when there is one, marked `stale` when OUT's
    outputs (`summary`, read from OUT without one) are no longer the ones it compared. None when OUT has no
    page."""
    out_dir = Path(out_dir)
    if not (out_dir / REVIEW_FOLDER).is_dir():
        return None
    links: dict[str, Any] = {}
    if (out_dir / COMPARE_PAGE).is_file():
        links["compare"] = comparison_link(out_dir, summary)
    return write_atomic(out_dir / REVIEW_FOLDER / LINKS_NAME, data_script("RR_REVIEW_LINKS", links))


def comparison_link(out_dir: Path, summary: BatchSummary | None) -> dict[str, Any]:
    """The link to OUT/compare with its counts, or, when the outputs changed since, the times of both."""
    link: dict[str, Any] = {"href": COMPARE_PAGE}
    document = _read_json(out_dir / COMPARE_FOLDER / "compare.json")
    if document is None:
        return link
    link["baseline"] = Path(str(document.get("baseline", ""))).name
    link["made"] = document.get("made")
    if summary is None:
        try:
            summary = OutputFolder(out_dir).read()
        except OutputFolderError:
            summary = None
    # A comparison from before fingerprints were recorded cannot be told current: it is marked out of date.
    if summary is not None and document.get("new_outputs") != outputs_fingerprint(summary):
        link |= {"stale": True, "outputs_changed": outputs_changed_at(summary)}
    else:
        link |= {"counts": document.get("counts"), "passed": document.get("passed")}
    return link


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None
