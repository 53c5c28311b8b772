"""One manifest across processes: torchrun ranks and --shard runs give what one process gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import read_recording, run_cli, tiny_manifest
from PIL import Image

from rr_controlnet.run.distributed import launched_process
from rr_controlnet.spec import Shard, parse_shard

THREE_ITEMS = [{"image": "astronaut.png"}, {"image": "horse.png", "seed": 5}, {"id": "third", "image": "horse.png"}]


def batch(*args: str) -> None:
    run_cli("batch", *args)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("single")
    manifest = tiny_manifest(folder, items=THREE_ITEMS)
    # One thread, as each torchrun worker has (OMP_NUM_THREADS=1): CPU results depend on the thread count.
    batch(str(manifest), "--out", str(folder / "out"), "--threads", "1")
    return manifest, folder / "out"


def assert_same_batch(expected: Path, actual: Path) -> None:
    assert sorted(path.name for path in actual.iterdir()) == sorted(path.name for path in expected.iterdir())
    for item_id in ("astronaut", "horse", "third"):
        np.testing.assert_array_equal(
            np.asarray(Image.open(actual / f"{item_id}.png")), np.asarray(Image.open(expected / f"{item_id}.png"))
        )
    summary = json.loads((actual / "summary.json").read_text())
    assert [(item["id"], item["status"]) for item in summary["items"]] == [
        ("astronaut", "done"),
        ("horse", "done"),
        ("third", "done"),
    ]
    assert summary["shard"] is None
    recording_ids = {read_recording(path).recording_id for path in actual.glob("*.rrd")}
    assert recording_ids == {summary["recording_id"]}


@pytest.mark.integration
def test_torchrun_processes_split_the_items_and_rank_0_summarizes(single_process: tuple[Path, Path]) -> None:
    manifest, expected = single_process
    out = manifest.parent / "torchrun-out"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "rr_controlnet", "batch"]
    result = subprocess.run([*command, str(manifest), "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_batch(expected, out)


def test_shard_runs_and_summarize_give_the_same_batch(single_process: tuple[Path, Path]) -> None:
    manifest, expected = single_process
    out = manifest.parent / "shards-out"
    batch(str(manifest), "--out", str(out), "--shard", "1/2", "--threads", "1")
    shard_files = sorted(path.name for path in out.iterdir())
    assert "third.png" not in shard_files and "horse.png" in shard_files  # items 1 and 3 belong to shard 0
    batch(str(manifest), "--out", str(out), "--shard", "0/2", "--threads", "1")
    result = run_cli("summarize", str(out), exit_code=None)
    assert result.exit_code == 0, result.output
    assert "3 done, 0 failed, 0 pending" in result.output
    assert_same_batch(expected, out)


def test_a_rerun_of_a_shard_resumes_its_own_items(single_process: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, _ = single_process
    out = tmp_path / "out"
    batch(str(manifest), "--out", str(out), "--shard", "0/2")
    result = run_cli("batch", str(manifest), "--out", str(out), "--shard", "0/2", exit_code=None)
    assert result.exit_code == 0 and "2 skipped (up to date)" in result.output


def test_shards_are_round_robin_and_cover_every_item_once() -> None:
    shards = [parse_shard(f"{index}/3") for index in range(3)]
    owners = [[shard.index for shard in shards if shard.owns(position)] for position in range(1, 11)]
    assert owners == [[0], [1], [2], [0], [1], [2], [0], [1], [2], [0]]


@pytest.mark.parametrize("text", ["2/2", "-1/2", "1", "a/b", "0/0"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_shard(text)


def test_launcher_environment_gives_the_rank() -> None:
    assert launched_process({}) is None
    assert launched_process({"WORLD_SIZE": "1", "RANK": "0"}) is None
    process = launched_process({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"})
    assert (process.shard, process.local_rank, process.is_coordinator) == (Shard(2, 4), 0, False)


def test_bad_shard_option_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("batch", str(tiny_manifest(tmp_path)), "--shard", "3/2", exit_code=None)
    assert result.exit_code == 2 and "--shard: the shard index must be 0..1" in result.output


def test_each_launched_process_gets_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from rr_controlnet.run.distributed import LaunchedProcess, device_for

    process = LaunchedProcess(rank=5, world_size=8, local_rank=1)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 4)
    assert device_for(process, "auto") == "cuda:1"
    assert device_for(process, "cpu") == "cpu"
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert device_for(process, "auto") == "cpu"  # CPU processes stay on the CPU
