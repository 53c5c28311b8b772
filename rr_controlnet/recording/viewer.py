"""The Rerun viewer side: live streaming targets, and opening a batch's output in a viewer."""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import hashlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from rr_controlnet.errors import OutputFolderError, RrControlnetError
from rr_controlnet.outputs import ItemOutcome, OutputFolder
from rr_controlnet.outputs.names import BLUEPRINT_NAME, RECORDING_SUFFIX
from rr_controlnet.recording.layout import APPLICATION_ID, batch_properties, items_blueprint, run_recording_id
from rr_controlnet.recording.write import save_batch_blueprint
from rr_controlnet.spec import Manifest

if TYPE_CHECKING:
    from rr_controlnet.recording.layout import LaidOut

DEFAULT_GRPC_URL: Final = "rerun+http://127.0.0.1:9876/proxy"
VIEWER_PORT: Final = 9876
WEB_VIEWER_PORT: Final = 9090
LOOPBACK: Final = "127.0.0.1"  # where servers listen unless told otherwise (--bind)
SERVER_START_SECONDS: Final = 30


def exposure_warning(bind: str) -> str | None:
    """The one line to print when a server listens beyond this machine, else None."""
    try:
        loopback = ipaddress.ip_address(bind).is_loopback
    except ValueError:
        loopback = bind == "localhost"
    return None if loopback else f"warning: listening on {bind}: prompts and images become visible to that network"


@dataclass
class LiveViewer:
    """Where item streams send their data live; holds the server alive while serving the web viewer."""

    url: str
    description: str
    server: Any = None  # the batch's own RecordingStream, streaming into the served viewer (--serve-web)
    process: subprocess.Popen | None = None  # the bundled `rerun` serving the web viewer and gRPC (--serve-web)


def start_live_viewer(
    spawn: bool, connect_url: str | None, serve_web: bool, manifest: Manifest, out_dir: Path, bind: str | None = None
) -> LiveViewer | None:
    """Spawn, connect to, or serve a viewer for a batch; None when the output goes to files only."""
    import rerun as rr

    if connect_url:
        require_reachable(connect_url)
        return LiveViewer(connect_url, f"streaming to {connect_url}")
    if spawn:
        # rr.spawn() does nothing for a disabled (never initialised) global recording: hand it one.
        launcher = rr.RecordingStream(APPLICATION_ID)
        rr.spawn(port=VIEWER_PORT, connect=False, executable_path=rerun_executable(), recording=launcher)
        require_reachable(DEFAULT_GRPC_URL, wait_seconds=15)
        return LiveViewer(DEFAULT_GRPC_URL, "streaming to a spawned viewer")
    if serve_web:
        return serve_batch(manifest, out_dir, bind or LOOPBACK)
    return None


def serve_batch(manifest: Manifest, out_dir: Path, bind: str = LOOPBACK) -> LiveViewer:
    """Serve a batch's recording over gRPC, and the web viewer page that shows it, on `bind`.

    rerun-sdk's own servers (`serve_grpc`, `serve_web_viewer`) listen on every address, so the bundled
    `rerun --serve-web --bind` serves both, stopped when this process exits. The batch's own recording
    (its id, name and start time) connects first, handing the batch blueprint over as the default before
    any data, so a page lists that one recording, laid out by the blueprint: a page that saw the
    recording without a blueprint for a frame would lay it out by heuristics, and the viewer never swaps
    an active blueprint for a default that arrives later (the item streams' own).
    """
    import rerun as rr

    command = [rerun_executable(), "--serve-web", "--bind", bind, "--port", str(VIEWER_PORT)]
    command += ["--web-viewer-port", str(WEB_VIEWER_PORT)]
    process = start_server(command)
    atexit.register(stop_server, process)
    host = LOOPBACK if bind in ("0.0.0.0", "::") else bind  # noqa: S104 - reached, not bound
    host = f"[{host}]" if ":" in host else host
    url = f"rerun+http://{host}:{VIEWER_PORT}/proxy"
    try:
        require_reachable(url, wait_seconds=SERVER_START_SECONDS)
    except RrControlnetError:
        stop_server(process)
        raise RrControlnetError(f"the web viewer could not be served on {bind} (ports {VIEWER_PORT}, "
                                f"{WEB_VIEWER_PORT}): is one of them in use?") from None  # fmt: skip
    server = rr.RecordingStream(APPLICATION_ID, recording_id=run_recording_id(out_dir), send_properties=False)
    server.connect_grpc(url, default_blueprint=items_blueprint(manifest.items))
    batch_properties(manifest.path, out_dir, time.time_ns()).send(server)
    page = f"http://{host}:{WEB_VIEWER_PORT}/?url={urllib.parse.quote(url, safe='')}"
    warning = exposure_warning(bind)
    description = (f"{warning}\n" if warning else "") + f"serving the web viewer: open {page}"
    return LiveViewer(url, description, server, process)


