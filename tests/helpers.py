"""What tests share: sample images and manifests, running the command line, and reading back what a
batch wrote (summary.json, recordings, blueprints).

    manifest = tiny_manifest(tmp_path)                    # two bundled photos, 64 px, 3 steps, tiny-sd15
    run_batch(manifest, tmp_path / "out")                 # the CLI, asserting exit 0 (or exit_code=...)
    items = summary_items(tmp_path / "out")               # id -> summary.json entry
    recording = read_recording(tmp_path / "out" / "horse.rrd")
"""

from __future__ import annotations

import importlib
import io
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "manifests" / "images"


# --- inputs ---------------------------------------------------------------------------------------


def sample_image(name: str, folder: Path) -> str:
    """Copy a bundled sample image into `folder` and return its name."""
    shutil.copy(IMAGES / name, folder / name)
    return name


# Read as the tests are collected, before conftest sets CI for every test's own processes.
IN_CI = bool(os.environ.get("CI"))


def unavailable(reason: str) -> None:
    """Skips a test that needs what this machine lacks (a browser, a Vulkan driver, a tmpfs); with CI set,
    fails it instead: there, everything must run."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: this test must run)")
    pytest.skip(reason)


def png_with_corrupt_pixels(source: Path) -> bytes:
    """A PNG whose structure and checksums are valid but whose compressed pixels are garbage: it passes
    validation and fails its item when decoded."""
    data = bytearray(Path(source).read_bytes())
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8 : start - 4], "big")
    data[start + 10 : start + 60] = bytes(50)  # break the zlib stream
    crc = zlib.crc32(bytes(data[start - 4 : start + length]))
    data[start + length : start + length + 4] = crc.to_bytes(4, "big")
    return bytes(data)


def write_manifest(folder: Path, document: dict, name: str = "manifest.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def tiny_manifest(folder: Path, model: str = "tiny-sd15", items: list[dict] | None = None, **defaults) -> Path:
    """A small manifest over two bundled photos: 64x64, 3 steps, on a tiny model."""
    sample_image("astronaut.png", folder)
    sample_image("horse.png", folder)
    document = {
        "version": 1,
        "model": model,
        "defaults": {"prompt": "a futuristic research complex", "steps": 3, "size": 64, **defaults},
        "items": items if items is not None else [{"image": "astronaut.png"}, {"image": "horse.png", "seed": 5}],
    }
    return write_manifest(folder, document)


def bench_module(name: str) -> Any:
    """A module of bench/ (the benchmarks' scripts, which are not a package)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "bench"))


def free_port() -> int:
    """A port nothing listens on now, for a viewer or server that must not meet another test's."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the command line -----------------------------------------------------------------------------


def run_cli(*args: Any, exit_code: int | None = 0) -> Any:
    """`rr-controlnet ARGS` in this process (click's CliRunner), asserting its exit code unless None. A bug
    raises here with its traceback rather than becoming a message."""
    from click.testing import CliRunner

    from rr_controlnet.cli import cli

    result = CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)
    if exit_code is not None:
        assert result.exit_code == exit_code, result.output
    return result


def run_batch(manifest: Path, out: Path, *args: Any, exit_code: int | None = 0) -> Any:
    """`rr-controlnet batch MANIFEST --out OUT ARGS`, asserting its exit code unless None."""
    return run_cli("batch", manifest, "--out", out, *args, exit_code=exit_code)


class BatchProcess:
    """`rr-controlnet batch MANIFEST --out OUT --progress ARGS` in a subprocess, to signal or kill; its output
    (progress bars included, which name each item as its steps begin) collected as it comes.

        batch = BatchProcess(manifest, out)
        batch.wait_until(lambda: batch.started("horse"), "horse never started")
        batch.process.send_signal(signal.SIGINT)
        output = batch.finish()
    """

    def __init__(self, manifest: Path, out: Path, *args: Any, env: dict[str, str] | None = None):
        command = [sys.executable, "-m", "rr_controlnet", "batch", manifest, "--out", out, "--progress", *args]
        self.process = subprocess.Popen(
            [str(part) for part in command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self._chunks: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while chunk := self.process.stdout.read(1):
            self._chunks.append(chunk)

    @property
    def output(self) -> str:
        return "".join(self._chunks)

    def started(self, item_id: str) -> bool:
        """Whether the item's steps have begun (its progress bar has appeared)."""
        return f"{item_id}:" in self.output

    def wait_until(self, condition: Callable[[], bool], failure: str, timeout: float = 120) -> None:
        """Poll `condition` until it holds; fail the test (killing the batch) when the batch ends first or
        `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                self.finish()
                pytest.fail(f"the batch ended early ({failure}): {self.output}")
            if time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"{failure}: {self.output}")
            time.sleep(0.05)

    def finish(self, timeout: float = 300) -> str:
        """Wait for the batch to exit; its whole output."""
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return self.output


# --- what a batch wrote ---------------------------------------------------------------------------


def read_summary(out: Path) -> dict:
    """summary.json of an output folder, parsed."""
    return json.loads((Path(out) / "summary.json").read_text())


def summary_items(out: Path) -> dict[str, dict]:
    """summary.json's entries by item id."""
    return {item["id"]: item for item in read_summary(out)["items"]}


def statuses(out: Path) -> dict[str, str]:
    """Each item's status, by id, as summary.json records it."""
    return {item_id: item["status"] for item_id, item in summary_items(out).items()}


@dataclass
class Row:
    static: bool
    step: int | None
    timestep: int | None
    columns: dict


@dataclass
class Recording:
    application_id: str
    recording_id: str
    rows: dict[str, list[Row]] = field(default_factory=dict)

    def entity(self, entity: str) -> list[Row]:
        """Every row of an entity; a recording without it fails the test, naming the entities it has."""
        if entity not in self.rows:
            pytest.fail(f"the recording has no entity {entity!r}; it has {sorted(self.rows)}")
        return self.rows[entity]

    def static(self, entity: str) -> Row:
        (row,) = [row for row in self.entity(entity) if row.static]
        return row

    def timed(self, entity: str) -> list[Row]:
        """An entity's rows on the step timeline, in step order; an entity that is not there fails the test."""
        return sorted((row for row in self.entity(entity) if not row.static), key=lambda row: row.step)


def read_recording(path: Path) -> Recording:
    """Every row an .rrd holds, by entity path (its recording properties aside)."""
    from rerun.chunk import RrdReader

    reader = RrdReader(str(path))
    (entry,) = reader.recordings()
    recording = Recording(entry.application_id, entry.recording_id)
    for chunk in reader.stream().to_chunks():
        if str(chunk.entity_path).startswith("/__properties"):
            continue  # the recording's name and start time: see recording_properties
        batch = chunk.to_record_batch()
        names = [name for name in batch.schema.names if ":" in name]
        for index in range(batch.num_rows):
            columns = {name: batch.column(name)[index].as_py() for name in names}
            step = batch.column("step")[index].as_py() if "step" in batch.schema.names else None
            timestep = batch.column("timestep")[index].as_py() if "timestep" in batch.schema.names else None
            recording.rows.setdefault(str(chunk.entity_path), []).append(Row(chunk.is_static, step, timestep, columns))
    return recording


def decoded_image(row: Row) -> np.ndarray:
    """Pixels of an EncodedImage row."""
    blob = row.columns["EncodedImage:blob"][0]
    return np.asarray(Image.open(io.BytesIO(bytes(blob))))


def tensor(row: Row) -> np.ndarray:
    (data,) = row.columns["Tensor:data"]
    return np.asarray(data["buffer"], dtype=np.float32).reshape(data["shape"])


def tensor_dim_names(row: Row) -> list[str]:
    return row.columns["Tensor:data"][0]["names"]


def blueprint_views(path: Path) -> dict[str, tuple[str, str]]:
    """The views of the blueprint stored in an .rbl or .rrd file: name -> (view class, origin)."""
    from rerun.chunk import RrdReader

    reader = RrdReader(str(path))
    (blueprint,) = reader.blueprints()
    views = {}
    for chunk in reader.stream(store=blueprint).to_chunks():
        batch = chunk.to_record_batch()
        if "ViewBlueprint:display_name" in batch.schema.names:
            for index in range(batch.num_rows):
                (name,) = batch.column("ViewBlueprint:display_name")[index].as_py()
                (kind,) = batch.column("ViewBlueprint:class_identifier")[index].as_py()
                (origin,) = batch.column("ViewBlueprint:space_origin")[index].as_py()
                views[name] = (kind, origin)
    return views


def recording_properties(path: Path) -> dict[str, object]:
    """The recording properties stored in an .rrd file, e.g. {"name": ..., "start_time": ...}."""
    from rerun.chunk import RrdReader

    properties = {}
    for chunk in RrdReader(str(path)).stream().filter(content="/__properties/**").to_chunks():
        batch = chunk.to_record_batch()
        for name in batch.schema.names:
            if name.startswith("RecordingInfo:"):
                (properties[name.split(":", 1)[1]],) = batch.column(name)[0].as_py()
    return properties


def blueprint_active_tab(path: Path) -> str | None:
    """The name of the tab that the blueprint stored in an .rbl or .rrd file opens on."""
    from rerun.chunk import RrdReader

    reader = RrdReader(str(path))
    (blueprint,) = reader.blueprints()
    containers = {}
    for chunk in reader.stream(store=blueprint).to_chunks():
        batch = chunk.to_record_batch()
        for index in range(batch.num_rows):
            fields = {}
            for name in batch.schema.names:
                if name.startswith("ContainerBlueprint:") and (value := batch.column(name)[index].as_py()):
                    fields[name.split(":", 1)[1]] = value[0]
            containers.setdefault(str(chunk.entity_path), {}).update(fields)
    return shown_tab({path: {"ContainerBlueprint": fields} for path, fields in containers.items()})


def shown_tab(blueprint: dict) -> str | None:
    """The name of the active tab of a blueprint as the viewer control API reports it (get_blueprint's JSON)."""
    containers = {path.lstrip("/"): parts.get("ContainerBlueprint", {}) for path, parts in blueprint.items()}
    active = [fields["active_tab"] for fields in containers.values() if fields.get("active_tab")]
    return containers.get(active[0], {}).get("display_name") if len(active) == 1 else None


# --- what may listen at a wrong Ray address, and Ray processes to kill ------------------------------


class Listener:
    """A TCP server on every interface of this machine, on a thread of this process, answering each
    connection as `answer` says: bytes, sent as the connection opens; "silent" (it accepts and never
    answers); "close" (it accepts and hangs up); or "settings" (an HTTP/2 SETTINGS frame, as a gRPC server
    opens a connection, then nothing more). `connections` counts the connections it took.

        with Listener(b"HTTP/1.1 400 Bad Request\\r\\n\\r\\n") as listener:
            probe_address(f"127.0.0.1:{listener.port}")
    """

    SETTINGS = bytes(3) + b"\x04" + bytes(5)

    def __init__(self, answer: bytes | str):
        self.answer = answer
        # Every interface: Ray (and its probe) reach 127.0.0.1 at this machine's own address.
        self.server = socket.create_server(("", 0))
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self._open: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closed.set()
        self._thread.join(timeout=10)
        for connection in self._open:
            connection.close()
        self.server.close()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            if self.answer == "close":
                connection.close()
                continue
            self._open.append(connection)
            if self.answer == "settings":
                connection.sendall(self.SETTINGS)
            elif isinstance(self.answer, bytes):
                connection.sendall(self.answer)


class HttpServer:
    """`python -m http.server` on a free port of every interface, in a process of its own (a service that a
    mistyped Ray address may reach); killed by its pid afterwards.

        with HttpServer(tmp_path) as server:
            run_batch(manifest, out, "--ray-address", f"127.0.0.1:{server.port}", exit_code=2)
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> HttpServer:
        command = [sys.executable, "-m", "http.server", str(self.port), "--bind", "0.0.0.0"]
        self.process = subprocess.Popen(
            [*command, "--directory", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    pytest.fail(f"python -m http.server did not start on port {self.port}")
                time.sleep(0.1)

    def __exit__(self, *exc_info: object) -> None:
        import os
        import signal

        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def descendants(pid: int) -> list[Any]:
    """The processes `pid` started, and theirs, as psutil.Process objects (which kill only the process they
    were made for, even if its pid is reused)."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def named(processes: list[Any], name: str) -> list[Any]:
    """The processes among `processes` whose command starts with `name` (a path's last part, or a Ray
    process title such as ray::DashboardAgent)."""
    import psutil

    found = []
    for process in processes:
        try:
            command = process.cmdline()
        except psutil.Error:
            continue
        if command and Path(command[0].split(" ")[0]).name == name:
            found.append(process)
    return found


def kill_all(processes: list[Any]) -> None:
    """SIGKILL each process that still runs."""
    import psutil

    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass


class RayHead:
    """A one-machine cluster as `ray start --head` starts one (a free port, no dashboard, token
    authentication on, as bench/scale_ray.py starts it), with its processes at hand; afterwards stopped, and
    every process it started killed by pid.

        with RayHead() as head:
            batch = BatchProcess(manifest, out, "--ray-address", head.address, env=head.env)
            head.kill()                                   # the head machine goes away
    """

    def __init__(self, cpus: int = 1):
        import os

        self.cpus = cpus
        self.env = {**os.environ, "RAY_AUTH_MODE": "token"}  # for a driver that names the address
        self.process: subprocess.Popen | None = None
        self.seen: list[Any] = []  # every process of the head seen so far
        self.port = 0
        self.address = ""

    def __enter__(self) -> RayHead:
        scale_ray = bench_module("scale_ray")
        self.port = scale_ray.free_port()
        start = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={self.port}"]
        self.process = subprocess.Popen(
            [*start, f"--num-cpus={self.cpus}", "--include-dashboard=false", "--disable-usage-stats"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not scale_ray.names_cluster(self.port):  # Ray's note of the cluster is written once the head is up
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                pytest.fail("ray start --head failed")
            time.sleep(0.2)
        self.address = f"127.0.0.1:{self.port}"
        self.processes()
        return self

    def processes(self) -> list[Any]:
        """The head's processes now (and noted, to be killed afterwards)."""
        now = descendants(self.process.pid)
        self.seen += [process for process in now if process not in self.seen]
        return now

    def kill(self) -> None:
        """The head goes away as a machine does: every process of it SIGKILLed at once."""
        kill_all([*self.processes(), *self.seen])
        import os
        import signal

        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)

    def __exit__(self, *exc_info: object) -> None:
        import os
        import signal

        scale_ray = bench_module("scale_ray")
        self.processes()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)  # it stops its processes in 2 s
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        kill_all(self.seen)
        if self.port and scale_ray.names_cluster(self.port):
            scale_ray.CLUSTER_NOTE.unlink()


class PrintedLines:
    """The lines a process prints on one of its streams, read by a thread of their own, so that a test can wait
    for one with a deadline; `seen`: every line read so far."""

    def __init__(self, stream: Any, what: str):
        self.what = what  # how a failure names the process and its stream
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put("")  # end of output

    def wait_for(self, pattern: str, seconds: float) -> Any:
        """The first line from here on that matches `pattern` (its re.Match); the test fails at the deadline or
        the end of output."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
            if not line:
                break
        pytest.fail(f"{self.what} never printed {pattern!r} in {seconds} s; it printed:\n{''.join(self.seen)}")
