"""Interrupted and killed batches lose nothing finished, and a rerun completes the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import BatchProcess, tiny_manifest

from rr_controlnet.outputs.journal import read_outcomes

RERUN = Path(sys.executable).with_name("rerun")


def second_item_started(batch: BatchProcess, out: Path) -> Callable[[], bool]:
    """The first item is complete (and summarized) and the second one's steps have begun."""
    return lambda: (
        (out / "summary.json").exists() and statuses(out).get("astronaut") == "done" and batch.started("horse")
    )


def statuses(out: Path) -> dict[str, str]:
    """What the folder records: summary.json and the journal of outcomes since it was last written."""
    return {item_id: outcome.status for item_id, outcome in read_outcomes(out).items()}


def verify(path: Path) -> None:
    result = subprocess.run([str(RERUN), "rrd", "verify", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def slow_manifest(folder: Path) -> Path:
    """The first item is quick; the second and third run long enough to be interrupted mid-way."""
    return tiny_manifest(
        folder,
        items=[
            {"image": "astronaut.png", "steps": 2},
            {"image": "horse.png", "steps": 40},
            {"id": "horse2", "image": "horse.png", "steps": 40},
        ],
    )


def rerun_completes_without_regenerating(manifest: Path, out: Path) -> None:
    finished = (out / "astronaut.rrd").stat().st_mtime_ns
    result = subprocess.run(
        [sys.executable, "-m", "rr_controlnet", "batch", str(manifest), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "3 done, 0 failed, 0 pending, 1 skipped (up to date)" in result.stderr
    assert (out / "astronaut.rrd").stat().st_mtime_ns == finished
    assert statuses(out) == {"astronaut": "done", "horse": "done", "horse2": "done"}
    assert not list(out.glob("*.partial")) and not list(out.glob(".*.partial"))
    for path in out.glob("*.rrd"):
        verify(path)


@pytest.mark.parametrize(("sent", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_at_the_current_step_and_keeps_finished_items(
    tmp_path: Path, sent: signal.Signals, exit_code: int
) -> None:
    manifest = slow_manifest(tmp_path)
    out = tmp_path / "out"
    batch = BatchProcess(manifest, out)
    batch.wait_until(second_item_started(batch, out), "the second item never started")
    batch.process.send_signal(sent)
    output = batch.finish()
    assert batch.process.returncode == exit_code, output
    assert f"stopped by {sent.name}" in output
    assert statuses(out) == {"astronaut": "done", "horse": "pending", "horse2": "pending"}
    assert sorted(path.name for path in out.iterdir()) == [
        "astronaut.png",
        "astronaut.rrd",
        "batch.rbl",
        "index.html",
        "overview.png",
        "review",
        "summary.json",
        "summary.md",
    ]
    verify(out / "astronaut.rrd")
    if sent == signal.SIGINT:
        rerun_completes_without_regenerating(manifest, out)


def test_a_killed_batch_leaves_no_truncated_final_file_and_resumes(tmp_path: Path) -> None:
    manifest = slow_manifest(tmp_path)
    out = tmp_path / "out"
    batch = BatchProcess(manifest, out)
    batch.wait_until(second_item_started(batch, out), "the second item never started")
    os.kill(batch.process.pid, signal.SIGKILL)
    batch.finish()
    final_files = sorted(path.name for path in out.iterdir() if not path.name.startswith("."))
    assert final_files == ["astronaut.png", "astronaut.rrd", "batch.rbl", "review", "summary.json"]
    verify(out / "astronaut.rrd")
    assert statuses(out) == {"astronaut": "done", "horse": "pending", "horse2": "pending"}
    rerun_completes_without_regenerating(manifest, out)
