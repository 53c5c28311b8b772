"""What a Ray batch decides before and while it runs, without a cluster: the workers' device, how many
there are, where the cluster is, and which items are tried again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from helpers import Listener, free_port, sample_image, tiny_manifest, write_manifest

from rr_controlnet.api import load_manifest
from rr_controlnet.errors import ClusterError, DeviceError, Interrupted, UsageError
from rr_controlnet.run.plan import PlannedItem, plan_items
from rr_controlnet.run.ray import cluster as ray_cluster
from rr_controlnet.run.ray.cluster import ClusterWatch, Connection, Endpoint, connect_failure, probe_address
from rr_controlnet.run.ray.engine import cluster_runtime, worker_count
from rr_controlnet.run.ray.options import RayOptions
from rr_controlnet.run.ray.pool import WorkerRates
from rr_controlnet.run.ray.queue import MAX_TRIES, Job, Queue, estimated_cost
from rr_controlnet.spec import StopRequest


def test_workers_run_on_the_clusters_gpus_not_the_drivers() -> None:
    assert cluster_runtime("auto", "auto", gpus=4) == cluster_runtime("cuda", "fp16", gpus=4)
    assert cluster_runtime("auto", "auto", gpus=4).device == "cuda"
    assert cluster_runtime("auto", "auto", gpus=0).dtype_name == "fp32"
    assert cluster_runtime("cpu", "auto", gpus=4).device == "cpu"
    with pytest.raises(DeviceError, match="the Ray cluster has no GPUs"):
        cluster_runtime("cuda", "auto", gpus=0)
    with pytest.raises(DeviceError, match="each worker gets a GPU of its own; use --device cuda"):
        cluster_runtime("cuda:1", "auto", gpus=4)
    with pytest.raises(DeviceError, match="cuda or cpu"):
        cluster_runtime("mps", "auto", gpus=0)


def test_one_worker_per_gpu_unless_told_and_cpu_workers_must_be_counted() -> None:
    gpus = cluster_runtime("auto", "auto", gpus=3)
    assert worker_count(None, gpus, {"GPU": 3.0, "CPU": 48.0}) == 3
    assert worker_count(2, gpus, {"GPU": 3.0}) == 2
    with pytest.raises(UsageError, match=r"--workers N is needed for CPU workers \(the Ray cluster has 8 CPUs\)"):
        worker_count(None, cluster_runtime("cpu", "auto", gpus=0), {"CPU": 8.0})


def test_nothing_listening_at_the_address_is_told_at_once() -> None:
    port = free_port()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ClusterError, match=rf"^cannot reach a Ray cluster at {address}( \(\S+\))?: .*refused"):
            probe_address(address, timeout=2)
    with Listener("settings") as grpc:  # a gRPC server opens with HTTP/2's SETTINGS, as Ray's GCS does
        probe_address(f"127.0.0.1:{grpc.port}", timeout=2)
    probe_address("local")  # no address: a Ray of the batch's own


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "an HTTP server (HTTP/1.1 400 Bad Request)"),
        (b"<!DOCTYPE HTML>\n<html><body>Error code: 505</body></html>", "an HTTP server (a web page)"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "something else ('SSH-2.0-OpenSSH_9.6')"),
        ("silent", "the port accepts connections, but nothing answered within 1 s"),
        ("close", "it accepted the connection and closed it without an answer"),
    ],
    ids=["http", "web-page", "ssh", "silent", "hangs-up"],
)
def test_what_answers_at_a_wrong_address_is_named_in_one_line(answer: bytes | str, said: str) -> None:
    with Listener(answer) as listener:
        address = f"127.0.0.1:{listener.port}"
        started = time.monotonic()
        with pytest.raises(ClusterError) as raised:
            probe_address(address, timeout=1)
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert message.startswith(f"cannot reach a Ray cluster at {address}") and "\n" not in message, message
    assert said in message and "`ray start --head` prints" in message, message


def test_the_cluster_is_lost_once_an_endpoint_has_failed_for_long_enough() -> None:
    now = [100.0]
    with Listener("silent") as gcs:
        endpoints = [Endpoint("its GCS", "127.0.0.1", gcs.port), Endpoint("this machine's raylet", "127.0.0.1", 1)]
        watch = ClusterWatch(endpoints[:1], "the batch's own Ray", lost_after=20, clock=lambda: now[0])
        assert watch.check(20) is None and watch.check_now() is None  # it answers
        watch = ClusterWatch(endpoints, "the batch's own Ray", lost_after=20, clock=lambda: now[0])
        assert watch.check(20) is None  # failing, but not for long: a blip, or a GCS restarting
        now[0] += 19
        assert watch.check(20) is None
        now[0] += 2
        assert watch.check(20) == (
            "the batch's own Ray was lost: this machine's raylet at 127.0.0.1:1 refuses connections (Connection refused)"
        )
    fresh = ClusterWatch(endpoints, "the Ray cluster at 10.0.0.5:6379")
    assert fresh.check_now().startswith("the Ray cluster at 10.0.0.5:6379 was lost: its GCS at 127.0.0.1:")  # at once


class HangingRay:
    """Stands in for ray, whose init does not return (as on an address where something else answers HTTP/2)
    until released; what the connection asked of it."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.calls: list[str] = []

    def is_initialized(self) -> bool:
        return False

    def init(self, **settings: object) -> None:
        self.calls.append("init")
        self.released.wait(60)
        raise ConnectionError("released")

    def shutdown(self) -> None:
        self.calls.append("shutdown")


