"""The Ray cluster a batch runs on: its address probed, joined (or a Ray of the batch's own started) within a
bound, watched while the batch runs, and left within a bound.

    connection = Connection(ray, address)          # address None: a Ray of the batch's own, on this machine
    facts = connection.open(stop)                  # ClusterError or Interrupted, never a hang
    watch = ClusterWatch(facts.endpoints, connection.subject)
    watch.start()                                  # watch.lost: why the cluster is gone, once it is
    connection.close(actors, stop)                 # actors killed and Ray left, or given up on after a bound

Ray's calls that can block for minutes (ray.init on a wrong address, ray.shutdown and ray.kill on a lost
cluster) run on a thread of the connection's own, which the batch's thread waits for a bounded time while
answering a stop. That thread lives as long as the connection: Ray ties the processes of a Ray it starts
to the thread that started them, and they die with it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rr_controlnet.errors import ClusterError, Interrupted, UsageError, one_line
from rr_controlnet.run.signals import EXIT_CODES_BY_SIGNAL
from rr_controlnet.spec import StopRequest

INSTALL_HINT: Final = "pip install 'rr-controlnet[ray]'"
HEAD_PORT: Final = 6379  # `ray start --head`'s default
CLIENT_PORT: Final = 10001  # the Ray Client server's, for ray:// addresses
PROBE_SECONDS: Final = 5.0  # to connect to an address, then again for it to answer
JOIN_SECONDS: Final = 20.0  # to join a cluster at an address, probe included (as long as Ray takes to give up)
START_SECONDS: Final = 120.0  # to start a Ray of the batch's own
LEAVE_SECONDS: Final = 10.0  # to kill the workers and leave Ray after a batch
LEAVE_STOPPING_SECONDS: Final = 2.5  # the same, once a signal stops the batch (Ctrl-C)
EXIT_SECONDS: Final = 15.0  # how much longer the process's exit waits for Ray to be left
EXIT_STOPPING_SECONDS: Final = 2.0  # the same, after a signal
HEALTH_EVERY: Final = 3.0  # seconds between checks that the cluster is still there
CHECK_SECONDS: Final = 1.5  # for each of its endpoints to accept a connection
LOST_AFTER: Final = 20.0  # an endpoint that fails this long means the cluster is lost
STEP: Final = 0.1  # how often a wait here looks at the batch's stop
# A Ray of the batch's own passes images and results with the calls, not through its object store: an object
# the driver owns there, lost with the node, would have Ray end the driver's process on the spot.
INLINE_BYTES: Final = 256 * 2**20  # below Ray's gRPC message limit (512 MiB)
OWN_RAY_CONFIG: Final = {"max_direct_call_object_size": INLINE_BYTES, "task_rpc_inlined_bytes_limit": INLINE_BYTES}
# HTTP/2's opening and an empty SETTINGS frame: a gRPC server (Ray's GCS, its client server) answers with its own
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(3) + b"\x04" + bytes(5)
ADDRESS_HINT: Final = "the address to give is the one `ray start --head` prints (port 6379 unless told otherwise)"
REACH_HINT: Final = (
    "start one there with `ray start --head`, or leave out --ray-address and RAY_ADDRESS for a local Ray"
)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(f"--ray needs Ray, an optional extra: {INSTALL_HINT}") from None
    return ray


# --- the address ------------------------------------------------------------------------------------


def probe_address(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Fail in one line, within about 2 x timeout, unless a gRPC server (as Ray's GCS and client server are)
    answers where the address points: nothing listening, an HTTP server (Ray's dashboard, say), or a port
    that accepts and never answers would each have Ray retry for minutes. "local" is no address; "auto" is
    probed where Ray's note of the latest cluster on this machine points, if it names one."""
    target = _target(address)
    if target is None:
        return
    host, port = target
    where = address if f"{host}:{port}" == address.removeprefix("ray://") else f"{address} ({host}:{port})"
    try:
        sock = socket.create_connection((host.strip("[]"), port), timeout=timeout)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(f"cannot reach a Ray cluster at {where}: {reason} ({REACH_HINT})") from None
    with sock:
        answer = None if _tls() else _answer(sock, timeout)
    if answer is not None:
        raise ClusterError(f"cannot reach a Ray cluster at {where}: {answer}; {ADDRESS_HINT}")


