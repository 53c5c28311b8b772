"""`rr-controlnet review OUT --serve`: the output folder and the Rerun web viewer over HTTP, on loopback.

    http://127.0.0.1:8765/index.html              the review page; its "Open in Rerun" links go to
    http://127.0.0.1:8765/rerun-viewer/?url=...   the web viewer rerun-sdk ships, opening an item's .rrd

One server for both, so the viewer reads the recordings from its own origin. It listens on 127.0.0.1
unless told another address (prompts and images are then visible to that network), and stops on Ctrl-C.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Final

from rr_controlnet.errors import UsageError
from rr_controlnet.outputs.names import PAGE_NAME
from rr_controlnet.recording.viewer import LOOPBACK, exposure_warning
from rr_controlnet.recording.web_viewer import web_viewer_folder

DEFAULT_PORT: Final = 8765
VIEWER_PATH: Final = "/rerun-viewer/"  # where the pages' "Open in Rerun" links expect the web viewer
POLL_SECONDS: Final = 0.25  # how soon Ctrl-C is answered


class FolderHandler(SimpleHTTPRequestHandler):
    """The folder's files, and the web viewer's under VIEWER_PATH; quiet (no line per request)."""

    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
    }

    def __init__(self, *args: Any, viewer: Path, **kwargs: Any):
        self.viewer = viewer
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        route = urllib.parse.urlsplit(path).path
        if route.startswith(VIEWER_PATH):
            name = Path(urllib.parse.unquote(route[len(VIEWER_PATH) :])).name or "index.html"
            return str(self.viewer / name)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # a page written again shows at once
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class FolderServer:
    server: ThreadingHTTPServer
    url: str  # the folder's page

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]


def start_server(folder: Path, viewer: Path, bind: str = LOOPBACK, port: int = DEFAULT_PORT) -> FolderServer:
    """A server for `folder` and the web viewer in `viewer` (not yet serving: serve() does)."""
    handler = functools.partial(FolderHandler, directory=str(folder), viewer=viewer)
    try:
        server = ThreadingHTTPServer((bind, port), handler)
    except OSError as exc:
        raise UsageError(f"cannot listen on {bind}:{port}: {exc.strerror or exc}") from None
    server.daemon_threads = True  # Ctrl-C does not wait for a browser's open connections
    host, bound_port = server.server_address[:2]
    shown = LOOPBACK if host in ("0.0.0.0", "::") else host  # noqa: S104 - shown, not bound
    shown = f"[{shown}]" if ":" in shown else shown
    return FolderServer(server, f"http://{shown}:{bound_port}/{PAGE_NAME}")


def serve(folder_server: FolderServer, log: Callable[[str], None]) -> None:
    """Serve until Ctrl-C (or SIGTERM turned into KeyboardInterrupt); the socket is closed either way."""
    try:
        log(f"serving {folder_server.url} (Ctrl-C stops)")
        folder_server.server.serve_forever(poll_interval=POLL_SECONDS)
    except KeyboardInterrupt:
        log("stopped")
    finally:
        folder_server.server.server_close()


def serve_review(
    out_dir: Path, bind: str | None = None, port: int | None = None, log: Callable[[str], None] = print
) -> None:
    """`rr-controlnet review OUT --serve`: OUT and the web viewer until Ctrl-C, on `bind` (LOOPBACK when
    None) and `port` (DEFAULT_PORT). Raises UsageError when the address cannot be listened on,
    RrControlnetError when the web viewer's files cannot be had."""
    bind, port = bind or LOOPBACK, DEFAULT_PORT if port is None else port
    warning = exposure_warning(bind)
    if warning:
        log(warning)
    serve(start_server(Path(out_dir), web_viewer_folder(), bind, port), log)
