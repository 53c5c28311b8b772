"""The Rerun web viewer's own files (index.html, the viewer's JavaScript and WebAssembly), as rerun-sdk ships
them, kept in a cache folder so that any HTTP server can serve them beside a batch's recordings.

rerun-sdk carries them only inside its binaries, served by `rerun --serve-web`. They are taken once per
rerun-sdk version, nothing downloaded: the bundled `rerun` is started on loopback ports (`--bind
127.0.0.1`), the files are read from it over HTTP, and it is stopped.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Final

from rr_controlnet.errors import RrControlnetError
from rr_controlnet.models.hub import models_cache_dir
from rr_controlnet.outputs.files import write_atomic
from rr_controlnet.recording.viewer import rerun_executable, start_server, stop_server

VIEWER_FILES: Final = ("index.html", "re_viewer.js", "re_viewer_bg.wasm", "sw.js", "favicon.ico")
START_SECONDS: Final = 60  # the bundled viewer starting and answering
READ_SECONDS: Final = 120  # the WebAssembly is about 40 MB


def web_viewer_folder(cache: Path | None = None) -> Path:
    """The folder that holds the web viewer's files for the installed rerun-sdk, taken on first use.
    Raises RrControlnetError when they cannot be had (no `rerun` binary, it does not start)."""
    folder = (cache or models_cache_dir()) / f"rerun-web-viewer-{metadata.version('rerun-sdk')}"
    if all((folder / name).is_file() for name in VIEWER_FILES):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    web_port, grpc_port = _free_port(), _free_port()
    command = [rerun_executable(), "--serve-web", "--bind", "127.0.0.1"]
    command += ["--web-viewer-port", str(web_port), "--port", str(grpc_port)]
    server = start_server(command)
    try:
        base = f"http://127.0.0.1:{web_port}/"
        _wait_until_answering(base, server)
        for name in VIEWER_FILES:
            with urllib.request.urlopen(base + name, timeout=READ_SECONDS) as response:  # noqa: S310 - loopback
                write_atomic(folder / name, response.read())
    except (OSError, urllib.error.URLError) as exc:
        raise RrControlnetError(f"cannot take the web viewer's files from the bundled rerun: {exc}") from None
    finally:
        stop_server(server)
    return folder


def _wait_until_answering(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RrControlnetError(f"the bundled rerun ended at start (exit {server.returncode})")
        try:
            with urllib.request.urlopen(base, timeout=5):  # noqa: S310 - loopback
                return
        except (OSError, urllib.error.URLError):
            time.sleep(0.25)
    raise RrControlnetError(f"the bundled rerun did not answer within {START_SECONDS} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