def test_connecting_answers_a_stop_at_once_and_gives_up_after_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_cluster, "START_SECONDS", 1.5)
    monkeypatch.setattr(Connection, "earlier", None)
    ray, stop = HangingRay(), StopRequest()
    threading.Timer(0.3, lambda: setattr(stop, "signal_name", "SIGTERM")).start()
    started = time.monotonic()
    with pytest.raises(
        Interrupted, match=r"^interrupted \(SIGTERM\) while connecting to the batch's own Ray$"
    ) as raised:
        Connection(ray, None).open(stop)
    assert raised.value.signal_name == "SIGTERM" and time.monotonic() - started < 1.0
    ray.released.set()  # Ray gives up at last: the connection's thread leaves, and the next one may join
    hanging = HangingRay()
    started = time.monotonic()
    with pytest.raises(ClusterError, match=r"^a Ray of the batch's own did not start within 1.5 s$"):
        Connection(hanging, None).open(StopRequest())
    assert 1.5 <= time.monotonic() - started < 3
    assert ray.calls == ["init", "shutdown"] and hanging.calls == ["init"]
    hanging.released.set()


def test_a_refused_connection_says_how_token_authentication_is_told() -> None:
    refused = ConnectionError("Failed to connect to Ray cluster at 10.0.0.5:6379")
    message = connect_failure("10.0.0.5:6379", refused, environ={})
    assert message.startswith("cannot connect to the Ray cluster at 10.0.0.5:6379: ConnectionError: Failed to")
    assert "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN" in message and "--ray-address auto" in message
    assert "RAY_AUTH_MODE" not in connect_failure("10.0.0.5:6379", refused, environ={"RAY_AUTH_MODE": "token"})
    assert "RAY_AUTH_MODE" not in connect_failure("auto", refused, environ={})  # Ray finds the token itself


def test_ray_options_are_checked_on_construction() -> None:
    assert RayOptions("10.0.0.5:6379", 4).workers == 4
    for wrong in ({"workers": 0}, {"workers": True}, {"workers": "2"}, {"address": " "}, {"address": 6379}):
        with pytest.raises(UsageError, match="RayOptions"):
            RayOptions(**wrong)


def planned_items(folder: Path, items: list[dict]) -> list[PlannedItem]:
    """The manifest's items as a batch plans them."""
    manifest = load_manifest(tiny_manifest(folder, items=items))
    return plan_items(manifest, "fp32")


def test_each_job_carries_the_bytes_of_its_input_images(tmp_path: Path) -> None:
    swept = {"image": "horse.png", "sweep": {"seed": [1, 2, 3]}}
    (tmp_path / sample_image("horse.png", tmp_path)).rename(tmp_path / "gone.png")
    items = planned_items(tmp_path, [swept, {"image": "astronaut.png"}, {"id": "gone", "image": "gone.png"}])
    (tmp_path / "gone.png").unlink()  # after planning: it cannot be read when the batch runs
    lines: list[str] = []
    queue = Queue(items, batch_size=2, native=512, log=lines.append)
    horse, astronaut = (tmp_path / "horse.png").resolve(), (tmp_path / "astronaut.png").resolve()
    assert lines == [f"item 'gone': cannot read {(tmp_path / 'gone.png').resolve()}: No such file or directory"]
    gone, first, second = (queue.take() for _ in range(len(queue)))  # unread, its cost is the native size's
    assert [[p.item.id for p in job.planned] for job in (first, second)] == [
        ["horse_seed1", "horse_seed2"],
        ["horse_seed3", "astronaut"],
    ]
    assert queue.images_for(first) == [[horse], horse.read_bytes()]
    assert queue.images_for(second) == [[horse, astronaut], horse.read_bytes(), astronaut.read_bytes()]
    assert queue.images_for(gone) == [[]]  # its item fails on its worker, saying why


