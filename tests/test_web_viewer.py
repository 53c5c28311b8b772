"""The web viewer in a real browser: `--serve-web` shows the batch's blueprint and one named recording.

Drives Debian's Chromium (`apt-get install chromium`, which .ci/run does) with Playwright for Python;
skipped where either is missing or the browser cannot start, unless CI is set, where that is a
failure. Every wait is bounded. A failing check keeps a screenshot of the page in the test's tmp folder.

The web viewer draws everything on a canvas, so the page is read through the handle its index.html
keeps in `window._handle`: `viewer_state()` and `viewer_control()` speak the Viewer Control API
(rerun/v1alpha1/viewer_control.proto) as protobuf bytes, and `save_recording()` returns the RRD the
page holds.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import PrintedLines, free_port, recording_properties, shown_tab, tiny_manifest, unavailable
from review_browser import wait_for_page

from rr_controlnet.recording.layout import item_view_names, run_recording_id

pytestmark = pytest.mark.integration

# Read when the module is collected, before conftest's session fixture sets CI for every test.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",  # WebGL falls back to software rendering (SwiftShader)
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # without these, the closed network refuses connections
    "--disable-component-update",
    "--disable-sync",
]
ITEMS = ("astronaut", "horse")
STEPS = 3  # tiny_manifest's
RUN_SECONDS = 180  # the batch: start, import, build tiny models, generate two items
PAGE_SECONDS = 90  # one page: load the viewer, receive the recording, lay it out
# Runs the CLI on free ports: a fixed port may be held by another test run on the same machine.
CLI_ON_PORTS = (
    "import sys; from rr_controlnet.recording import viewer; "
    "viewer.VIEWER_PORT, viewer.WEB_VIEWER_PORT = int(sys.argv.pop(1)), int(sys.argv.pop(1)); "
    "from rr_controlnet.cli import main; main()"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        unavailable("no Chromium here (apt-get install chromium)")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=chromium, args=CHROMIUM_ARGS, headless=True, timeout=60_000
            )
        except Error as exc:
            unavailable(f"Chromium does not start here: {exc}")
        yield launched
        launched.close()


# --- Reading the page ------------------------------------------------------------------------------


def protobuf_fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one protobuf message: varints as int, length-delimited as bytes."""
    index = 0

    def varint() -> int:
        nonlocal index
        value = shift = 0
        while True:
            byte = data[index]
            index += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while index < len(data):
        key = varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            yield number, varint()
        elif wire_type == 2:
            length = varint()
            yield number, data[index : index + length]
            index += length
        elif wire_type in (1, 5):
            index += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire_type}")


def first(data: bytes, number: int) -> bytes:
    return next((value for field, value in protobuf_fields(data) if field == number), b"")


@dataclass
class PageState:
    """What the page shows: its recordings (store id -> the timeline its time panel is on) and views."""

    recordings: dict[str, str]
    views: dict[str, str]  # view name -> origin
    blueprint: dict
    step_end: int | None


def decode_state(data: bytes) -> tuple[dict[str, str], dict[str, str], int | None]:
    """GetStateResponse: 3 = recordings (1 store_id, 2 timelines, 3 current_time), 5 = views (3 name, 4 origin)."""
    recordings, views, step_end = {}, {}, None
    for number, value in protobuf_fields(data):
        if number == 3:
            cursor_timeline = first(first(value, 3), 1)  # TimeCursor.timeline (a TimelineRef)
            recordings[first(value, 1).decode()] = first(cursor_timeline, 1).decode()
            for field, timeline in protobuf_fields(value):
                if field == 2 and first(first(timeline, 1), 1) == b"step":  # Timeline.range.max
                    step_end = dict(protobuf_fields(first(timeline, 3))).get(2, 0)
        elif number == 5:
            views[first(value, 3).decode()] = first(value, 4).decode()
    return recordings, views, step_end


# A viewer_control() promise resolves on the viewer's next frame: never wait for one unbounded.
VIEWER_CONTROL = """async (request) => Promise.race([
    window._handle.viewer_control(new Uint8Array(request)).then((bytes) => Array.from(bytes)),
    new Promise((_, reject) => setTimeout(() => reject(new Error("viewer_control timed out")), 10000)),
])"""
GET_BLUEPRINT = bytes([12 << 3 | 2, 0])  # ViewerControlRequest.get_blueprint = 12, an empty GetBlueprintRequest
# The RRD the page holds, as base64: a JSON array of a megabyte's numbers takes seconds to cross over.
SAVE_RECORDING = """() => {
    const bytes = window._handle.save_recording();
    let text = "";
    for (let start = 0; start < bytes.length; start += 0x8000) {
        text += String.fromCharCode.apply(null, bytes.subarray(start, start + 0x8000));
    }
    return btoa(text);
}"""


