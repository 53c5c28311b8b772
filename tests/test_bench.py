"""The recording benchmark runs end to end on the tiny model and writes all three ways to JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import bench_module

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_measures_bare_rr_controlnet_and_original(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "benchmark.py"),
        *("--model", "tiny-sd15", "--size", "64", "--steps", "2", "--items", "1", "--repeats", "1"),
        *("--device", "cpu", "--threads", "1", "--out", str(tmp_path / "recordings"), "--json", str(results)),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr

    report = json.loads(results.read_text())
    by_way = {result["way"]: result for result in report["results"]}
    assert list(by_way) == ["bare", "rr-controlnet", "original"]
    for result in by_way.values():
        assert result["seconds_per_item"] > 0
        assert result["ratio_vs_bare"] > 0
        assert result["peak_rss_bytes"] > 0
    assert by_way["bare"]["ratio_vs_bare"] == 1.0
    assert by_way["bare"]["rrd_bytes_per_item"] is None
    for way in ("rr-controlnet", "original"):
        assert by_way[way]["rrd_bytes_per_item"] > 0
        assert by_way[way]["max_output_difference_vs_bare"] == 0  # recording never changes the image
    # The batch's own runner writes what a batch writes per item: the recording, the image and its review files.
    assert sorted(path.name for path in (tmp_path / "recordings" / "rr-controlnet").iterdir()) == [
        "astronaut.png",
        "astronaut.rrd",
        "review",
    ]
    assert "rr-controlnet" in completed.stdout and "original" in completed.stdout


def test_adherence_benchmark_times_real_and_adversarial_maps(tmp_path: Path) -> None:
    results = tmp_path / "adherence.json"
    command = [sys.executable, str(ROOT / "bench" / "adherence.py"), "--sides", "64", "--repeats", "1", "--methods"]
    completed = subprocess.run([*command, "--json", str(results)], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(results.read_text())
    sets = {row["set"] for row in report["rows"]}
    assert sets == {"realistic", "adversarial"}
    assert all(row["seconds"] >= 0 and 0 <= row["f1_tolerant"] <= 1 for row in report["rows"])
    hard = [row for row in report["rows"] if row["set"] == "adversarial"]
    assert {row["map"] for row in hard} >= {"grid", "every pixel", "noise against other noise"}
    assert all(0 < row["longest_wait_for_stop_seconds"] <= row["seconds"] * 1.5 + 0.05 for row in hard)
    assert "a stop asked while scoring waits at most" in completed.stdout
    assert report["methods"] and all(row["ratio"] for row in report["methods"])
    assert "| realistic | 64 |" in completed.stdout


def test_the_ray_benchmarks_uneven_items_split_badly_by_round_robin_and_its_table_reads() -> None:
    scale_ray = bench_module("scale_ray")
    items = scale_ray.uneven_items()
    assert len(items) == 24 and len({item["id"] for item in items}) == 24
    shard_sizes = [{item["size"] for item in items[shard::2]} for shard in range(2)]
    assert shard_sizes == [{320}, {64}]  # the premise: shard 0 of 2 gets every large item
    engine = {
        "manifest": "sweep",
        "items": 24,
        "work_seconds": 86.0,
        "heavy_to_light": 3.4,
        "ideal_seconds": 50.8,
        "ray_seconds": 54.7,
        "static_halves_seconds": 73.9,
        "ray_vs_ideal": 1.077,
        "static_vs_ideal": 1.454,
        "own_ray_seconds": None,
    }
    trip = {"items": [24, 48], "overhead_seconds_per_item": -0.007, "local_seconds_per_item": 0.083}
    table = scale_ray.format_table([engine], {**trip, "bytes_back_per_item": 426698}, "x86_64, 2 cores")
    assert "| sweep | 24 | 86.0 | 50.8 | 54.7 | 73.9 | 1.08 | 1.45 | - | - |" in table
    assert "process: -7 ms per item (83 ms per item locally; 427 kB back per item)" in table
