"""What every page shares: its file names, the HTML shell its scripts fill, its data as a script, and
copying the package's scripts and stylesheet beside it."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final

from rr_controlnet.outputs.files import write_atomic
from rr_controlnet.review.pages.items import REVIEW_FOLDER

PAGE_NAME: Final = "index.html"
DATA_NAME: Final = "data.js"
LINKS_NAME: Final = "links.js"


def data_script(name: str, data: Any) -> str:
    """A script that sets window.<name> to `data` (JSON is a JavaScript expression). ASCII only: a script
    file's encoding is the browser's guess, and every other character reads the same escaped."""
    return f"window.{name} = {json.dumps(data, ensure_ascii=True, separators=(',', ':'))};\n"


def page_html(title: str, scripts: Sequence[str], folder: str = REVIEW_FOLDER) -> str:
    """The page itself: an empty shell that its scripts (all in `folder`) fill from the data script."""
    tags = "".join(f'<script src="{folder}/{name}"></script>\n' for name in scripts)
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f'<link rel="stylesheet" href="{folder}/review.css">\n'
        "</head>\n<body>\n"
        '<noscript><p class="noscript">This page needs JavaScript. Without it, the .md and .json files '
        "beside it list every item.</p></noscript>\n"
        '<div id="app"></div>\n'
        f"{tags}"
        "</body>\n</html>\n"
    )


def copy_page_assets(folder: Path, names: Sequence[str]) -> None:
    """The page's own scripts and stylesheet, as the package ships them (rewritten only when they differ)."""
    for name in names:
        shipped = (resources.files("rr_controlnet.review.pages") / "assets" / name).read_bytes()
        if _read_bytes(folder / name) != shipped:
            write_atomic(folder / name, shipped)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
