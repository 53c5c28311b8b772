"""A stand-in for the Hugging Face hub on loopback: local folders served through the endpoints
huggingface_hub's own client calls, so downloads run the real download code without the internet.

    with StandInHub({"example/tiny": folder}) as hub:
        env = hub_env(hub.url, tmp_path / "hf-home")   # HF_ENDPOINT, HF_HOME, HF_HUB_CACHE for a subprocess

Served: repo info (`/api/models/{repo}[/revision/{rev}]`, with file sizes when asked for blobs), the
recursive tree (`/api/models/{repo}/tree/{rev}`) and files (`HEAD`/`GET /{repo}/resolve/{rev}/{path}`,
with the ETag, X-Repo-Commit and Content-Length headers the client reads; no Xet headers, so files
come over plain HTTP). Every request is logged in `requests`. A repo named in `gated` answers as the hub
does for a gated repo one has no access to: its listing is public, its files are refused (401 with the
`X-Error-Code: GatedRepo` header; 403 when a token is given).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


def _commit(repo: str) -> str:
    return hashlib.sha1(repo.encode()).hexdigest()


def _blob_id(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


class StandInHub:
    """Serves each folder of `repos` (repo id -> folder) as a model repo at one fixed commit."""

    def __init__(self, repos: dict[str, Path], gated: tuple[str, ...] = ()):
        self.repos = {repo: Path(folder) for repo, folder in repos.items()}
        self.gated = set(gated)
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> StandInHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def file_gets(self, suffix: str = "") -> list[str]:
        """The paths of the files downloaded (GET of a resolve URL) that end with `suffix`."""
        return [
            path for method, path in self.requests if method == "GET" and "/resolve/" in path and path.endswith(suffix)
        ]

    def files(self, repo: str) -> dict[str, Path]:
        folder = self.repos[repo]
        return {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def do_GET(self) -> None:
                self._answer(send_body=True)

            def _answer(self, send_body: bool) -> None:
                url = urlsplit(self.path)
                hub.requests.append((self.command, unquote(url.path)))
                parts = unquote(url.path).strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo, what = "/".join(parts[2:4]), (parts[4:] or ["revision"])[0]
                    if repo not in hub.repos:
                        return self._not_found("RepoNotFound")
                    if what == "revision":
                        return self._json(hub._info(repo, "blobs" in parse_qs(url.query)), send_body)
                    if what == "tree":
                        return self._json(hub._tree(repo), send_body)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                    if repo not in hub.repos:
                        return self._not_found("RepoNotFound")
                    if repo in hub.gated:
                        return self._gated(repo)
                    path = hub.files(repo).get(name)
                    if path is None or revision not in ("main", _commit(repo)):
                        return self._not_found("EntryNotFound")
                    return self._file(repo, path, send_body)
                if url.path == "/":
                    return self._json({}, send_body)
                return self._not_found("NotFound")

            def _json(self, document: object, send_body: bool) -> None:
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def _file(self, repo: str, path: Path, send_body: bool) -> None:
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("ETag", f'"{_blob_id(path)}"')
                self.send_header("X-Repo-Commit", _commit(repo))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def _gated(self, repo: str) -> None:
                message = f"Access to model {repo} is restricted. You must have access to it and be authenticated."
                body = json.dumps({"error": message}).encode()
                self.send_response(403 if self.headers.get("Authorization") else 401)
                self.send_header("X-Error-Code", "GatedRepo")
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _not_found(self, code: str) -> None:
                body = b'{"error": "not found"}'
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def _info(self, repo: str, with_sizes: bool) -> dict:
        siblings = [
            {"rfilename": name, **({"size": path.stat().st_size, "blobId": _blob_id(path)} if with_sizes else {})}
            for name, path in self.files(repo).items()
        ]
        return {"id": repo, "modelId": repo, "sha": _commit(repo), "private": False, "siblings": siblings}

    def _tree(self, repo: str) -> list[dict]:
        return [
            {"type": "file", "path": name, "size": path.stat().st_size, "oid": _blob_id(path)}
            for name, path in self.files(repo).items()
        ]


def hub_env(url: str, hf_home: Path) -> dict[str, str]:
    """This process's environment pointed at a stand-in hub and an own Hugging Face folder, online."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=url, HF_HOME=str(hf_home), HF_HUB_CACHE=str(hf_home / "hub"), HF_HUB_DISABLE_TELEMETRY="1")
    return env
