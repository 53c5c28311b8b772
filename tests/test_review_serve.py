"""`rr-controlnet review OUT --serve`: the folder and the Rerun web viewer over HTTP, on loopback unless
`--bind` says otherwise, stopped by Ctrl-C; the page's "Open in Rerun" opens an item's recording in the
web viewer (headless Chromium, as tests/test_web_viewer.py drives it).

Every server runs as a CLI process of its own, read line by line with deadlines and signalled by pid.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from helpers import PrintedLines, free_port, run_batch, tiny_manifest
from review_browser import wait_for_page
from test_web_viewer import PageState, browser, page_state  # noqa: F401 - the fixture, and reading the viewer

STOP_SECONDS = 10  # Ctrl-C to exit
START_SECONDS = 120  # the page written again, the web viewer's files taken on first use


class ServedFolder:
    """`rr-controlnet review OUT --serve ...` in a process of its own."""

    def __init__(self, out_dir: Path, *args: str):
        command = [sys.executable, "-m", "rr_controlnet", "review", str(out_dir), "--serve", *args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = PrintedLines(self.process.stdout, "review --serve")

    @property
    def seen(self) -> list[str]:
        return self.output.seen

    def wait_for(self, pattern: str, seconds: float = START_SECONDS) -> re.Match:
        return self.output.wait_for(pattern, seconds)

    def listening(self) -> list[tuple[str, int]]:
        connections = psutil.Process(self.process.pid).net_connections(kind="tcp")
        return [(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]

    def interrupt(self) -> int:
        """Ctrl-C, as a user stops it: its exit code, within STOP_SECONDS."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=STOP_SECONDS)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_SECONDS)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("served")
    run_batch(tiny_manifest(folder), folder / "out")
    return folder / "out"


@pytest.fixture
def served(out_dir: Path) -> Iterator[list[ServedFolder]]:
    started: list[ServedFolder] = []
    yield started
    for server in started:
        server.kill()


def test_review_serve_listens_on_loopback_and_stops_on_ctrl_c(out_dir: Path, served) -> None:
    port = free_port()
    server = ServedFolder(out_dir, "--port", str(port))
    served.append(server)
    url = server.wait_for(r"serving (http://\S+) \(Ctrl-C stops\)").group(1)
    assert url == f"http://127.0.0.1:{port}/index.html"
    assert server.listening() == [("127.0.0.1", port)]
    assert "warning" not in "".join(server.seen)
    with urllib.request.urlopen(url, timeout=10) as page:
        assert b'<div id="app">' in page.read()
    viewer = f"http://127.0.0.1:{port}/rerun-viewer/"
    with urllib.request.urlopen(viewer, timeout=10) as index:
        assert b"re_viewer.js" in index.read()
    with urllib.request.urlopen(viewer + "re_viewer_bg.wasm", timeout=30) as wasm:
        assert wasm.headers["Content-Type"] == "application/wasm" and wasm.read(4) == b"\0asm"
    assert server.interrupt() == 0
    assert "stopped" in server.wait_for(r"stopped", STOP_SECONDS).group(0)


def test_bind_listens_where_it_is_told_with_one_warning_line(out_dir: Path, served) -> None:
    port = free_port()
    server = ServedFolder(out_dir, "--port", str(port), "--bind", "0.0.0.0")
    served.append(server)
    server.wait_for(r"serving http://")
    warnings = [line for line in server.seen if "warning" in line]
    assert warnings == ["warning: listening on 0.0.0.0: prompts and images become visible to that network\n"]
    assert server.listening() == [("0.0.0.0", port)]  # only looked at: no traffic beyond loopback
    assert server.interrupt() == 0


def test_a_port_in_use_is_one_line_and_exit_2(out_dir: Path, served) -> None:
    port = free_port()
    first = ServedFolder(out_dir, "--port", str(port))
    served.append(first)
    first.wait_for(r"serving http://")
    second = ServedFolder(out_dir, "--port", str(port))
    served.append(second)
    assert second.process.wait(timeout=START_SECONDS) == 2
    second.wait_for(rf"error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in "".join(second.seen)


VIEWER_SECONDS = 120  # the web viewer's 40 MB of WebAssembly started in software, the recording read


def shows_horse(state: PageState) -> bool:
    return "/items/horse/output" in set(state.views.values()) and bool(state.recordings)


def test_open_in_rerun_loads_the_items_recording_in_the_web_viewer(
    out_dir: Path,
    served,
    browser,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    from playwright.sync_api import Error as PlaywrightError

    port = free_port()
    server = ServedFolder(out_dir, "--port", str(port))
    served.append(server)
    url = server.wait_for(r"serving (http://\S+) ")[1]
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    try:
        page.set_default_timeout(VIEWER_SECONDS * 1000)
        page.goto(url)
        page.wait_for_selector("body[data-ready='true']")
        link = page.locator("[data-open-viewer='horse']")
        href = link.get_attribute("href")
        recording = f"http://127.0.0.1:{port}/horse.rrd"
        assert href == f"http://127.0.0.1:{port}/rerun-viewer/?url={urllib.parse.quote(recording, safe='')}"
        link.click()
        page.wait_for_function("() => window._handle !== undefined")
        # Until the recording is read, the viewer has no state to give (a PlaywrightError).
        state = wait_for_page(page, page_state, shows_horse, VIEWER_SECONDS, not_yet=(PlaywrightError,))
        origins = set(state.views.values())
        assert "/items/horse/output" in origins and "/items/horse/latent" in origins  # the batch's blueprint
        assert len(state.recordings) == 1 and state.step_end == 2  # the item's one recording, every step of it
    except Exception:
        page.screenshot(path=str(tmp_path / "served-viewer.png"))
        print(f"screenshot: {tmp_path / 'served-viewer.png'}")
        raise
    finally:
        page.close()
