"""The review pages in a real browser: Debian's Chromium driven by Playwright for Python, for the tests and for
README's screenshot of the example batch's page; a bounded wait for a page still changing (the web viewer's).

    python tests/review_browser.py screenshot manifests/example-output docs/review-page.png

Also the few manifest helpers the review tests need (a small batch over the bundled photos, a sweep, an
item whose image cannot be decoded).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

IMAGES = Path(__file__).resolve().parent.parent / "manifests" / "images"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # without these, the closed network refuses connections
    "--disable-component-update",
    "--disable-sync",
]
PAGE_SECONDS = 30  # opening one page from disk and drawing it
POLL_SECONDS = 0.5  # between readings of a page that is still changing

Reading = TypeVar("Reading")


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium (raises when there is none or it does not start)."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError("no Chromium here (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class WatchedPage:
    """A page with what it said on its console (errors), threw, and asked for."""

    page: object
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@contextlib.contextmanager
def open_page(browser, path: Path, width: int = 1400, height: int = 900) -> Iterator[WatchedPage]:
    """`path` (an index.html) opened from file://, once its script has drawn it."""
    page = browser.new_page(viewport={"width": width, "height": height})
    watched = WatchedPage(page)
    page.on("console", lambda message: message.type == "error" and watched.errors.append(message.text))
    page.on("pageerror", lambda error: watched.errors.append(f"uncaught: {error}"))
    page.on("request", lambda request: watched.requests.append(request.url))
    try:
        page.set_default_timeout(PAGE_SECONDS * 1000)
        page.goto(Path(path).resolve().as_uri())
        page.wait_for_selector("body[data-ready='true']")
        yield watched
    finally:
        page.close()


def broken_images(page) -> list[str]:
    """Sources of the page's visible <img> elements that did not load (each scrolled into view first, so that
    lazy ones load too)."""
    broken = []
    for image in page.locator("img:visible").all():
        image.scroll_into_view_if_needed()
        loaded = image.evaluate(
            """(img) => new Promise((resolve) => {
                const done = () => resolve(img.naturalWidth > 0);
                if (img.complete) return done();
                img.addEventListener("load", done, { once: true });
                img.addEventListener("error", done, { once: true });
                setTimeout(done, 10000);
            })"""
        )
        if not loaded:
            broken.append(image.get_attribute("src"))
    return broken


def wait_for_page(
    page,
    read: Callable[[object], Reading],
    done: Callable[[Reading], bool],
    seconds: float,
    not_yet: tuple[type[Exception], ...] = (),
) -> Reading:
    """`read(page)` every POLL_SECONDS until `done` holds of what it read, or `seconds` have passed: the last
    reading either way, for the test to assert on. A `not_yet` exception means the page cannot be read yet (the
    web viewer still loading its recording); past the deadline it is raised."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            reading = read(page)
        except not_yet:
            if time.monotonic() > deadline:
                raise
        else:
            if done(reading) or time.monotonic() > deadline:
                return reading
        time.sleep(POLL_SECONDS)


def screenshot(page_path: Path, png: Path, width: int = 900, height: int = 500, layout_width: int = 1260) -> Path:
    """A screenshot of a review page laid out `layout_width` CSS pixels wide and shrunk to `width`, reduced to
    a palette PNG (small enough for a README)."""
    from PIL import Image

    scale = layout_width / width
    with chromium() as browser, open_page(browser, page_path, layout_width, round(height * scale)) as watched:
        data = watched.page.screenshot()
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    image = image.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    png.parent.mkdir(parents=True, exist_ok=True)
    image.save(png, optimize=True)
    return png


# --- small batches ---------------------------------------------------------------------------------------


def sample_image(name: str, folder: Path) -> str:
    shutil.copy(IMAGES / name, folder / name)
    return name


def write_manifest(folder: Path, items: list[dict], steps: int = 2, size: int = 64) -> Path:
    """A manifest on the tiny model over `items` (images copied from manifests/images when they name one)."""
    for item in items:
        if (IMAGES / item["image"]).is_file():
            sample_image(item["image"], folder)
    document = {
        "version": 1,
        "model": "tiny-sd15",
        "defaults": {"prompt": "a futuristic research complex", "steps": steps, "size": size},
        "items": items,
    }
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshots of review pages.")
    commands = parser.add_subparsers(dest="command", required=True)
    shot = commands.add_parser("screenshot", help="a screenshot of OUT/index.html")
    shot.add_argument("out_dir", type=Path)
    shot.add_argument("png", type=Path)
    shot.add_argument("--width", type=int, default=900)
    shot.add_argument("--height", type=int, default=500)
    args = parser.parse_args(argv)
    path = screenshot(args.out_dir / "index.html", args.png, args.width, args.height)
    print(f"{path}: {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