def _target(address: str) -> tuple[str, int] | None:
    """The host and port Ray connects to for `address`; None for "local", or "auto" with no cluster noted."""
    if address == "local":
        return None
    if address.startswith("ray://"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        return (host, int(port)) if host and port.isdigit() else (address.removeprefix("ray://"), CLIENT_PORT)
    try:
        from ray._private.services import canonicalize_bootstrap_address  # localhost as Ray resolves it

        address = canonicalize_bootstrap_address(address) or ""
    except Exception:  # noqa: BLE001 - no note of a cluster for "auto", or Ray changed: Ray reports it itself
        if address == "auto":
            return None
    host, _, port = address.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else (address, HEAD_PORT) if address else None


def _tls() -> bool:
    """Whether Ray talks TLS (RAY_USE_TLS), which a plain HTTP/2 opening cannot test."""
    return os.environ.get("RAY_USE_TLS", "0").lower() not in ("0", "false", "")


def _answer(sock: socket.socket, timeout: float) -> str | None:
    """None when the server opens HTTP/2 (a SETTINGS frame), as a gRPC server does; otherwise what answered."""
    data = b""
    deadline = time.monotonic() + timeout
    try:
        sock.sendall(PREFACE)
        while len(data) < 9:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = sock.recv(512)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        if not data:
            return f"the port accepts connections, but nothing answered within {timeout:g} s"
    except OSError:  # reset: it hung up before or as the opening came
        pass
    if len(data) >= 9 and data[3] == 4 and data[5:9] == bytes(4):
        return None
    if not data:
        return "it accepted the connection and closed it without an answer"
    return f"{_speaker(data)} answered there, not Ray"


def _speaker(data: bytes) -> str:
    """Who sent `data`, in words."""
    first_line = data.split(b"\n", 1)[0].strip().decode("ascii", "replace")
    if data.startswith(b"HTTP/"):
        return f"an HTTP server ({first_line})"
    if b"<html" in data.lower() or b"<!doctype" in data.lower():
        return "an HTTP server (a web page)"
    text = "".join(c for c in first_line if c.isprintable())[:40]
    return f"something else ({text!r})" if text else f"something else ({len(data)} bytes)"


def connect_failure(address: str | None, exc: BaseException, environ: Mapping[str, str] = os.environ) -> str:
    """Why joining a cluster failed, with what to do: a cluster started by `ray start --head` (Ray 2.59 and
    later) asks for a token, which Ray sends to an address given by hand only when told to."""
    message = f"cannot connect to the Ray cluster at {address or 'a new local Ray'}: {one_line(exc)}"
    if address not in (None, "auto", "local") and "RAY_AUTH_MODE" not in environ:
        message += (
            "; if the cluster uses token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (from "
            "`ray get-auth-token` on its head), or run on the head with --ray-address auto"
        )
    return message


# --- joining and leaving ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A port that must keep accepting connections while the batch runs."""

    name: str  # "its GCS", "this machine's raylet"
    host: str
    port: int


@dataclass(frozen=True)
class ClusterFacts:
    """What the batch learns of the cluster once joined."""

    resources: dict[str, float]
    endpoints: tuple[Endpoint, ...]
    node_id: str | None = None  # the driver's node, which the cluster's node table must keep alive


class Connection:
    """The batch's connection to Ray, kept by a thread of its own (see the module's docstring)."""

    earlier: Connection | None = None  # this process's last connection, which may still be leaving

    def __init__(self, ray: Any, address: str | None):
        self.ray = ray
        self.address = address
        self.owned = False  # whether this connection joined Ray (and so leaves it), or found it joined
        self.facts: ClusterFacts | None = None
        self.failure: BaseException | None = None
        self.actors: list[Any] = []  # killed as the connection closes
        self.ready = threading.Event()
        self.leave = threading.Event()
        self.left = threading.Event()

    @property
    def subject(self) -> str:
        if self.address:
            return f"the Ray cluster at {self.address}"
        return "the batch's own Ray" if self.owned else "the Ray this process joined"

    def open(self, stop: StopRequest) -> ClusterFacts:
        """Join (or start) Ray: ClusterError when it cannot be done within the bound, Interrupted on a stop."""
        _wait_for(Connection.earlier)
        self.owned = not self.ray.is_initialized()
        threading.Thread(target=self._keep, name="rr-controlnet-ray", daemon=True).start()
        Connection.earlier = self
        bound = START_SECONDS if self.owned and self.address is None else JOIN_SECONDS
        if not _wait(self.ready, bound, lambda: stop.requested):
            self.leave.set()
            if stop.requested:
                why = stop.signal_name or stop.reason
                raise Interrupted(f"interrupted ({why}) while connecting to {self.subject}", stop.signal_name)
            if self.address is None:
                raise ClusterError(f"a Ray of the batch's own did not start within {bound:g} s")
            raise ClusterError(connect_failure(self.address, TimeoutError(f"Ray could not join it within {bound:g} s")))
        if self.failure is not None:
            self.leave.set()
            if isinstance(self.failure, (ConnectionError, RuntimeError, ValueError)):
                raise ClusterError(connect_failure(self.address, self.failure))
            raise self.failure
        return self.facts

    def _keep(self) -> None:
        """The connection's thread: join (unless Ray was joined already), wait to leave, leave."""
        try:
            if self.owned:
                self._join()
            self.facts = cluster_facts(self.ray, self.address)
        except BaseException as exc:  # noqa: BLE001 - handed to the batch's thread
            self.failure = exc
        self.ready.set()
        self.leave.wait()
        _kill(self.ray, self.actors)
        if self.owned:
            with contextlib.suppress(Exception):
                self.ray.shutdown()
        self.left.set()

    def _join(self) -> None:
        if self.address is not None:
            probe_address(self.address)
        settings: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if self.address is None:
            settings.update(include_dashboard=False, _system_config=OWN_RAY_CONFIG)
        # "local": a Ray of the batch's own, even where `ray start` left one running (or its address file, after
        # a crash): joining that takes --ray-address auto.
        self.ray.init(address=self.address or "local", **settings)

    def close(self, actors: Sequence[Any], stop: StopRequest) -> bool:
        """Kill the actors and leave Ray (if this connection joined it) within LEAVE_SECONDS, or within
        LEAVE_STOPPING_SECONDS once a signal stops the batch; whether that was done in time. Past the bound
        the thread goes on alone, and the process's exit waits a little more for it (see _at_exit)."""
        self.actors = list(actors)
        self.leave.set()
        if _wait(self.left, LEAVE_SECONDS, lambda: stop.signal_name is not None, LEAVE_STOPPING_SECONDS):
            return True
        with contextlib.suppress(Exception):  # Ray's own shutdown at exit would race this thread's
            atexit.unregister(self.ray.shutdown)
            atexit.unregister(self.ray._private.worker.shutdown)
        code = EXIT_CODES_BY_SIGNAL.get(stop.signal_name, 130) if stop.signal_name else None
        atexit.register(self._at_exit, EXIT_STOPPING_SECONDS if code else EXIT_SECONDS, code)
        return False

    def _at_exit(self, seconds: float, code: int | None) -> None:
        """At the process's exit, Ray left behind: up to `seconds` more for it, rather than let Ray's threads
        race the interpreter's end; then, for a batch a signal stopped (its files complete, its lock
        released), the exit is immediate, with the signal's code."""
        if self.left.wait(seconds) or code is None:
            return
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def cluster_facts(ray: Any, address: str | None) -> ClusterFacts:
    """The cluster's resources and the endpoints to watch: for a driver on a node, the GCS and this node's
    raylet (Ray's fate sharing takes the raylet down with any of its agents); for a Ray client, its server."""
    resources = {name: float(value) for name, value in ray.cluster_resources().items()}
    if address is not None and address.startswith("ray://"):
        host, port = _target(address)
        return ClusterFacts(resources, (Endpoint("its Ray client server", host, port),))
    context = ray.get_runtime_context()
    host, _, port = context.gcs_address.rpartition(":")
    endpoints = [Endpoint("its GCS", host, int(port))]
    node_id = context.get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == node_id and node.get("NodeManagerPort"):
            endpoints.append(Endpoint("this machine's raylet", node["NodeManagerAddress"], node["NodeManagerPort"]))
    return ClusterFacts(resources, tuple(endpoints), node_id)


def node_check(ray: Any, node_id: str) -> Callable[[], str | None]:
    """A check, for ClusterWatch, that the cluster still lists the driver's node as alive (its raylet gone, the
    node is marked dead at once, while the raylet's port may still accept for a moment)."""

    def check() -> str | None:
        for node in ray.nodes():
            if node.get("NodeID") == node_id:
                where = node.get("NodeManagerAddress")
                return None if node.get("Alive") else f"its GCS marked this machine's node ({where}) dead"
        return "its GCS no longer lists this machine's node"

    return check


def _kill(ray: Any, actors: Sequence[Any]) -> None:
    for actor in actors:
        with contextlib.suppress(Exception):  # a cluster already gone must not hide the batch's own error
            ray.kill(actor, no_restart=True)


def dismiss(ray: Any, actor: Any) -> None:
    """Kill a worker given up on (it may be alive but unreachable) without waiting for Ray to do it."""
    threading.Thread(target=_kill, args=(ray, [actor]), name="rr-controlnet-ray-kill", daemon=True).start()


def _wait(event: threading.Event, seconds: float, hurry: Callable[[], bool], hurried_seconds: float = 0.0) -> bool:
    """Wait for the event up to `seconds`, or up to `hurried_seconds` from when `hurry()` holds; whether it came."""
    deadline = time.monotonic() + seconds
    while not event.wait(STEP):
        now = time.monotonic()
        if hurry():
            deadline = min(deadline, now + hurried_seconds)
        if now >= deadline:
            return False
    return True


def _wait_for(earlier: Connection | None) -> None:
    """An earlier connection of this process must have left before another joins (ray.init is one per process)."""
    if earlier is not None and not _wait(earlier.left, JOIN_SECONDS, lambda: False):
        raise ClusterError(f"this process is still leaving {earlier.subject}: start the batch in a new process")


# --- watching ----------------------------------------------------------------------------------------


class ClusterWatch:
    """Checks every HEALTH_EVERY seconds, on a thread of its own, that the cluster's endpoints accept
    connections; once one has failed for LOST_AFTER seconds, `lost` says so in one line. `check_now` (when a
    worker dies) also asks the cluster whether the driver's node is alive (`node_alive`, node_check's)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        subject: str,
        node_alive: Callable[[], str | None] | None = None,
        every: float = HEALTH_EVERY,
        lost_after: float = LOST_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.endpoints = tuple(endpoints)
        self.subject = subject
        self.node_alive = node_alive
        self.every = every
        self.lost_after = lost_after
        self.clock = clock
        self.failing_since: dict[Endpoint, float] = {}
        self.lost: str | None = None
        self.closed = threading.Event()

    def start(self) -> ClusterWatch:
        threading.Thread(target=self._run, name="rr-controlnet-ray-watch", daemon=True).start()
        return self

    def close(self) -> None:
        self.closed.set()

    def _run(self) -> None:
        while not self.closed.wait(self.every):
            self.check(self.lost_after)

    def check_now(self) -> str | None:
        """Check at once (a worker just died): an endpoint that fails now, or the driver's node marked dead,
        means the cluster is lost."""
        if self.check(0.0) is None and self.node_alive is not None:
            answer: list[str | None] = []
            asking = threading.Thread(target=lambda: answer.append(self.node_alive()), daemon=True)
            asking.start()
            asking.join(2 * CHECK_SECONDS)  # no answer in time (a busy GCS): not taken as lost
            if answer and answer[0] is not None and self.lost is None:
                self.lost = f"{self.subject} was lost: {answer[0]}"
        return self.lost

    def check(self, lost_after: float) -> str | None:
        """One check of every endpoint; `lost` once one has failed for `lost_after` seconds."""
        for endpoint in self.endpoints:
            failure = _refusal(endpoint)
            if failure is None:
                self.failing_since.pop(endpoint, None)
                continue
            since = self.failing_since.setdefault(endpoint, self.clock())
            if self.lost is None and self.clock() - since >= lost_after:
                self.lost = f"{self.subject} was lost: {endpoint.name} at {endpoint.host}:{endpoint.port} {failure}"
        return self.lost


def _refusal(endpoint: Endpoint) -> str | None:
    """None when the endpoint accepts a connection; otherwise how it failed."""
    try:
        with socket.create_connection((endpoint.host.strip("[]"), endpoint.port), timeout=CHECK_SECONDS):
            return None
    except TimeoutError:
        return f"did not answer within {CHECK_SECONDS:g} s"
    except OSError as exc:
        return f"refuses connections ({exc.strerror or type(exc).__name__})"
