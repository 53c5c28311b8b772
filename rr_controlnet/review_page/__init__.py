"""Static HTML review pages; for now each item's files for them.

Each item's thumbnails and filmstrip are written when the item finishes (record_item_assets, on the
runner's finishing thread). Pillow and numpy only, except where a missing item's images are read back
from its recording (rerun).
"""

from rr_controlnet.review_page.items import ItemImages, StepFrames, record_item_assets, write_item_assets

__all__ = ["ItemImages", "StepFrames", "record_item_assets", "write_item_assets"]
