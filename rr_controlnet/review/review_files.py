"""The review files of a batch, written from its summary once it is done: the contact sheet (overview*.png),
the review page (index.html, which links the sheet) and summary.md beside the recordings, summary.md also
appended to a job summary; and `summarize`, which merges a sharded batch's records first.

    write_review(summary, OutputFolder(out_dir), summary_to=Path(os.environ["GITHUB_STEP_SUMMARY"]))

Edge maps are the ones the run computed (its review files, else the item recordings): never a second
decode of the inputs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rr_controlnet.outputs import BatchSummary, OutputFolder
from rr_controlnet.outputs.files import write_atomic
from rr_controlnet.outputs.names import BLUEPRINT_NAME, SUMMARY_MARKDOWN_NAME, recording_name
from rr_controlnet.recording.read import recorded_edge_map
from rr_controlnet.recording.write import save_batch_blueprint
from rr_controlnet.review.contact_sheet import write_overview_pages
from rr_controlnet.review.job_summary import summary_markdown
from rr_controlnet.review.markdown import append_summary
from rr_controlnet.review.pages import write_review_page
from rr_controlnet.review.pages.items import ASSET_NAMES, is_plain_id, item_folder


def write_review(
    summary: BatchSummary,
    folder: OutputFolder,
    summary_to: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> None:
    """overview.png (paged for large batches), the review page and summary.md in the folder; summary.md
    also appended to `summary_to`. Raises OutputWriteError when one cannot be written."""

    # The contact sheet first, so that the page links its pages from its first write.
    overview = write_overview_pages(folder, summary, canny_for=computed_edge_maps(folder))
    write_review_page(folder.path, summary, log, overview=[page.name for page in overview])
    markdown = summary_markdown(summary, folder.path)
    write_atomic(folder.path / SUMMARY_MARKDOWN_NAME, markdown)
    if summary_to is not None:
        append_summary(markdown, summary_to)


def computed_edge_maps(folder: OutputFolder) -> Callable[[str], np.ndarray | None]:
    """An item's edge map as the run computed it: its review file (written when it finished), else its
    recording; None without a readable one."""
    from PIL import Image

    def edge_map(item_id: str) -> np.ndarray | None:
        reviewed = item_folder(folder.path, item_id) / ASSET_NAMES["canny"] if is_plain_id(item_id) else None
        if reviewed is not None and reviewed.is_file():
            try:
                with Image.open(reviewed) as image:
                    return np.asarray(image.convert("L"))
            except (OSError, SyntaxError, ValueError):
                pass
        path = folder.path / recording_name(item_id)
        return recorded_edge_map(path, item_id) if path.is_file() else None

    return edge_map


def summarize_outputs(
    out_dir: Path, summary_to: Path | None = None, log: Callable[[str], None] | None = None
) -> BatchSummary:
    """A sharded batch made whole: every shard's records merged into summary.json (shard files removed
    unless a shard still runs), then its blueprint and review files, as one process would have written."""

    log = log or (lambda message: print(message, file=sys.stderr))
    folder = OutputFolder(out_dir)
    summary = folder.merge_shards(log)
    save_batch_blueprint(summary.items, folder.path / BLUEPRINT_NAME)
    write_review(summary, folder, summary_to, log)
    return summary