def page_state(page) -> PageState:
    recordings, views, step_end = decode_state(bytes(page.evaluate("() => Array.from(window._handle.viewer_state())")))
    response = first(bytes(page.evaluate(VIEWER_CONTROL, list(GET_BLUEPRINT))), 12)  # GetBlueprintResponse
    blueprint = json.loads(first(response, 2) or b"{}")  # .json
    return PageState(recordings, views, blueprint, step_end)


def expected_views() -> dict[str, str]:
    origins = {
        "input": "input/image",
        "canny": "input/canny",
        "latent": "latent",
        "preview": "preview",
        "output": "output",
        "prompt": "prompt",
        "params": "params",
        "adherence": "adherence/overlay",
        "adherence_scores": "adherence/scores",
    }
    return {
        name: f"/items/{item_id}/{origins[key]}" for item_id in ITEMS for key, name in item_view_names(item_id).items()
    }


def shows_the_whole_batch(state: PageState) -> bool:
    return set(expected_views()) <= set(state.views) and state.step_end == STEPS - 1


@contextlib.contextmanager
def open_page(browser, url: str) -> Iterator[object]:
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    try:
        page.set_default_timeout(PAGE_SECONDS * 1000)
        page.goto(url)
        page.wait_for_function("() => window._handle !== undefined")  # the viewer has started
        yield page
    finally:
        page.close()


def check_page(page, label: str, out_dir: Path, tmp_path: Path) -> None:
    """The page shows the batch blueprint for one named recording, time panel on `step`, first tab open."""
    try:
        state = wait_for_page(page, page_state, shows_the_whole_batch, PAGE_SECONDS)  # every item laid out
        assert state.views == expected_views()  # the batch blueprint, not the viewer's heuristic grid
        assert state.blueprint["/time_panel"]["TimePanelBlueprint"]["timeline"] == "step"
        assert shown_tab(state.blueprint) == ITEMS[0]
        assert state.recordings == {f"Recording:rr_controlnet:{run_recording_id(out_dir)}": "step"}
        held = tmp_path / f"{label}.rrd"
        held.write_bytes(base64.b64decode(page.evaluate(SAVE_RECORDING)))
        assert recording_properties(held)["name"] == "manifest.yaml → out"
    except Exception:
        screenshot = tmp_path / f"web-viewer-{label}.png"
        page.screenshot(path=str(screenshot))
        print(f"screenshot of the page opened {label}: {screenshot}")
        raise


# --- The batch -------------------------------------------------------------------------------------


class ServedBatch:
    """`rr-controlnet batch --serve-web` in a process of its own; its stderr read line by line, with deadlines."""

    def __init__(self, manifest: Path, out_dir: Path):
        ports = [str(free_port()), str(free_port())]
        self.process = subprocess.Popen(
            [sys.executable, "-c", CLI_ON_PORTS, *ports, "batch", str(manifest), "--out", str(out_dir), "--serve-web"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.output = PrintedLines(self.process.stderr, "the batch (stderr)")

    def wait_for(self, pattern: str, seconds: float) -> re.Match:
        return self.output.wait_for(pattern, seconds)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # how a user ends --serve-web
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def test_serve_web_shows_the_batch_blueprint_before_during_and_after_the_run(browser, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    batch = ServedBatch(tiny_manifest(tmp_path), out_dir)
    try:
        page_url = batch.wait_for(r"open (http://\S+)", RUN_SECONDS).group(1)
        # Opened at once, the page meets the recording before the items stream in (while the models
        # load), and takes them in as they come...
        with open_page(browser, page_url) as early:
            batch.wait_for(r"the web viewer stays up", RUN_SECONDS)
            check_page(early, "early", out_dir, tmp_path)
        # ...and opened after the run, it gets the whole batch at once from the server's buffer.
        with open_page(browser, page_url) as late:
            check_page(late, "after", out_dir, tmp_path)
    finally:
        batch.stop()
