"""An item's files for the review page, written when the item finishes, in `review/items/<id>/`:

    input.jpg     the input as given (INPUT_SIDE on its longer side)
    canny.png     the edge map the model was given (1-bit)
    output.jpg    the output (THUMB_SIDE); an item's detail shows `<id>.png` itself
    overlay.png   the output's edges over the control's (white followed, red missed, blue added)
    steps.jpg     up to STEP_FRAMES step previews side by side, evenly spaced over the steps
    control-<n>-<type>.jpg   each control unit's map (items with `controls`)
    info.js       what the folder holds, which output it was made from, the PNG's infotext; written
                  last, so a folder without it is incomplete

and page_lock, which keeps the writers of a folder's review files and page one at a time.

Everything comes from what the run computed (pixels in memory, or read back from the item's files):
nothing is generated or decoded by a model again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from rr_controlnet.errors import OutputFolderError
from rr_controlnet.outputs import ItemOutcome
from rr_controlnet.outputs.files import write_failure
from rr_controlnet.outputs.names import PARTIAL_GLOB, PARTIAL_SUFFIX, image_name
from rr_controlnet.review.pages.encode import (
    INPUT_SIDE,
    THUMB_SIDE,
    edge_png,
    filmstrip,
    jpeg,
    palette_png,
    rgb_image,
)

REVIEW_FOLDER: Final = "review"
ITEMS_FOLDER: Final = "items"
INFO_NAME: Final = "info.js"
INFO_CALL: Final = "rrReviewItem"  # the page defines this function; an item's info.js calls it
STEP_FRAMES: Final = 12
LEFTOVER_SECONDS: Final = 60
PAGE_LOCK_NAME: Final = ".rr-controlnet.page.lock"  # the batch locks' pattern: a baseline copy leaves it out
PAGE_LOCK_WAIT_SECONDS: Final = 600.0  # a page rebuilt from the item files of 20,000 items takes minutes
PAGE_LOCK_POLL_SECONDS: Final = 0.05
ASSET_NAMES: Final = {
    "input": "input.jpg",
    "canny": "canny.png",
    "output": "output.jpg",
    "overlay": "overlay.png",
    "steps": "steps.jpg",
}
CONTROL_PREFIX: Final = "control-"  # a control unit's map among an item's assets: control-1-depth
_PLAIN_ID: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class StepFrames:
    """Up to `limit` step previews of one item, evenly spaced from its first step to its last; a frame
    is kept (not copied) as it arrives, so the generation thread does no work for it."""

    def __init__(self, steps: int, limit: int = STEP_FRAMES):
        count = min(limit, max(0, steps))
        self.wanted = {round(index * (steps - 1) / (count - 1)) for index in range(count)} if count > 1 else {0}
        self.frames: dict[int, np.ndarray] = {}

    def add(self, step: int, preview: np.ndarray | None) -> None:
        if preview is not None and step in self.wanted:
            self.frames[step] = preview

    def sampled(self) -> list[tuple[int, np.ndarray]]:
        return sorted(self.frames.items(), key=lambda pair: pair[0])


@dataclass(frozen=True)
class ItemImages:
    """What an item's review files are made from; None (or no frames) where the run has none."""

    input: np.ndarray | None = None  # the input as given: HxW, HxWx3 or HxWx4 uint8
    canny: np.ndarray | None = None  # HxW, 0 or 255
    output: np.ndarray | None = None  # HxWx3 uint8
    overlay: np.ndarray | None = None  # HxWx3 uint8
    frames: Sequence[tuple[int, np.ndarray]] = ()  # (step, preview) in step order
    infotext: str | None = None  # the output PNG's `parameters` text chunk
    controls: Sequence[tuple[str, np.ndarray]] = ()  # each control unit's name (`1-depth`) and map


def asset_name(kind: str) -> str:
    """A review file's name: ASSET_NAMES', or `control-<index>-<type>.jpg` for a control unit's map."""
    return ASSET_NAMES.get(kind) or f"{kind}.jpg"


def is_plain_id(item_id: Any) -> bool:
    """An id that can name a folder inside review/items (what manifests allow; summaries are not trusted)."""
    return isinstance(item_id, str) and bool(_PLAIN_ID.fullmatch(item_id)) and ".." not in item_id


def item_folder(out_dir: Path, item_id: str) -> Path:
    return Path(out_dir) / REVIEW_FOLDER / ITEMS_FOLDER / item_id


