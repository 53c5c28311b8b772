"""A full disk fails what does not fit, leaves no broken file under a final name, and never hangs.

Runs on a small tmpfs; skipped where this process cannot mount one (mounting needs root), failed instead
with CI set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import summary_items, tiny_manifest, unavailable

RERUN = Path(sys.executable).with_name("rerun")
DISK_BYTES = 2 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def leave_free(disk: Path, free_bytes: int) -> Path:
    """Fill the disk with a ballast file until only about `free_bytes` are free."""
    stats = os.statvfs(disk)
    ballast = disk / "ballast"
    ballast.write_bytes(bytes(max(0, stats.f_bavail * stats.f_frsize - free_bytes)))
    return ballast


def batch(manifest: Path, out: Path) -> subprocess.CompletedProcess:
    # A hang would be a failure of its own: the timeout turns it into one.
    command = [sys.executable, "-m", "rr_controlnet", "batch", str(manifest), "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


summary = summary_items


def three_horses(folder: Path) -> Path:
    items = [{"id": "h1", "image": "horse.png"}, {"id": "h2", "image": "horse.png", "seed": 2}]
    return tiny_manifest(folder, items=[*items, {"id": "h3", "image": "horse.png", "seed": 3}])


def test_a_recording_that_does_not_fit_fails_its_item_and_stops_the_batch(tmp_path: Path, small_disk: Path) -> None:
    manifest = three_horses(tmp_path)
    out = small_disk / "out"
    ballast = leave_free(small_disk, 600 * 1024)  # the batch's own files and one item fit, not two
    result = batch(manifest, out)
    assert result.returncode == 1, result.stderr
    items = summary(out)
    assert [items[item_id]["status"] for item_id in ("h1", "h2", "h3")] == ["done", "failed", "pending"]
    # The reason as summary.json keeps it: the file by its name, not the machine's path to it.
    assert items["h2"]["error"] == "cannot write h2.rrd: no space left on device"
    assert f"stopped: no space left on device in {out}" in result.stderr
    assert sorted(
        path.name for path in out.iterdir() if path.suffix in (".rrd", ".png") and path.stem != "overview"
    ) == [
        "h1.png",
        "h1.rrd",
    ]
    assert not list(out.glob(".*.partial"))
    verify = subprocess.run([str(RERUN), "rrd", "verify", str(out / "h1.rrd")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr

    ballast.unlink()  # space again: the rerun finishes what is missing and keeps what is done
    finished = (out / "h1.rrd").stat().st_mtime_ns
    result = batch(manifest, out)
    assert result.returncode == 0, result.stderr
    assert "3 done, 0 failed, 0 pending, 1 skipped (up to date)" in result.stderr
    assert (out / "h1.rrd").stat().st_mtime_ns == finished


def test_a_blueprint_that_does_not_fit_is_not_left_behind(tmp_path: Path, small_disk: Path) -> None:
    manifest = three_horses(tmp_path)
    out = small_disk / "out"
    leave_free(small_disk, 100 * 1024)  # room for summary.json, not for batch.rbl (three tabs)
    result = batch(manifest, out)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot write {out}/batch.rbl: no space left on device; "
        "finished items are complete: rerun to finish the rest"
    )
    assert "Traceback" not in result.stderr
    assert not (out / "batch.rbl").exists() and not list(out.glob(".*.partial"))
