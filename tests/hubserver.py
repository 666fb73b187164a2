"""A small Hugging Face Hub stand-in on loopback, for tests.

``huggingface_hub`` is pointed at it through ``endpoint=`` or ``HF_ENDPOINT``
and runs unpatched, so the tests exercise the real client: its URL layout,
headers, error classification and cache. Only the two endpoints SpecOps uses
are served, with the behaviour of the real Hub that the client relies on:

* ``GET /api/models/{repo}[/revision/{rev}]``: model info JSON with ``id``,
  ``sha``, ``siblings`` and, when configured, ``safetensors`` metadata. Gated
  repos answer this without a token, like the Hub (their metadata is public).
* ``HEAD|GET /{repo}/resolve/{rev}/{file}``: the file, with ``X-Repo-Commit``,
  ``ETag`` (quoted git-blob SHA-1, as the Hub sends for non-LFS files) and
  ``Content-Length``; weight files (LFS on the Hub) also get ``X-Linked-Etag``
  (their SHA-256) and ``X-Linked-Size``.
* Errors as the Hub spells them: 404 with ``X-Error-Code: RepoNotFound``,
  ``RevisionNotFound`` or ``EntryNotFound`` (the latter with
  ``X-Repo-Commit``); 401 (no token) / 403 (token without access) with
  ``X-Error-Code: GatedRepo`` for downloads from gated repos.
* Injected faults to test temporary errors: a status (5xx/429, optional
  ``Retry-After``) for the next N matching requests, and a response delay.

Every request is recorded in :attr:`HubServer.requests` so tests can check
what the client actually asked for (e.g. that a cache hit asked nothing).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hub"


@dataclass
class Repo:
    """One model repo: named revisions pointing at commits holding files."""

    repo_id: str
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    gated: bool = False
    allowed_tokens: set[str] = field(default_factory=set)
    safetensors: dict[str, Any] | None = None

    def add_commit(self, files: dict[str, bytes], *, ref: str | None = "main") -> str:
        """Store ``files`` as a commit (SHA derived from the content) and point ``ref`` at it."""
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(self.repo_id.encode())
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name] + b"\0")
        sha = digest.hexdigest()
        self.commits[sha] = dict(files)
        if ref is not None:
            self.refs[ref] = sha
        return sha

    def lookup(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        if revision in self.commits:
            return revision
        return None


@dataclass
class Fault:
    """Answer the next ``count`` requests whose path contains ``match`` with ``status``."""

    status: int
    count: int
    match: str = ""
    retry_after: int | None = None


@dataclass
class Recorded:
    method: str
    path: str
    authorization: str | None


LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def is_lfs(filename: str) -> bool:
    """Weights live in Git LFS on the Hub; small text files are plain git blobs."""
    return filename.endswith(LFS_SUFFIXES)


def git_blob_sha(data: bytes) -> str:
    """The SHA-1 git gives a blob; the Hub's ETag for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class HubServer:
    """A threaded loopback HTTP server speaking the Hub's model endpoints."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.delay_seconds = 0.0
        self.on_request: Callable[[str, str], None] | None = None
        """Called with (method, path) before answering: lets a test change the repo mid-flight."""
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._stopped = False

    # ---- lifecycle -------------------------------------------------------
    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; the port closes, so clients see connection errors. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- content -----------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        gated: bool = False,
        allowed_tokens: set[str] | None = None,
        safetensors: dict[str, Any] | None = None,
    ) -> Repo:
        repo = Repo(
            repo_id,
            gated=gated,
            allowed_tokens=set(allowed_tokens or ()),
            safetensors=safetensors,
        )
        repo.add_commit(files)
        self.repos[repo_id] = repo
        return repo

    def add_fixtures(self, root: Path = FIXTURES) -> None:
        """Serve every ``<org>/<repo>/config.json`` under ``root`` as repo ``org/repo``."""
        for config in sorted(root.glob("*/*/config.json")):
            repo_id = f"{config.parent.parent.name}/{config.parent.name}"
            self.add_repo(repo_id, {"config.json": config.read_bytes()})

    def fail_next(
        self, count: int, status: int = 503, *, match: str = "", retry_after: int | None = None
    ) -> None:
        """Answer the next ``count`` requests (path containing ``match``) with ``status``."""
        with self._lock:
            self.faults.append(Fault(status, count, match, retry_after))

    def paths(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests if method is None or r.method == method]

    # ---- request handling ----------------------------------------------------
    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.count > 0 and fault.match in path:
                    fault.count -= 1
                    return fault
        return None

    def _record(self, method: str, path: str, authorization: str | None) -> None:
        with self._lock:
            self.requests.append(Recorded(method, path, authorization))


_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?/?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


def _handler_for(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        # ---- helpers ---------------------------------------------------------
        def _send(
            self,
            status: int,
            payload: bytes = b"",
            *,
            body: bool,
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if body and payload:
                self.wfile.write(payload)

        def _error(
            self, status: int, code: str | None, message: str, *, body: bool, **extra: str
        ) -> None:
            headers = {"Content-Type": "application/json", "X-Error-Message": message, **extra}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, json.dumps({"error": message}).encode(), body=body, headers=headers)

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization")
            if auth and auth.lower().startswith("bearer "):
                return auth[7:].strip()
            return None

        def _serve(self, *, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub._record(self.command, path, self.headers.get("Authorization"))
            if hub.delay_seconds:
                time.sleep(hub.delay_seconds)
            if hub.on_request is not None:
                hub.on_request(self.command, path)
            fault = hub._take_fault(path)
            if fault is not None:
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                self._error(fault.status, None, "injected fault", body=body, **extra)
                return
            if match := _INFO.match(path):
                self._model_info(match["repo"], match["rev"] or "main", body=body)
            elif match := _RESOLVE.match(path):
                self._resolve(match["repo"], match["rev"], match["file"], body=body)
            else:
                self._error(404, None, "Not Found", body=body)

        def _repo(self, repo_id: str, *, body: bool) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found", body=body)
            return repo

        def _model_info(self, repo_id: str, revision: str, *, body: bool) -> None:
            repo = self._repo(repo_id, body=body)
            if repo is None:
                return
            sha = repo.lookup(revision)
            if sha is None:
                self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, body=body)
                return
            info: dict[str, Any] = {
                "_id": hashlib.md5(repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "sha": sha,
                "private": False,
                "gated": "manual" if repo.gated else False,
                "disabled": False,
                "siblings": [{"rfilename": name} for name in sorted(repo.commits[sha])],
            }
            if repo.safetensors is not None:
                info["safetensors"] = repo.safetensors
            payload = json.dumps(info).encode()
            self._send(200, payload, body=body, headers={"Content-Type": "application/json"})

        def _resolve(self, repo_id: str, revision: str, filename: str, *, body: bool) -> None:
            repo = self._repo(repo_id, body=body)
            if repo is None:
                return
            if repo.gated:
                token = self._token()
                if token is None:
                    self._error(401, "GatedRepo", "Access to this model is restricted", body=body)
                    return
                if token not in repo.allowed_tokens:
                    self._error(403, "GatedRepo", "You are not in the authorized list", body=body)
                    return
            sha = repo.lookup(revision)
            if sha is None:
                self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, body=body)
                return
            data = repo.commits[sha].get(filename)
            if data is None:
                self._error(
                    404, "EntryNotFound", "Entry not found", body=body, **{"X-Repo-Commit": sha}
                )
                return
            headers = {
                "Content-Type": "application/octet-stream",
                "X-Repo-Commit": sha,
                "ETag": f'"{git_blob_sha(data)}"',
                "Accept-Ranges": "bytes",
            }
            if is_lfs(filename):
                # The Hub names LFS blobs by their SHA-256 and says so in X-Linked-*
                # (it redirects to a CDN; serving in place keeps this loopback-only).
                digest = hashlib.sha256(data).hexdigest()
                headers["X-Linked-Etag"] = f'"{digest}"'
                headers["X-Linked-Size"] = str(len(data))
                headers["ETag"] = f'"{digest}"'
            self._send(200, data, body=body, headers=headers)

    return Handler


def main() -> None:
    """Serve the fixtures until interrupted: ``python tests/hubserver.py``."""
    with HubServer() as hub:
        hub.add_fixtures()
        print(f"HF_ENDPOINT={hub.endpoint}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
