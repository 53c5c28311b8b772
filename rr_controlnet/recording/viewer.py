"""The Rerun viewer side: live streaming targets, and opening a batch's output in a viewer."""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
import socket
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


@dataclass
class LiveViewer:
    """Where item streams send their data live; holds the server alive while serving the web viewer."""

    url: str
    description: str
    server: Any = None  # the RecordingStream that owns the gRPC server, for --serve-web


def start_live_viewer(
    spawn: bool, connect_url: str | None, serve_web: bool, manifest: Manifest, out_dir: Path
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
        return serve_batch(manifest, out_dir)
    return None


def serve_batch(manifest: Manifest, out_dir: Path) -> LiveViewer:
    """Serve a batch's recording over gRPC, and the web viewer page that shows it.

    The stream that owns the server is the batch's own recording (its id, name and start time), so a
    page lists that one recording only. Its server hands the batch blueprint, as the default, to every
    page as it connects, before the data it has buffered: a page that saw the recording without a
    blueprint for a frame would lay it out by heuristics, and the viewer never swaps an active
    blueprint for a default that arrives later (the item streams' own).
    """
    import rerun as rr

    server = rr.RecordingStream(APPLICATION_ID, recording_id=run_recording_id(out_dir), send_properties=False)
    url = server.serve_grpc(grpc_port=VIEWER_PORT, default_blueprint=items_blueprint(manifest.items))
    batch_properties(manifest.path, out_dir, time.time_ns()).send(server)
    rr.serve_web_viewer(web_port=WEB_VIEWER_PORT, connect_to=url, open_browser=False)
    page = f"http://localhost:{WEB_VIEWER_PORT}/?url={urllib.parse.quote(url, safe='')}"
    return LiveViewer(url, f"serving the web viewer: open {page}", server)


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
