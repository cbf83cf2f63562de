"""A small model hub for tests and benchmarks: ModelScope- and HuggingFace-compatible, on 127.0.0.1 only.

It serves the real files of local model directories with the JSON shapes and headers the real clients expect
(`modelscope` / `modelscope-hub` and `huggingface_hub`), honours `Range`, and injects faults on request: a
connection dropped mid-file, N 5xx answers then success, corrupted bytes, a slow or stalled body, a listing that
claims a wrong size, a token it insists on. Everything it sends is logged so tests can count the bytes moved.

A *hold* (`hub.hold(...)`) stops the hub at an exact point — after N body bytes of file downloads over all
connections, or on the arrival of the k-th request — and keeps every connection there until the test calls
`hold.release()`, then carries on as if nothing happened. A test that kills, freezes or races a client does it
while the client is parked at that point, so the fault lands where the test says on a fast machine and a slow one.

ModelScope (endpoint `http://127.0.0.1:PORT`, as `MODELSCOPE_ENDPOINT` or `endpoint=`):
    GET /api/v1/models/{owner}/{name}                              repo info
    GET /api/v1/models/{owner}/{name}/revisions                    branches and tags (clients before 1.38)
    GET /api/v1/models/{owner}/{name}/repo/files?Revision=&Recursive=&Root=   the listing (Size, Sha256, ...)
    GET /api/v1/models/{owner}/{name}/repo?Revision=&FilePath=     the raw bytes of one file
HuggingFace (endpoint `http://127.0.0.1:PORT`, as `HF_ENDPOINT` or `endpoint=`):
    GET  /api/models/{owner}/{name}[/revision/{rev}]               model info (`sha` = the commit)
    GET  /api/models/{owner}/{name}/tree/{rev}[/{path}]?recursive= the tree (size, oid, lfs.oid = sha256)
    HEAD|GET /{owner}/{name}/resolve/{rev}/{path}                  metadata headers / the raw bytes

Run standalone (for benchmarks or by hand): `python -m llama_ascend_dev.hub --repo owner/name=DIR [--port N]`; it prints
the endpoint URL on its first line and serves until killed. `GET /_hub/stats` reports the bytes sent so far.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

CHUNK = 256 * 1024
FAULT_KINDS = ("status", "drop", "corrupt", "slow", "stall")


@dataclass
class Fault:
    """One injected misbehaviour for the file requests that match `path` (None: every file).

    kind: `status` answers `status` instead of the file; `drop` closes the connection after `after` body bytes;
    `corrupt` flips the byte at file offset `after`; `slow` caps the body at `rate` bytes/s; `stall` sends `after`
    bytes of the response and then nothing for `seconds` (then closes). `times` is how many matching requests it
    affects (-1: all of them).
    """

    kind: str
    path: str | None = None
    times: int = 1
    status: int = 500
    after: int = 0
    rate: int = 0
    seconds: float = 3600.0
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {FAULT_KINDS}")


class Hold:
    """The hub parked at one point until `release()`: after `after_bytes` body bytes of file downloads (counted over
    every connection from the moment it was armed), or on the arrival of request number `at_request` (0-based, any
    route) since then. `reached` is set when the first connection gets there; on release the held connections
    carry on where they stopped (a pause, not a fault: the client sees a slow server)."""

    def __init__(self, after_bytes: int | None = None, at_request: int | None = None) -> None:
        if (after_bytes is None) == (at_request is None):
            raise ValueError("a hold is either after_bytes=N or at_request=K")
        if min(n for n in (after_bytes, at_request) if n is not None) < 0:
            raise ValueError("after_bytes and at_request count from 0")
        self.after_bytes = after_bytes
        self.at_request = at_request
        self.reached = threading.Event()
        self.released = threading.Event()
        self.sent = 0  # file body bytes sent since armed (under the hub's lock)
        self.requests = 0  # requests seen since armed (under the hub's lock)

    def describe(self) -> str:
        if self.after_bytes is not None:
            return f"after {self.after_bytes} bytes"
        return f"on request {self.at_request}"

    def release(self) -> None:
        self.released.set()

    def park(self, stopping: threading.Event) -> None:
        """Called by a connection that got to the point: signal it, then wait for the release (or the hub's stop)."""
        self.reached.set()
        while not (self.released.wait(0.05) or stopping.is_set()):
            pass

    def wait_reached(self, alive: Callable[[], bool], timeout: float = 300) -> bool:
        """Block until a connection is parked, or until `alive()` turns false (the client ended first). `timeout`
        only guards against a hang; reaching the point is not a matter of time."""
        deadline = time.monotonic() + timeout
        while not self.reached.wait(0.02):
            if not alive() or time.monotonic() > deadline:
                return self.reached.is_set()
        return True


@dataclass
class FileEntry:
    path: str
    file: Path
    size: int
    sha256: str
    git_oid: str  # the git blob id HuggingFace reports for every file (and as ETag for non-LFS files)

    @property
    def is_lfs(self) -> bool:
        return self.size >= 10 * 1024 * 1024 or self.path.endswith((".safetensors", ".bin", ".pth", ".gguf"))


@dataclass
class Repo:
    repo_id: str
    directory: Path
    branches: dict[str, str] = field(default_factory=dict)  # branch name -> commit
    files: dict[str, FileEntry] = field(default_factory=dict)
    size_overrides: dict[str, int] = field(default_factory=dict)  # what the listing claims instead of the truth

    @property
    def commit(self) -> str:
        return next(iter(self.branches.values()))

    def resolve(self, revision: str | None) -> str | None:
        if not revision:
            return self.commit
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.branches.values() else None

    def listed_size(self, entry: FileEntry) -> int:
        return self.size_overrides.get(entry.path, entry.size)


@dataclass
class Request:
    method: str
    path: str  # URL path and query
    file: str | None  # repo path of a file request
    range_start: int
    status: int
    sent: int  # body bytes written


def _digests(file: Path) -> tuple[str, str]:
    sha256 = hashlib.sha256()
    size = file.stat().st_size
    git = hashlib.sha1(b"blob %d\0" % size)
    with file.open("rb") as fh:
        while block := fh.read(4 * 1024 * 1024):
            sha256.update(block)
            git.update(block)
    return sha256.hexdigest(), git.hexdigest()


def scan(directory: Path) -> dict[str, FileEntry]:
    """Every regular file under `directory` (hidden ones included), with its size and digests."""
    files = {}
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = file.relative_to(directory).as_posix()
        sha256, oid = _digests(file)
        files[rel] = FileEntry(rel, file, file.stat().st_size, sha256, oid)
    return files


class HubServer:
    """`with HubServer() as hub: hub.add_repo("owner/name", dir); hub.url` — threads in this process."""

    def __init__(self, token: str | None = None, port: int = 0) -> None:
        self.token = token  # when set, every request must carry it (Bearer header or ModelScope's cookie)
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self._hold: Hold | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # -- setup ------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}"  # it binds loopback only

    def add_repo(self, repo_id: str, directory: Path, branches: tuple[str, ...] = ("master", "main")) -> Repo:
        """Serve `directory` as `repo_id`; each branch name resolves to one commit id derived from the content."""
        files = scan(Path(directory))
        commit = hashlib.sha1(repo_id.encode() + b"".join(f"{e.path}:{e.sha256}".encode() for e in files.values()))
        repo = Repo(repo_id, Path(directory), {b: commit.hexdigest() for b in branches}, files)
        with self._lock:
            self.repos[repo_id] = repo
        return repo

    def inject(self, kind: str, path: str | None = None, **params: Any) -> Fault:
        fault = Fault(kind, path, **params)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def hold(self, after_bytes: int | None = None, at_request: int | None = None) -> Hold:
        """Arm a hold (see Hold); it replaces (and releases) an earlier one."""
        hold = Hold(after_bytes, at_request)
        with self._lock:
            previous, self._hold = self._hold, hold
        if previous is not None:
            previous.release()
        return hold

    def release(self) -> None:
        """Release and disarm the current hold: held connections close, new ones run freely."""
        with self._lock:
            hold, self._hold = self._hold, None
        if hold is not None:
            hold.release()

    def mark(self) -> int:
        """A point in the request log: `sent(since=mark)` counts only requests made after it."""
        with self._lock:
            return len(self.requests)

    def sent(self, file: str | None = None, since: int = 0) -> int:
        """Body bytes of file downloads sent so far (one file, or all; from requests after `since`)."""
        with self._lock:
            return sum(r.sent for r in self.requests[since:] if r.file is not None and (file is None or r.file == file))

    def file_requests(self, file: str | None = None, method: str = "GET") -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.file is not None and r.method == method and (file is None or r.file == file)
            ]

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------------------------
    def _take_faults(self, path: str) -> list[Fault]:
        """The faults that apply to this file request, each counted as used once."""
        taken = []
        with self._lock:
            for fault in self.faults:
                if fault.path not in (None, path) or (fault.times >= 0 and fault.hits >= fault.times):
                    continue
                fault.hits += 1
                taken.append(fault)
        return taken

    def _log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _hold_on_arrival(self) -> Hold | None:
        """The armed hold if this request is the one it waits for (counts the request either way)."""
        with self._lock:
            hold = self._hold
            if hold is None or hold.at_request is None or hold.released.is_set():
                return None
            number = hold.requests
            hold.requests += 1
            return hold if number >= hold.at_request else None

    def _byte_budget(self, want: int) -> tuple[int, Hold | None]:
        """How many of `want` body bytes this connection may send now, and the hold to park at once they are sent
        (None: no byte hold is armed, send freely)."""
        with self._lock:
            hold = self._hold
            if hold is None or hold.after_bytes is None or hold.released.is_set():
                return want, None
            allowed = max(0, min(want, hold.after_bytes - hold.sent))
            hold.sent += allowed
            return allowed, hold if hold.sent >= hold.after_bytes else None

    def _bytes_held(self) -> bool:
        with self._lock:
            return self._hold is not None and self._hold.after_bytes is not None and not self._hold.released.is_set()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request is what the tests do on purpose; anything else is printed."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            super().handle_error(request, client_address)