def test_a_dead_workers_job_goes_back_first_until_its_last_try(tmp_path: Path) -> None:
    items = planned_items(tmp_path, [{"image": "horse.png"}, {"image": "astronaut.png"}])
    queue = Queue(items, batch_size=1, native=512, log=print)
    job = queue.take()
    for attempt in range(1, MAX_TRIES):
        assert queue.retry(job, f"worker {attempt} died", MAX_TRIES) == []
        assert queue.take() is job  # ahead of the items that never started
    failed = queue.retry(job, "worker 9 died", MAX_TRIES)
    assert [(outcome.id, outcome.status) for outcome in failed] == [("horse", "failed")]
    assert failed[0].error == f"tried {MAX_TRIES} times, and each time its worker died; the last: worker 9 died"
    assert failed[0].retries == ["worker 1 died", "worker 2 died", "worker 9 died"]
    assert [p.item.id for p in queue.take().planned] == ["astronaut"]
    assert isinstance(job, Job)


def test_the_costliest_items_go_out_first_so_the_last_to_finish_are_small(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "model": "tiny-sd15",
        "defaults": {"prompt": "a horse", "steps": 20},  # no size: the image's aspect at the native size
        "items": [
            {"id": "small", "image": sample_image("horse.png", tmp_path), "size": 64},
            {"id": "large", "image": "horse.png", "size": 256},
            {"id": "native", "image": "horse.png"},
            {"id": "long", "image": "horse.png", "size": 64, "steps": 50},
            {"id": "small-too", "image": "horse.png", "size": 64},
        ],
    }
    items = plan_items(load_manifest(write_manifest(tmp_path, document)), "fp32")
    queue = Queue(items, batch_size=1, native=512, log=print)
    order = [queue.take().planned[0].item.id for _ in range(len(items))]
    assert order == ["native", "large", "long", "small", "small-too"]
    assert estimated_cost(items[1], (256, 256), native=512) == 20 * 256 * 256


def test_groups_are_the_ones_a_single_process_makes_so_outputs_match(tmp_path: Path) -> None:
    from PIL import Image

    from rr_controlnet.models.loading import load_model, resolve_runtime
    from rr_controlnet.run.runner import GroupRunner

    photo = Image.open(tmp_path / sample_image("horse.png", tmp_path)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait: a phone's photo
    photo.save(tmp_path / "turned.jpg", exif=exif)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    document = {
        "version": 1,
        "model": "tiny-sd15",
        "defaults": {"prompt": "a horse", "steps": 2, "width": 64},  # heights follow each image's aspect
        "items": [
            {"id": "a", "image": "horse.png"},
            {"id": "b", "image": "horse.png", "seed": 2},
            {"id": "broken", "image": "broken.png"},
            {"id": "c", "image": "horse.png", "seed": 3},
            {"id": "turned", "image": "turned.jpg"},
            {"id": "turned-2", "image": "turned.jpg", "seed": 2},
            {"id": "d", "image": "horse.png", "steps": 3},
        ],
    }
    manifest = load_manifest(write_manifest(tmp_path, document), check_images=False)
    planned = plan_items(manifest, "fp32")
    model = load_model(manifest.model, resolve_runtime("cpu"))
    runner = GroupRunner(model, tmp_path / "out", "groups", manifest.items)
    made_here = [
        [prepared.id for prepared in group]
        for group in runner.prepared_groups(planned, batch_size=2)
        if not hasattr(group, "status")  # an item that could not be prepared
    ]
    runner.close()
    queue = Queue(planned, batch_size=2, native=model.native_size, log=print)
    groups = [[p.item.id for p in queue.take().planned] for _ in range(len(queue))]
    assert sorted(groups) == sorted([*made_here, ["broken"]])
    assert made_here == [["a", "b"], ["c"], ["turned", "turned-2"], ["d"]]


def test_the_bar_shows_each_live_workers_rate_and_ignores_a_lost_ones_late_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rr_controlnet.run.ray.pool as ray_pool

    clock = iter([100.0, 100.0, 104.0, 110.0, 112.0])  # begin 1, begin 2, add 1, add 2, add 2
    monkeypatch.setattr(ray_pool.time, "monotonic", lambda: next(clock))
    notes: list[str] = []

    class Bar:
        def note(self, text: str) -> None:
            notes.append(text)

    rates = WorkerRates(Bar())
    rates.begin(1)
    rates.begin(2)
    rates.add(1, 2)
    rates.add(2, 1)
    rates.forget(1)  # worker 1 died
    rates.add(1, 1)  # a result it sent before dying, back after its death was seen
    rates.add(2, 1)
    assert notes == ["w1 0.50/s", "w1 0.20/s w2 0.10/s", "w2 0.17/s"]


def test_runs_share_a_call_while_keys_match_and_an_item_that_cannot_run_does_not_split_them() -> None:
    from rr_controlnet.generation.generate import batch_runs

    keys = {"a": (1,), "b": (1,), "broken": None, "c": (1,), "d": (2,), "e": (2,), "f": (2,)}
    runs = list(batch_runs(keys, 3, keys.get))
    assert runs == [["broken"], ["a", "b", "c"], ["d", "e", "f"]]
    assert list(batch_runs(keys, 2, keys.get)) == [["broken"], ["a", "b"], ["c"], ["d", "e"], ["f"]]
