"""Release files the dev tools download once and verify by sha256: the vLLM source release the image build links into
docker/wheels and the pin checker reads, the wheels and source releases the pin checker inspects. They are kept by
file name under <cache root>/upstream; a file already there is used again when its hash matches. `Sdist` reads a
source release's files without unpacking it.

HTTPS trusts what pip is told to trust (PIP_CERT, then SSL_CERT_FILE), so the tools work behind the same
TLS-intercepting proxy as pip.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tarfile
from pathlib import Path

import httpx

from llama_ascend.paths import cache_root


class DownloadError(Exception):
    """A release file could not be downloaded, or its sha256 is not the pinned one."""


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def upstream_cache() -> Path:
    return cache_root() / "upstream"


def ssl_context() -> ssl.SSLContext:
    cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or None
    return ssl.create_default_context(cafile=cafile if cafile and Path(cafile).is_file() else None)


def http_client() -> httpx.Client:
    return httpx.Client(timeout=120, follow_redirects=True, verify=ssl_context())


def cached_download(client: httpx.Client, url: str, sha256: str) -> Path:
    """The file at `url` in the upstream cache, downloaded when it is missing or its hash is not `sha256`."""
    directory = upstream_cache()
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / url.rsplit("/", 1)[-1].split("#")[0]
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    print(f"downloading {url}", flush=True)
    try:
        with client.stream("GET", url) as response, tmp.open("wb") as out:
            response.raise_for_status()
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
        actual = sha256_file(tmp)
        if actual != sha256:
            raise DownloadError(f"{url}: sha256 is {actual}, the pin is {sha256}")
        os.replace(tmp, dest)
    except (OSError, httpx.HTTPError) as exc:
        raise DownloadError(f"could not download {url}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


class Sdist:
    """Read files of a source release without unpacking it."""

    def __init__(self, path: Path):
        self.path = path
        self._tar = tarfile.open(path)  # noqa: SIM115 - read for as long as the Sdist lives
        self._prefix = self._tar.getnames()[0].split("/")[0]

    def read(self, member: str) -> str:
        extracted = self._tar.extractfile(f"{self._prefix}/{member}")
        if extracted is None:
            raise FileNotFoundError(member)
        return extracted.read().decode()

    def names(self, prefix: str) -> list[str]:
        start = f"{self._prefix}/{prefix}"
        return [n[len(self._prefix) + 1 :] for n in self._tar.getnames() if n.startswith(start)]
