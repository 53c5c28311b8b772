"""Static HTML review pages: OUT/index.html for a batch, COMPARE/index.html for a comparison.

They open from the folder in any browser, offline, with no server: data travels as scripts beside the
page (browsers refuse to fetch local files), and every image is a small file under `review/`.

    write_review_page(out_dir, OutputFolder(out_dir).read())
    write_compare_page(compare_folders(baseline, new, shown_from=new / "compare"), new / "compare")

Each item's thumbnails and filmstrip are encoded when the item finishes (encode_item_assets) and written
with its other files (delivery.write_finished); the page itself once the batch is done, one process at a
time (page_lock). Pillow and numpy only, except where a missing item's images are read back from its
recording (rerun).
"""

from rr_controlnet.outputs.records import outputs_fingerprint
from rr_controlnet.review.pages.compare_page import write_compare_page
from rr_controlnet.review.pages.html import PAGE_NAME
from rr_controlnet.review.pages.items import (
    ItemImages,
    StepFrames,
    encode_item_assets,
    output_made_from,
    write_item_assets,
    write_item_files,
)
from rr_controlnet.review.pages.links import write_review_links
from rr_controlnet.review.pages.page import page_data, write_review_page

__all__ = [
    "PAGE_NAME",
    "ItemImages",
    "StepFrames",
    "encode_item_assets",
    "output_made_from",
    "outputs_fingerprint",
    "page_data",
    "write_compare_page",
    "write_item_assets",
    "write_item_files",
    "write_review_links",
    "write_review_page",
]
