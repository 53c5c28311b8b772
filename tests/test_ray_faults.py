"""A Ray batch's driver never hangs: a wrong address is one line and exit 2 within 30 s; Ctrl-C ends it
within 5 s at every stage (connecting, starting workers, running, finishing); a lost node or cluster
stops the batch within 60 s (exit 1), its finished items kept and the rest pending, for a rerun to finish.

Each runs the command line in a process of its own against real processes: an HTTP server, ports that
accept and never answer, the batch's own Ray and a cluster that `ray start --head` started, whose
processes are killed by pid (and every process a test started is killed afterwards).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    BatchProcess,
    HttpServer,
    Listener,
    RayHead,
    descendants,
    kill_all,
    named,
    run_batch,
    statuses,
    tiny_manifest,
)

pytestmark = pytest.mark.integration

pytest.importorskip("ray", reason="the ray extra: pip install 'rr-controlnet[ray]'")

RAY = ("--ray", "--workers", "2", "--threads", "1")
WRONG_ADDRESS_SECONDS = 30  # the bounds, which a loaded machine keeps to with room to spare
CTRL_C_SECONDS = 5
LOST_SECONDS = 60


def manifest_of(folder: Path, count: int, steps: int) -> Path:
    images = ("astronaut.png", "horse.png")
    items = [{"id": f"item-{index}", "image": images[index % 2], "seed": index} for index in range(count)]
    return tiny_manifest(folder, steps=steps, items=items)


def so_far(out: Path) -> dict[str, str]:
    """Each item's status as the journal (or summary.json) says while the batch runs."""
    from rr_controlnet.outputs.journal import read_outcomes

    return {item_id: outcome.status for item_id, outcome in read_outcomes(out).items()}


def seconds_to_exit(batch: BatchProcess, limit: float) -> float:
    """Seconds from now until the batch exits; one that outlives three times `limit` is killed."""
    started = time.monotonic()
    try:
        batch.finish(timeout=3 * limit)
    except subprocess.TimeoutExpired:  # the assertion that follows says how long it took
        batch.process.kill()
        batch.finish()
    return time.monotonic() - started


def lock_is_free(out: Path) -> bool:
    from rr_controlnet.outputs.lock import FolderLock

    with FolderLock(out):
        return True


@pytest.fixture
def spawned() -> Iterator[list]:
    """Processes a test saw its batch start (its Ray's), killed afterwards if they still run."""
    processes: list = []
    yield processes
    kill_all(processes)


# --- a wrong address ----------------------------------------------------------------------------------


@pytest.mark.parametrize("there", ["http-server", "silent-port"])
def test_a_wrong_address_is_one_line_naming_what_answered_and_exit_2(tmp_path: Path, there: str) -> None:
    manifest = tiny_manifest(tmp_path)
    server = HttpServer(tmp_path) if there == "http-server" else Listener("silent")
    with server:
        address = f"127.0.0.1:{server.port}"
        started = time.monotonic()
        batch = BatchProcess(manifest, tmp_path / "out", "--ray-address", address, "--workers", "1")
        seconds_to_exit(batch, WRONG_ADDRESS_SECONDS)
        seconds = time.monotonic() - started  # the command's whole run
    lines = batch.output.strip().splitlines()
    assert batch.process.returncode == 2 and len(lines) == 1, batch.output
    assert lines[0].startswith(f"error: cannot reach a Ray cluster at {address}"), lines
    said = "an HTTP server (a web page) answered" if there == "http-server" else "nothing answered within 5 s"
    assert said in lines[0], lines
    assert seconds < WRONG_ADDRESS_SECONDS, f"{seconds:.1f} s"
    assert not (tmp_path / "out").exists()


def test_a_grpc_server_that_is_not_ray_is_given_up_on_with_exit_2(tmp_path: Path) -> None:
    untold = {name: value for name, value in os.environ.items() if name != "RAY_AUTH_MODE"}  # as a user may be
    with Listener("settings") as server:  # opens HTTP/2 as Ray's GCS does, then never answers
        address = f"127.0.0.1:{server.port}"
        started = time.monotonic()
        arguments = ("--ray-address", address, "--workers", "1")
        batch = BatchProcess(tiny_manifest(tmp_path), tmp_path / "out", *arguments, env=untold)
        seconds_to_exit(batch, WRONG_ADDRESS_SECONDS)
        seconds = time.monotonic() - started  # the command's whole run
    last = batch.output.strip().splitlines()[-1]  # after Ray's own warnings
    assert batch.process.returncode == 2, batch.output
    assert last.startswith(f"error: cannot connect to the Ray cluster at {address}: TimeoutError: Ray could not"), last
    assert "RAY_AUTH_MODE=token" in last
    assert seconds < WRONG_ADDRESS_SECONDS, f"{seconds:.1f} s"


# --- Ctrl-C -------------------------------------------------------------------------------------------


