"""Whole batches whose outputs look like a working ControlNet's (near-copies of each item's control image,
tests/stand_in.py): what adherence, compare, the review files and the recordings make of them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import read_recording, run_batch, run_cli, summary_items, tiny_manifest
from stand_in import outputs_following_controls

ROOT = Path(__file__).resolve().parent.parent
SIZE = 256  # near-copies need room for their edges; the tiny model takes 2 steps at 256 px in a second


batch = run_batch


@pytest.fixture(scope="module")
def followed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("followed")
    manifest = tiny_manifest(folder, size=SIZE, steps=2)
    with outputs_following_controls({"astronaut": "shift", "horse": "pure_noise"}):
        batch(manifest, folder / "out")
    return manifest, folder / "out"


def test_outputs_that_follow_their_controls_score_as_such(followed: tuple[Path, Path]) -> None:
    _, out = followed
    items = summary_items(out)
    assert items["astronaut"]["adherence"]["tolerant"]["f1"] > 0.98
    assert items["astronaut"]["adherence"]["strict"]["f1"] < 0.6  # one pixel off, pixel by pixel
    assert items["horse"]["adherence"]["tolerant"]["f1"] < 0.4
    summary = (out / "summary.md").read_text()
    assert "| astronaut |" in summary and (out / "overview.png").is_file()
    recording = read_recording(out / "astronaut.rrd")
    (f1,) = recording.timed("/items/astronaut/adherence/f1_tolerant")
    assert f1.columns["Scalars:scalars"] == [pytest.approx(items["astronaut"]["adherence"]["tolerant"]["f1"])]


def test_compare_tells_near_copies_apart_and_calls_equal_ones_the_same(
    followed: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, _ = followed
    for name, kind in (("accepted", "identical"), ("again", "identical"), ("jpeg", "jpeg")):
        with outputs_following_controls({"astronaut": kind, "horse": "pure_noise"}):
            batch(manifest, tmp_path / name)
    result = run_cli("compare", str(tmp_path / "accepted"), str(tmp_path / "again"), exit_code=None)
    assert result.exit_code == 0, result.output
    # The same parameters, the astronaut re-encoded as JPEG (quality 50): levels apart on average, past 1.0.
    result = run_cli("compare", str(tmp_path / "accepted"), str(tmp_path / "jpeg"), exit_code=None)
    assert result.exit_code == 1, result.output
    document = json.loads((tmp_path / "jpeg" / "compare" / "compare.json").read_text())
    astronaut, horse = document["items"]  # worst first
    assert (astronaut["id"], astronaut["status"], horse["status"]) == ("astronaut", "changed", "same")
    assert astronaut["params_changed"] == {} and not any("made another way" in note for note in astronaut["notes"])
    assert 1.0 < astronaut["image"]["mean_abs"] < 10 and astronaut["image"]["ssim"] > 0.8
    assert astronaut["first_divergent_step"] is None  # the pipeline ran the same: only the output differs


def test_a_stop_while_an_output_is_scored_ends_the_batch_with_the_item_pending(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path, items=[{"image": "astronaut.png"}], size=SIZE, steps=2)
    scoring = tmp_path / "scoring-started"
    command = [sys.executable, str(ROOT / "tests" / "stand_in.py"), "shift", "--slow-matching", "3", str(scoring)]
    command += ["--", "batch", str(manifest), "--out", str(tmp_path / "out"), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while not scoring.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scoring.exists(), process.communicate()[0]
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 143, output
    assert "stopped by SIGTERM" in output
    assert summary_items(tmp_path / "out")["astronaut"]["status"] == "pending"
    leftovers = [path.name for path in (tmp_path / "out").iterdir() if path.name.startswith(".")]
    assert leftovers == [], leftovers  # no partial file, no lock
    assert not (tmp_path / "out" / "astronaut.png").exists()