_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("hub_stats", re.compile(r"/_hub/stats")),
    ("ms_files", re.compile(r"/api/v1/models/([^/]+/[^/]+)/repo/files")),
    ("ms_file", re.compile(r"/api/v1/models/([^/]+/[^/]+)/repo")),
    ("ms_revisions", re.compile(r"/api/v1/models/([^/]+/[^/]+)/revisions")),
    ("ms_info", re.compile(r"/api/v1/models/([^/]+/[^/]+)")),
    ("hf_tree", re.compile(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?")),
    ("hf_info", re.compile(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?")),
    ("hf_file", re.compile(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)")),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llama-ascend-test-hub/1"

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        self.head = head
        split = urlsplit(self.path)
        path = unquote(split.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        for name, pattern in _ROUTES:
            match = pattern.fullmatch(path)
            if match:
                if name != "hub_stats":
                    held = self.hub._hold_on_arrival()
                    if held is not None:
                        held.park(self.hub._stopping)
                if name != "hub_stats" and not self._authorized(name):
                    return
                try:
                    getattr(self, name)(*match.groups())
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                return
        self._reply(404, {"error": f"no route for {path}"}, error_code="EntryNotFound")

    def _authorized(self, route: str) -> bool:
        token = self.hub.token
        if token is None:
            return True
        sent = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        cookie = re.search(r"m_session_id=([^;\s]+)", self.headers.get("Cookie") or "")
        if sent == token or (cookie and cookie.group(1) == token):
            return True
        if route.startswith("ms_"):
            self._reply(
                401 if not sent and not cookie else 403, _ms_error(401, "Unauthorized: log in with an access token")
            )
        elif not sent:
            self._reply(
                401,
                {"error": "Access to this model is restricted. You must be authenticated."},
                "GatedRepo",
                "Access restricted to authenticated users",
            )
        else:
            self._reply(
                403,
                {"error": "Your token is not in the authorized list."},
                "GatedRepo",
                "Access to this model is restricted and you are not in the authorized list",
            )
        return False

    def _reply(
        self,
        status: int,
        body: Any,
        error_code: str | None = None,
        error_message: str | None = None,
        headers: dict[str, str] | None = None,
        file: str | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        if error_code:
            self.send_header("X-Error-Code", error_code)
        if error_message:
            self.send_header("X-Error-Message", error_message)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not self.head:
            self.wfile.write(data)
        self.hub._log(Request(self.command, self.path, file, 0, status, 0))

    def _repo(self, repo_id: str, hf: bool) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            if hf:
                self._reply(404, {"error": "Repository not found"}, "RepoNotFound", "Repository not found")
            else:
                self._reply(404, _ms_error(404, f"model {repo_id} not found"))
        return repo

    def _commit(self, repo: Repo, revision: str | None, hf: bool) -> str | None:
        commit = repo.resolve(revision)
        if commit is None:
            if hf:
                self._reply(
                    404, {"error": f"Invalid rev id: {revision}"}, "RevisionNotFound", f"Invalid rev id: {revision}"
                )
            else:
                self._reply(404, _ms_error(404, f"revision {revision} not found in {repo.repo_id}"))
        return commit

    # -- the test hub's own ----------------------------------------------------------------------------------
    def hub_stats(self) -> None:
        """Bytes sent and file requests so far, for callers in another process (the benchmark)."""
        hub = self.hub
        self._reply(200, {"sent": hub.sent(), "file_requests": len(hub.file_requests()), "requests": hub.mark()})

    # -- ModelScope -------------------------------------------------------------------------------------------
    def ms_info(self, repo_id: str) -> None:
        repo = self._repo(repo_id, hf=False)
        if repo:
            owner, name = repo_id.split("/")
            self._reply(
                200,
                _ms_ok(
                    {
                        "Id": abs(hash(repo_id)) % 10**6,
                        "Name": name,
                        "Path": owner,
                        "ChineseName": name,
                        "Visibility": 5,
                        "Tasks": [],
                        "ModelType": ["llama"],
                    }
                ),
            )

    def ms_revisions(self, repo_id: str) -> None:
        repo = self._repo(repo_id, hf=False)
        if repo:
            branches = [{"Revision": b, "CommitId": c, "CreatedAt": 1720000000} for b, c in repo.branches.items()]
            self._reply(200, _ms_ok({"RevisionMap": {"Branches": branches, "Tags": []}}))

    def ms_files(self, repo_id: str) -> None:
        repo = self._repo(repo_id, hf=False)
        if repo is None:
            return
        revision = self.query.get("Revision") or "master"
        commit = self._commit(repo, revision, hf=False)
        if commit is None:
            return
        root = (self.query.get("Root") or "").strip("/")
        recursive = (self.query.get("Recursive") or "false").lower() == "true"
        entries: dict[str, dict[str, Any]] = {}
        for entry in repo.files.values():
            if root and not entry.path.startswith(root + "/"):
                continue
            rest = entry.path[len(root) + 1 :] if root else entry.path
            parts = rest.split("/")
            for depth in range(1, len(parts)):  # the directories on the way, as `tree` entries
                sub = "/".join(([root] if root else []) + parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(sub, _ms_entry(sub, "tree", 0, "", commit))
            if recursive or len(parts) == 1:
                entries[entry.path] = _ms_entry(
                    entry.path, "blob", repo.listed_size(entry), entry.sha256, commit, is_lfs=entry.is_lfs
                )
        self._reply(200, _ms_ok({"Files": list(entries.values()), "IsVisual": 0}))

    def ms_file(self, repo_id: str) -> None:
        repo = self._repo(repo_id, hf=False)
        if repo is None:
            return
        commit = self._commit(repo, self.query.get("Revision") or "master", hf=False)
        if commit is None:
            return
        entry = repo.files.get(self.query.get("FilePath", "").lstrip("/"))
        if entry is None:
            self._reply(404, _ms_error(404, f"file {self.query.get('FilePath')} not found"))
            return
        self._send_file(entry, {})

    # -- HuggingFace ------------------------------------------------------------------------------------------
    def hf_info(self, repo_id: str, revision: str | None) -> None:
        repo = self._repo(repo_id, hf=True)
        if repo is None:
            return
        commit = self._commit(repo, unquote(revision) if revision else "main", hf=True)
        if commit is None:
            return
        self._reply(
            200,
            {
                "_id": commit[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit,
                "private": False,
                "gated": "manual" if self.hub.token else False,
                "disabled": False,
                "tags": [],
                "lastModified": "2024-07-23T00:00:00.000Z",
                "siblings": [{"rfilename": p} for p in repo.files],
            },
        )

    def hf_tree(self, repo_id: str, revision: str, sub: str | None) -> None:
        repo = self._repo(repo_id, hf=True)
        if repo is None or self._commit(repo, unquote(revision), hf=True) is None:
            return
        root = (unquote(sub) if sub else "").strip("/")
        recursive = (self.query.get("recursive") or "false").lower() == "true"
        out: dict[str, dict[str, Any]] = {}
        for entry in repo.files.values():
            if root and not entry.path.startswith(root + "/"):
                continue
            parts = (entry.path[len(root) + 1 :] if root else entry.path).split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    d = "/".join(([root] if root else []) + parts[:depth])
                    out.setdefault(
                        d, {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                    )
            if recursive or len(parts) == 1:
                item: dict[str, Any] = {
                    "type": "file",
                    "oid": entry.git_oid,
                    "size": repo.listed_size(entry),
                    "path": entry.path,
                }
                if entry.is_lfs:
                    item["lfs"] = {"oid": entry.sha256, "size": repo.listed_size(entry), "pointerSize": 134}
                out[entry.path] = item
        self._reply(200, list(out.values()))

    def hf_file(self, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_id, hf=True)
        if repo is None:
            return
        commit = self._commit(repo, unquote(revision), hf=True)
        if commit is None:
            return
        entry = repo.files.get(path)
        if entry is None:
            self._reply(
                404, {"error": "Entry not found"}, "EntryNotFound", "Entry not found", headers={"X-Repo-Commit": commit}
            )
            return
        headers = {"X-Repo-Commit": commit, "ETag": f'"{entry.git_oid}"', "Accept-Ranges": "bytes"}
        if entry.is_lfs:
            headers.update(
                {"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size), "ETag": f'"{entry.sha256}"'}
            )
        self._send_file(entry, headers)

    # -- the bytes --------------------------------------------------------------------------------------------
    def _send_file(self, entry: FileEntry, headers: dict[str, str]) -> None:
        hub = self.hub
        faults = [] if self.head else hub._take_faults(entry.path)
        status_fault = next((f for f in faults if f.kind == "status"), None)
        if status_fault is not None:
            body = (
                _ms_error(status_fault.status, "injected failure") if "/api/v1/" in self.path else {"error": "injected"}
            )
            self._reply(status_fault.status, body, file=entry.path)
            return
        size = entry.size
        start, end = 0, size - 1
        status = 200
        requested = self.headers.get("Range")
        if requested:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", requested.strip())
            if match and match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                if start >= size or start > end:
                    hub._log(Request(self.command, self.path, entry.path, start, 416, 0))
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Last-Modified", formatdate(entry.file.stat().st_mtime, usegmt=True))
        self.send_header("Content-Disposition", f'attachment; filename="{quote(Path(entry.path).name)}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        record = Request(self.command, self.path, entry.path, start, status, 0)
        hub._log(record)
        if self.head or not length:
            return
        with entry.file.open("rb") as fh:
            if not faults and not hub._bytes_held():
                self.wfile.flush()
                record.sent = self.connection.sendfile(fh, offset=start, count=length)
                return
            self._send_with_faults(fh, start, length, faults, record)

    def _send_with_faults(self, fh: Any, start: int, length: int, faults: list[Fault], record: Request) -> None:
        drop = next((f for f in faults if f.kind == "drop"), None)
        stall = next((f for f in faults if f.kind == "stall"), None)
        corrupt = [f for f in faults if f.kind == "corrupt"]
        rate = min((f.rate for f in faults if f.kind == "slow" and f.rate > 0), default=0)
        fh.seek(start)
        began = time.monotonic()
        pos = start
        stop_at = start + length
        while pos < stop_at:
            limit = stop_at
            if drop is not None and pos < drop.after < limit:
                limit = drop.after
            if stall is not None and pos < start + stall.after < limit:
                limit = start + stall.after
            want, held = self.hub._byte_budget(min(CHUNK, limit - pos, 64 * 1024 if rate else CHUNK))
            block = fh.read(want)
            if block:
                pos += self._write_block(block, pos, corrupt, record)
            if held is not None:
                self.wfile.flush()
                held.park(self.hub._stopping)
                continue
            if not block:
                break
            if rate:
                ahead = (pos - start) / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
            if drop is not None and pos == drop.after and pos < stop_at:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if stall is not None and pos == start + stall.after and pos < stop_at:
                self.wfile.flush()
                self.hub._stopping.wait(stall.seconds)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return

    def _write_block(self, block: bytes, pos: int, corrupt: list[Fault], record: Request) -> int:
        data = bytearray(block)
        for f in corrupt:
            if pos <= f.after < pos + len(data):
                data[f.after - pos] ^= 0xFF
        self.wfile.write(data)
        record.sent += len(data)
        return len(data)


def _ms_ok(data: Any) -> dict[str, Any]:
    return {"Code": 200, "Data": data, "Message": "success", "RequestId": uuid.uuid4().hex, "Success": True}


def _ms_error(code: int, message: str) -> dict[str, Any]:
    return {"Code": code, "Message": message, "RequestId": uuid.uuid4().hex, "Success": False}


def _ms_entry(path: str, kind: str, size: int, sha256: str, commit: str, is_lfs: bool = False) -> dict[str, Any]:
    return {
        "CommitId": commit,
        "CommitMessage": "upload",
        "CommittedDate": 1720000000,
        "CommitterName": "test-hub",
        "InCheck": False,
        "IsLFS": is_lfs,
        "Mode": "100644" if kind == "blob" else "040000",
        "Name": path.rsplit("/", 1)[-1],
        "Path": path,
        "Revision": commit,
        "Sha256": sha256,
        "Size": size,
        "Type": kind,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve model directories as a ModelScope/HuggingFace hub on 127.0.0.1."
    )
    parser.add_argument("--repo", action="append", required=True, metavar="OWNER/NAME=DIR", help="repeatable")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--token", default=os.environ.get("HUBSERVER_TOKEN"), help="require this token (env HUBSERVER_TOKEN)"
    )
    args = parser.parse_args(argv)
    hub = HubServer(token=args.token, port=args.port)
    for item in args.repo:
        repo_id, _, directory = item.partition("=")
        hub.add_repo(repo_id, Path(directory))
    hub.start()
    print(hub.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