def test_ctrl_c_while_connecting_ends_the_driver_at_once(tmp_path: Path) -> None:
    with Listener("settings") as server:
        address = f"127.0.0.1:{server.port}"
        batch = BatchProcess(tiny_manifest(tmp_path), tmp_path / "out", "--ray-address", address, "--workers", "1")
        batch.wait_until(lambda: server.connections >= 2, "Ray never tried the address")  # the probe's, then Ray's
        time.sleep(1)
        batch.process.send_signal(signal.SIGINT)
        seconds = seconds_to_exit(batch, CTRL_C_SECONDS)
    assert batch.process.returncode == 130, batch.output
    last = batch.output.strip().splitlines()[-1]
    assert last == f"interrupted (SIGINT) while connecting to the Ray cluster at {address}; nothing was generated"
    assert seconds < CTRL_C_SECONDS, f"{seconds:.1f} s"
    assert not (tmp_path / "out").exists()  # the lock released, and the folder it made for the run removed


@pytest.mark.parametrize("stage", ["starting workers", "running", "finishing"])
def test_ctrl_c_ends_the_driver_within_5_s_and_leaves_the_folder_whole(
    tmp_path: Path, stage: str, spawned: list
) -> None:
    count = 2 if stage == "finishing" else 6
    manifest = manifest_of(tmp_path, count, steps=3 if stage == "finishing" else 30)
    out = tmp_path / "out"
    batch = BatchProcess(manifest, out, *RAY)
    if stage == "starting workers":
        batch.wait_until(lambda: "ray: starting 2 workers" in batch.output, "the workers never started")
    elif stage == "running":
        batch.wait_until(lambda: "done" in so_far(out).values(), "no item finished")
    else:
        batch.wait_until(lambda: set(so_far(out).values()) == {"done"}, "the items never finished", timeout=300)
    spawned += descendants(batch.process.pid)
    batch.process.send_signal(signal.SIGINT)
    seconds = seconds_to_exit(batch, CTRL_C_SECONDS)
    assert batch.process.returncode in ((0, 130) if stage == "finishing" else (130,)), batch.output
    assert seconds < CTRL_C_SECONDS, f"{stage}: {seconds:.1f} s"
    expected = {"done"} if stage == "finishing" else {"done", "pending"}
    assert set(statuses(out).values()) <= expected and lock_is_free(out), batch.output


# --- a lost node or cluster ---------------------------------------------------------------------------


def test_the_batchs_own_ray_losing_its_node_stops_the_batch_and_a_rerun_finishes(tmp_path: Path, spawned: list) -> None:
    manifest = manifest_of(tmp_path, 8, steps=40)
    out = tmp_path / "out"
    batch = BatchProcess(manifest, out, *RAY)
    batch.wait_until(lambda: "done" in so_far(out).values(), "no item finished")
    spawned += descendants(batch.process.pid)
    (raylet,) = named(spawned, "raylet")
    (agent,) = named(descendants(raylet.pid), "ray::DashboardAgent")
    os.kill(agent.pid, signal.SIGKILL)  # one of Ray's own agents dies: the raylet goes with it (fate sharing)
    seconds = seconds_to_exit(batch, LOST_SECONDS)
    assert batch.process.returncode == 1, batch.output
    lost = [line for line in batch.output.splitlines() if " was lost: " in line]
    assert len(lost) == 1 and lost[0].startswith("stopped: the batch's own Ray was lost: "), batch.output
    assert seconds < LOST_SECONDS, f"{seconds:.1f} s"
    assert_finished_kept_and_the_rest_pending(out)
    done = list(statuses(out).values()).count("done")
    rerun = run_batch(manifest, out, "--threads", "1")  # without Ray
    assert f"{done} skipped (up to date)" in rerun.output
    assert set(statuses(out).values()) == {"done"}


def test_a_joined_cluster_whose_head_goes_away_stops_the_batch_and_a_rerun_finishes(
    tmp_path: Path, spawned: list
) -> None:
    manifest = manifest_of(tmp_path, 8, steps=40)
    out = tmp_path / "out"
    with RayHead(cpus=2) as head:
        batch = BatchProcess(manifest, out, "--ray-address", head.address, *RAY[1:], env=head.env)
        batch.wait_until(lambda: "done" in so_far(out).values(), "no item finished")
        spawned += descendants(batch.process.pid)
        head.kill()  # every process of the head, as when its machine goes away
        seconds = seconds_to_exit(batch, LOST_SECONDS)
    assert batch.process.returncode == 1, batch.output
    lost = [line for line in batch.output.splitlines() if " was lost: " in line]
    assert len(lost) == 1, batch.output
    assert re.match(
        rf"stopped: the Ray cluster at {re.escape(head.address)} was lost: its GCS at \S+ refuses", lost[0]
    ), lost
    assert seconds < LOST_SECONDS, f"{seconds:.1f} s"
    assert_finished_kept_and_the_rest_pending(out)
    done = list(statuses(out).values()).count("done")
    rerun = run_batch(manifest, out, *RAY)  # on a Ray of its own
    assert f"{done} skipped (up to date)" in rerun.output
    assert set(statuses(out).values()) == {"done"}


def assert_finished_kept_and_the_rest_pending(out: Path) -> None:
    found = statuses(out)
    assert set(found.values()) == {"done", "pending"}, found  # none failed: the cluster, not the items, went
    for item_id, status in found.items():
        if status == "done":
            assert (out / f"{item_id}.png").exists() and (out / f"{item_id}.rrd").exists()
    assert lock_is_free(out)
