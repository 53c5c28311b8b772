"""`rr-controlnet batch --ray`: items on Ray workers from one queue, the folder written by the driver.

These start a local Ray with two CPU workers, one thread each, on the tiny model.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    BatchProcess,
    bench_module,
    free_port,
    read_recording,
    read_summary,
    recording_properties,
    run_batch,
    statuses,
    summary_items,
    tiny_manifest,
)

pytestmark = pytest.mark.integration

pytest.importorskip("ray", reason="the ray extra: pip install 'rr-controlnet[ray]'")

RAY = ("--ray", "--workers", "2", "--threads", "1")
WORKER_LINE = re.compile(r"ray: worker (\d+) \(pid (\d+) on ")


def four_items(folder: Path, steps: int = 3) -> Path:
    return tiny_manifest(
        folder,
        steps=steps,
        items=[
            {"image": "astronaut.png"},
            {"image": "horse.png", "seed": 5},
            {"id": "horse-wide", "image": "horse.png", "size": [96, 64]},
            {"id": "astronaut-9", "image": "astronaut.png", "seed": 9},
        ],
    )


def worker_pids(output: str) -> dict[int, int]:
    """Each ready worker's pid, by worker number, from the batch's log."""
    return {int(worker): int(pid) for worker, pid in WORKER_LINE.findall(output)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("batch_size", ["1", "2"])
def test_ray_outputs_equal_a_single_process_run_at_one_thread(tmp_path: Path, batch_size: str) -> None:
    manifest = four_items(tmp_path)
    on_ray = run_batch(manifest, tmp_path / "ray", *RAY, "--batch-size", batch_size)
    run_batch(manifest, tmp_path / "local", "--threads", "1", "--batch-size", batch_size)
    assert len(worker_pids(on_ray.output)) == 2, on_ray.output
    for item_id in ("astronaut", "horse", "horse-wide", "astronaut-9"):
        made_on_ray = (tmp_path / "ray" / f"{item_id}.png").read_bytes()
        assert made_on_ray == (tmp_path / "local" / f"{item_id}.png").read_bytes(), item_id
    # Whichever worker made them, the items' files are one recording: they merge in the viewer.
    recordings = [read_recording(path) for path in sorted((tmp_path / "ray").glob("*.rrd"))]
    assert len({(r.application_id, r.recording_id) for r in recordings}) == 1 and len(recordings) == 4
    assert len({tuple(sorted(recording_properties(path).items())) for path in (tmp_path / "ray").glob("*.rrd")}) == 1
    summary = read_summary(tmp_path / "ray")
    assert summary["run"]["engine"] == "ray" and len(summary["run"]["workers"]) == 2
    assert statuses(tmp_path / "ray") == dict.fromkeys(("astronaut", "horse", "horse-wide", "astronaut-9"), "done")
    assert (tmp_path / "ray" / "index.html").exists() and (tmp_path / "ray" / "batch.rbl").exists()
    # The driver wrote and verified every file: a rerun, with or without Ray, finds them up to date.
    assert "4 skipped (up to date)" in run_batch(manifest, tmp_path / "ray", "--threads", "1").output
    files = [path.name for path in (tmp_path / "ray").iterdir() if path.suffix in (".png", ".rrd")]
    assert sorted(files) == sorted(
        path.name for path in (tmp_path / "local").iterdir() if path.suffix in (".png", ".rrd")
    )


def test_a_worker_killed_mid_item_has_its_items_retried_elsewhere(tmp_path: Path) -> None:
    # Enough work that the dead worker's replacement loads while the other still has items to do.
    images = ("astronaut.png", "horse.png")
    items = [{"id": f"item-{index}", "image": images[index % 2], "seed": index} for index in range(8)]
    manifest = tiny_manifest(tmp_path, steps=60, items=items)
    out = tmp_path / "out"
    batch = BatchProcess(manifest, out, *RAY)
    batch.wait_until(lambda: len(worker_pids(batch.output)) == 2, "the workers never became ready")
    os.kill(worker_pids(batch.output)[1], signal.SIGKILL)
    output = batch.finish()
    assert batch.process.returncode == 0, output
    assert "ray: worker 1 " in output and "died" in output and "its items go to another worker" in output
    items = summary_items(out)
    assert {entry["status"] for entry in items.values()} == {"done"}
    retried = [entry for entry in items.values() if entry["retries"]]
    assert retried, "no item records the worker that died under it"
    assert all(entry["retries"][0].startswith("worker 1 (pid ") for entry in retried)
    # Every worker that ran is in the run record: the replacement too, and the lost one says so.
    assert "ray: worker 3 " in output and "ready, in place of a lost worker" in output
    workers = {entry["worker"]: entry for entry in read_summary(out)["run"]["workers"]}
    assert sorted(workers) == [1, 2, 3] and workers[3]["pid"] == worker_pids(output)[3]
    assert workers[1]["lost"].startswith("worker 1 (pid ") and "lost" not in workers[3]
    assert {entry["pid"] for entry in workers.values()} == set(worker_pids(output).values())


@pytest.mark.parametrize(
    ("stop", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_ctrl_c_or_sigterm_on_the_driver_stops_the_workers_and_a_rerun_resumes(
    tmp_path: Path, stop: signal.Signals, exit_code: int
) -> None:
    manifest = four_items(tmp_path, steps=40)
    out = tmp_path / "out"
    batch = BatchProcess(manifest, out, *RAY)
    batch.wait_until(lambda: "done" in statuses_so_far(out).values(), "no item finished")
    batch.process.send_signal(stop)
    output = batch.finish()
    assert batch.process.returncode == exit_code, output
    assert f"stopped by {stop.name}" in output
    assert re.search(r"items: .*\bw[12] \d+\.\d\d/s", output), "the bar shows no worker's rate"
    assert not any(alive(pid) for pid in worker_pids(output).values())
    done = {item_id for item_id, status in statuses(out).items() if status == "done"}
    assert done and set(statuses(out).values()) <= {"done", "pending"}
    rerun = run_batch(manifest, out, *RAY)
    assert f"{len(done)} skipped (up to date)" in rerun.output
    assert set(statuses(out).values()) == {"done"}


def statuses_so_far(out: Path) -> dict[str, str]:
    from rr_controlnet.outputs.journal import read_outcomes

    return {item_id: outcome.status for item_id, outcome in read_outcomes(out).items()}


def test_a_model_that_cannot_load_on_a_worker_fails_the_batch_before_it_starts(tmp_path: Path) -> None:
    manifest = tiny_manifest(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{}")
    text = manifest.read_text().replace(
        "model: tiny-sd15", "model: {family: sd15, base: ./broken, controlnet: ./broken}"
    )
    manifest.write_text(text)
    result = run_batch(manifest, tmp_path / "out", "--ray", "--workers", "1", exit_code=2)
    assert "error: on Ray worker 1: model.controlnet: cannot load" in result.output
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.fixture
def ray_cluster() -> Iterator[str]:
    """A one-machine cluster as `ray start --head` starts one, as the Ray benchmark runs it; its address."""
    with bench_module("scale_ray").ray_head(dict(os.environ), cpus=1) as address:
        yield address


def test_a_running_cluster_is_joined_by_its_address_or_found_on_its_head(
    tmp_path: Path, ray_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tiny_manifest(tmp_path)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    imports_shown = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}  # each import's time, on stderr
    found = BatchProcess(
        manifest, tmp_path / "found", "--ray-address", "auto", "--workers", "1", "--threads", "1", env=imports_shown
    )
    assert found.finish() and found.process.returncode == 0, found.output  # the head's token, found by Ray
    imported = set(re.findall(r"^import time:.*\|\s*(\S+)$", found.output, re.MULTILINE))
    assert "ray" in imported and not imported & {"torch", "diffusers", "transformers"}  # the workers' alone
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # named by address: told to send the token
    joined = BatchProcess(manifest, tmp_path / "out", "--ray-address", ray_cluster, "--workers", "1", "--threads", "1")
    output = joined.finish()
    assert joined.process.returncode == 0, output
    assert statuses(tmp_path / "out") == {"astronaut": "done", "horse": "done"}
    assert read_summary(tmp_path / "out")["run"]["workers"][0]["pid"] == worker_pids(output)[1]
    for item_id in ("astronaut", "horse"):
        assert (tmp_path / "found" / f"{item_id}.png").read_bytes() == (
            tmp_path / "out" / f"{item_id}.png"
        ).read_bytes()


# --- without a cluster ------------------------------------------------------------------------------


def test_ray_without_the_extra_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = run_batch(tiny_manifest(tmp_path), tmp_path / "out", "--ray", "--workers", "2", exit_code=2)
    assert result.output.strip() == "error: --ray needs Ray, an optional extra: pip install 'rr-controlnet[ray]'"


def test_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = run_batch(tiny_manifest(tmp_path), tmp_path / "out", "--ray-address", address, exit_code=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach a Ray cluster at {address}"), lines
    assert "Connection refused" in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--workers", "2"), "error: --workers sets how many Ray workers run: add --ray"),
        (("--ray", "--shard", "0/2"), "error: --ray hands items out to its workers itself: it cannot be combined"),
        (("--ray", "--spawn"), "error: --ray writes files only: it cannot stream to a live viewer"),
        (("--ray", "--workers", "0"), "Invalid value for '--workers'"),
    ],
)
def test_ray_options_that_cannot_work_are_refused(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run_batch(tiny_manifest(tmp_path), tmp_path / "out", *args, exit_code=2)
    assert message in result.output
