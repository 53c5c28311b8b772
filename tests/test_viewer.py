"""The real Rerun viewer, headless: the batch's blueprint shows every view without errors.

Needs a Vulkan driver (Debian's mesa-vulkan-drivers, which .ci/run installs); skipped elsewhere
unless CI is set, where a missing driver is a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import free_port, run_cli, shown_tab, tiny_manifest, unavailable
from stand_in import outputs_following_controls

pytestmark = pytest.mark.integration

VULKAN_DRIVERS = Path("/usr/share/vulkan/icd.d")
# Read when the module is collected, before conftest's session fixture sets CI for every test.


def require_vulkan() -> None:
    if not any(VULKAN_DRIVERS.glob("*.json")):
        unavailable("no Vulkan driver here (apt-get install mesa-vulkan-drivers)")


@pytest.fixture(scope="module")
def viewer():
    require_vulkan()
    from rerun.experimental import ViewerClient

    client = ViewerClient.spawn(
        headless=True,
        port=free_port(),
        hide_welcome_screen=True,
        detach_process=False,
        executable_path=str(Path(sys.executable).with_name("rerun")),
    )
    yield client
    client.quit()


def test_the_batch_blueprint_shows_every_view_without_errors(viewer, tmp_path: Path) -> None:
    with outputs_following_controls("shift"):  # outputs that look like a working ControlNet's, not noise
        result = run_cli(
            "batch", str(tiny_manifest(tmp_path, size=128)), "--out", str(tmp_path / "out"), exit_code=None
        )
    assert result.exit_code == 0, result.output
    for path in sorted((tmp_path / "out").glob("*.rrd")):
        viewer.open(str(path))

    expected = {}
    for item_id in ("astronaut", "horse"):
        for name, origin in (
            ("input", "input/image"),
            ("canny", "input/canny"),
            ("latent", "latent"),
            ("preview", "preview"),
            ("output", "output"),
            ("edges followed", "adherence/overlay"),
            ("prompt", "prompt"),
            ("params", "params"),
            ("control adherence", "adherence/scores"),
        ):
            expected[f"{item_id}: {name}"] = f"/items/{item_id}/{origin}"

    deadline = time.monotonic() + 30
    while True:
        state = viewer.get_state()
        views = {view.name: view for view in state.views}
        if set(expected) <= set(views) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(state.recordings) == 1  # both item files merged into one recording
    assert state.recordings[0].current_timeline == "step"
    assert shown_tab(viewer.get_blueprint().blueprint) == "astronaut"  # the first item, whichever file came last
    assert {name: views[name].origin for name in expected if name in views} == expected
    assert all(views[name].reports == [] for name in expected), {name: views[name].reports for name in expected}

    recorded_paths = {entity.entity_path for entity in viewer.get_recording_schema(paths_only=True).entities}
    assert set(expected.values()) <= recorded_paths  # every view's origin holds data

    screenshot = tmp_path / "viewer.png"
    viewer.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000


def test_connect_streams_every_item_live_to_a_running_viewer(viewer, tmp_path: Path) -> None:
    before = {recording.store_id for recording in viewer.get_state().recordings}
    manifest = tiny_manifest(tmp_path)
    result = run_cli(
        "batch", str(manifest), "--out", str(tmp_path / "out"), "--connect", viewer.url, "--no-save", exit_code=None
    )
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "out").glob("*.rrd"))  # --no-save: the viewer got the only copy
    assert (tmp_path / "out" / "horse.png").exists()

    deadline = time.monotonic() + 30
    while True:
        new = [r for r in viewer.get_state().recordings if r.store_id not in before]
        if new or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    (streamed,) = new  # one recording for the batch, nothing beside it
    assert streamed.current_timeline == "step"
    assert shown_tab(viewer.get_blueprint(store_id=streamed.store_id).blueprint) == "astronaut"
    step = {timeline.name: timeline for timeline in streamed.timelines}["step"]
    assert (step.start, step.end) == (0, 2)
    paths = {entity.entity_path for entity in viewer.get_recording_schema(streamed.store_id, paths_only=True).entities}
    assert {"/items/astronaut/latent", "/items/horse/output", "/items/horse/preview"} <= paths


def test_view_opens_the_whole_batch_on_its_first_item(tmp_path: Path) -> None:
    """`rr-controlnet view`'s command, headless: files load in no fixed order, the first tab opens anyway."""
    require_vulkan()
    from rerun.experimental import ViewerClient

    from rr_controlnet.recording.viewer import require_reachable, viewer_command

    result = run_cli("batch", str(tiny_manifest(tmp_path)), "--out", str(tmp_path / "out"), exit_code=None)
    assert result.exit_code == 0, result.output
    rerun, *files = viewer_command(tmp_path / "out")
    port = free_port()
    # A session of its own: `rerun` beside the Python starts the viewer binary as its child.
    process = subprocess.Popen([rerun, "--headless", "--port", str(port), *files], start_new_session=True)
    try:
        url = f"rerun+http://127.0.0.1:{port}/proxy"
        require_reachable(url, wait_seconds=30)
        client = ViewerClient.connect(url)
        deadline = time.monotonic() + 30
        while True:
            state = client.get_state()
            if len({view.name for view in state.views}) == 18 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(state.recordings) == 1 and state.recordings[0].current_timeline == "step"
        assert shown_tab(client.get_blueprint().blueprint) == "astronaut"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
