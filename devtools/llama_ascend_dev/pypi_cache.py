"""PyPI through a read-through cache on loopback, for image builds: buildah shares the host's network, so the build's
pip reaches it on 127.0.0.1 (image_build passes its pip.conf as the build secret `pip_conf`) and a rebuild downloads
no file it already has."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

from llama_ascend_dev.downloads import ssl_context

PYPI_SIMPLE = "https://pypi.org/simple/"
PYPI_FILES = "https://files.pythonhosted.org/"


class PypiCache:
    """PyPI through a read-through cache on 127.0.0.1 for a build (buildah shares the host's network). Index pages
    are fetched fresh every time and passed through with their file links pointed here; the files, immutable and
    each named by its hash in the page, are kept under `directory` and served from there afterwards. pip still
    verifies every file against the page's sha256."""

    def __init__(self, directory: Path, index: str = PYPI_SIMPLE, files: str = PYPI_FILES) -> None:
        self.directory, self.index, self.files = directory, index.rstrip("/") + "/", files.rstrip("/") + "/"
        self.hits = self.misses = self.bytes_cached = self.bytes_fetched = 0
        self._lock = threading.Lock()
        self._context = ssl_context()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def pip_conf(self) -> str:
        return f"[global]\nindex-url = {self.url}/simple/\ntrusted-host = 127.0.0.1\n"

    def summary(self) -> str:
        return (
            f"PyPI cache {self.directory}: {self.hits} files ({self.bytes_cached / 1e9:.2f} GB) from the cache, "
            f"{self.misses} ({self.bytes_fetched / 1e9:.2f} GB) downloaded"
        )

    def __enter__(self) -> PypiCache:
        self.directory.mkdir(parents=True, exist_ok=True)
        cache = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    if self.path.startswith("/simple/"):
                        cache._page(self)
                    elif self.path.startswith("/files/"):
                        cache._file(self)
                    else:
                        self.send_error(404)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="pypi-cache", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _upstream(self, url: str, handler: http.server.BaseHTTPRequestHandler) -> urllib.request.Request:
        headers = {"User-Agent": handler.headers.get("User-Agent", "pip")}
        if handler.headers.get("Accept"):
            headers["Accept"] = handler.headers["Accept"]
        return urllib.request.Request(url, headers=headers)

    def _page(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        url = self.index + handler.path.removeprefix("/simple/")
        try:
            with urllib.request.urlopen(self._upstream(url, handler), timeout=120, context=self._context) as response:
                body, status, kind = response.read(), response.status, response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            handler.send_error(exc.code)
            return
        body = body.replace(self.files.encode(), f"{self.url}/files/".encode())
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _file(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        relative = handler.path.removeprefix("/files/").split("?", 1)[0].split("#", 1)[0]
        if not relative or ".." in relative.split("/"):
            handler.send_error(400)
            return
        path = self.directory / relative
        if path.is_file():
            size = path.stat().st_size
            with self._lock:
                self.hits += 1
                self.bytes_cached += size
            handler.send_response(200)
            handler.send_header("Content-Type", "application/octet-stream")
            handler.send_header("Content-Length", str(size))
            handler.end_headers()
            with path.open("rb") as f:
                shutil.copyfileobj(f, handler.wfile, 1 << 20)
            return
        try:
            response = urllib.request.urlopen(
                self._upstream(self.files + relative, handler), timeout=120, context=self._context
            )
        except urllib.error.HTTPError as exc:
            handler.send_error(exc.code)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        expected = response.headers.get("Content-Length")
        try:
            with response, tmp.open("wb") as out:
                handler.send_response(200)
                handler.send_header("Content-Type", "application/octet-stream")
                if expected:
                    handler.send_header("Content-Length", expected)
                handler.end_headers()
                # Streamed as it arrives, but the last chunk only once the file is complete and in place: a
                # client that has the whole body finds it cached.
                size, held = 0, b""
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    size += len(chunk)
                    if held:
                        handler.wfile.write(held)
                    held = chunk
                out.close()
                if expected is None or int(expected) == size:
                    os.replace(tmp, path)
                    with self._lock:
                        self.misses += 1
                        self.bytes_fetched += size
                handler.wfile.write(held)
        finally:
            tmp.unlink(missing_ok=True)