def encode_item_assets(item_id: str, images: ItemImages, made_from: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """An item's review files, encoded where it was generated (file name in its folder -> bytes, info.js
    last), and its info. `made_from` names what they show (the output PNG's SHA-256), so that a page can
    tell files that no longer match the output."""
    if not is_plain_id(item_id):
        raise ValueError(f"item id {item_id!r} cannot name a folder")
    encoded: dict[str, tuple[bytes, tuple[int, int]]] = {}
    if images.input is not None:
        encoded["input"] = jpeg(rgb_image(images.input), INPUT_SIDE)
    if images.canny is not None:
        encoded["canny"] = edge_png(images.canny)
    if images.output is not None:
        encoded["output"] = jpeg(rgb_image(images.output), THUMB_SIDE)
    if images.overlay is not None:
        encoded["overlay"] = palette_png(images.overlay)
    for name, pixels in images.controls:  # thumbnails, as the input's: a unit's map is no edge map
        encoded[f"{CONTROL_PREFIX}{name}"] = jpeg(rgb_image(pixels), THUMB_SIDE)
    strip = filmstrip([frame for _, frame in images.frames])
    if strip is not None:
        encoded["steps"] = strip
    info: dict[str, Any] = {
        "id": item_id,
        "made_from": made_from,
        "assets": {kind: list(size) for kind, (_, size) in encoded.items()},
        "steps": [step for step, _ in images.frames] if strip is not None else [],
        "infotext": images.infotext,
    }
    files = {asset_name(kind): data for kind, (data, _) in encoded.items()}
    return {**files, INFO_NAME: info_script(info).encode()}, info


def write_item_files(out_dir: Path, item_id: str, files: Mapping[str, bytes]) -> None:
    """An item's encoded review files into its folder, info.js last (a folder without it is incomplete);
    an earlier run's file that these do not replace is removed."""
    if not is_plain_id(item_id):
        raise ValueError(f"item id {item_id!r} cannot name a folder")
    folder = item_folder(out_dir, item_id)
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob(PARTIAL_GLOB):
        if _left_behind(leftover):
            leftover.unlink(missing_ok=True)
    for name, data in files.items():
        if name != INFO_NAME:
            write_review_file(folder / name, data)
    for name in ASSET_NAMES.values():
        if name not in files:
            (folder / name).unlink(missing_ok=True)
    if INFO_NAME in files:
        write_review_file(folder / INFO_NAME, files[INFO_NAME])


def _left_behind(partial: Path) -> bool:
    """A temporary file a killed process left, rather than one another writer is about to rename: untouched
    for LEFTOVER_SECONDS (a review file is written in milliseconds)."""
    try:
        return time.time() - partial.stat().st_mtime > LEFTOVER_SECONDS
    except OSError:
        return False


def write_item_assets(out_dir: Path, item_id: str, images: ItemImages, made_from: str) -> dict[str, Any]:
    """Encode and write an item's review files; return its info."""
    files, info = encode_item_assets(item_id, images, made_from)
    write_item_files(out_dir, item_id, files)
    return info


def info_script(info: Mapping[str, Any]) -> str:
    """info.js: one call of the page's INFO_CALL with the info as JSON (a script, since pages opened from
    file:// may not fetch files)."""
    return f"{INFO_CALL}({json.dumps(info, ensure_ascii=True, separators=(',', ':'))});\n"


def read_item_info(out_dir: Path, item_id: str) -> dict[str, Any] | None:
    """An item's info.js as written by write_item_assets, or None when absent or not ours."""
    if not is_plain_id(item_id):
        return None
    try:
        text = (item_folder(out_dir, item_id) / INFO_NAME).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    prefix, suffix = f"{INFO_CALL}(", ");\n"
    if not (text.startswith(prefix) and text.endswith(suffix)):
        return None
    try:
        info = json.loads(text[len(prefix) : -len(suffix)])
    except ValueError:
        return None
    if not isinstance(info, dict) or info.get("id") != item_id or not isinstance(info.get("assets"), dict):
        return None
    return info


def output_made_from(outcome: ItemOutcome) -> str | None:
    """What an item's review files must have been made from to be current: its output PNG's SHA-256 as
    summary.json records it (None when it records none)."""
    return (outcome.checksums.get(image_name(outcome.id)) or {}).get("sha256")


def write_review_file(path: Path, data: bytes) -> None:
    """Write through a temporary name: a page never shows half a file. Not synced to disk (a sync per
    thumbnail would cost more than the thumbnail): every such file can be made again from the item's own."""
    partial = path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


# --- one writer of a folder's page at a time -------------------------------------------------------------
# Two `rr-controlnet review OUT` at once (or one beside `summarize`) would each make the same items' review
# files. An advisory lock (flock) in review/, waited for; the second writer then finds the first one's files
# current and only writes the page again. The file is removed when released. Without flock (Windows, some
# network file systems) no lock is taken.


@contextlib.contextmanager
def page_lock(folder: Path, wait: float = PAGE_LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the review folder's lock (creating the folder) while the block runs."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_failure(exc, folder) from None
    fd = _acquire_page_lock(folder / PAGE_LOCK_NAME, wait)
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                (folder / PAGE_LOCK_NAME).unlink()  # while still held: nobody locks a file about to vanish
            os.close(fd)


def _acquire_page_lock(path: Path, wait: float) -> int | None:
    """The locked file's descriptor; None where the file system has no flock."""
    try:
        import fcntl
    except ImportError:
        return None
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_failure(exc, path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() > deadline:
                raise OutputFolderError(
                    f"{path.parent.parent}: another process has been writing its review page for over "
                    f"{wait:g} s; try again once it is done"
                ) from None
            time.sleep(PAGE_LOCK_POLL_SECONDS)
            continue
        except OSError:
            os.close(fd)
            return None
        if _same_file(fd, path):  # not removed by its last holder between open and lock
            return fd
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False