def start_server(command: list[str]) -> subprocess.Popen:
    """A server process in a session of its own, so that stop_server ends what it starts too (`rerun` on
    PATH is a script that runs the binary as its child)."""
    quiet = subprocess.DEVNULL
    return subprocess.Popen(command, stdin=quiet, stdout=quiet, stderr=quiet, start_new_session=True)


def stop_server(process: subprocess.Popen) -> None:
    """End a server start_server started, and what it started, within bounds."""
    for stop in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, stop)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
            return


def require_reachable(url: str, wait_seconds: float = 0.0) -> None:
    """Refuse to start when nothing listens at a viewer URL, rather than failing every item later."""
    parsed = urllib.parse.urlparse(url.replace("rerun+", "", 1))
    address = (parsed.hostname or "127.0.0.1", parsed.port or VIEWER_PORT)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with socket.create_connection(address, timeout=2):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise RrControlnetError(f"no Rerun viewer is listening at {url}; start one with `rerun`") from None
            time.sleep(0.25)


def rerun_executable() -> str:
    """The `rerun` binary of this environment (it comes with rerun-sdk), else the one on PATH."""
    beside_python = Path(sys.executable).with_name("rerun")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("rerun")
    if found is None:
        raise RrControlnetError("the `rerun` viewer executable was not found; install rerun-sdk in this environment")
    return found


def viewer_command(out_dir: Path, item_patterns: Sequence[str] = ()) -> list[str]:
    """Open the item files of a batch (all, or those whose ids match a pattern) with a blueprint.

    The files are listed rather than the folder: a folder would also load the PNGs beside them. Paths
    are absolute, so an id starting with '-' never reads as an option.
    """
    out_dir = Path(out_dir).resolve()
    recordings = sorted(path for path in out_dir.glob(f"*{RECORDING_SUFFIX}") if not path.name.startswith("."))
    if not recordings:
        raise RrControlnetError(f"{out_dir}: no .rrd files here; run `rr-controlnet batch` first")
    if item_patterns:
        recordings = [path for path in recordings if any(fnmatch.fnmatchcase(path.stem, p) for p in item_patterns)]
        if not recordings:
            raise RrControlnetError(f"{out_dir}: no item matches {' '.join(item_patterns)}")
        blueprint = subset_blueprint(_laid_out(out_dir, [path.stem for path in recordings]))
    else:
        blueprint = out_dir / BLUEPRINT_NAME
    files = [str(path) for path in recordings] + ([str(blueprint)] if blueprint.exists() else [])
    return [rerun_executable(), *files]


def _laid_out(out_dir: Path, item_ids: Sequence[str]) -> list[LaidOut]:
    """These items as the folder records them (a sweep variant with its place), else by id alone."""

    try:
        recorded = OutputFolder(out_dir).read().by_id()
    except OutputFolderError:
        recorded = {}
    return [recorded.get(item_id) or ItemOutcome.pending(item_id) for item_id in item_ids]


def subset_blueprint(items: Sequence[LaidOut]) -> Path:
    """A blueprint with a tab for each of these items (grid tabs for sweep variants), saved where the
    viewer can read it."""

    key = hashlib.sha256("\n".join(item.id for item in items).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "rr-controlnet-view"
    folder.mkdir(exist_ok=True)
    return save_batch_blueprint(items, folder / f"{key}.rbl")
