"""HuggingFace through `huggingface_hub` for the revision, the file tree (sizes, sha256) and authenticated URLs; the
bytes are streamed here because huggingface_hub writes each file to a per-process temporary name, so a killed
download would restart from zero. Resumes from the `.incomplete` file with Range, retries with back-off."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from llama_ascend import __version__
from llama_ascend.config import Config
from llama_ascend.errors import LlamaAscendError
from llama_ascend.fetch.hub import Source, disk_full, is_disk_full
from llama_ascend.fetch.layout import INCOMPLETE, Manifest, RemoteFile
from llama_ascend.fetch.progress import Progress
from llama_ascend.fetch.results import FetchFailed
from llama_ascend.fetch.settings import ENV_RETRY_MAX_DELAY, ENV_TIMEOUT, HASH_ATTEMPTS, env_number

log = logging.getLogger("llama_ascend.fetch")


class Retry(Exception):
    """A transient failure (network, 5xx, short body): resume after a back-off."""

    def __init__(self, cause: str, timeout: bool = False) -> None:
        super().__init__(cause)
        self.timeout = timeout


class HuggingFace(Source):
    name = "huggingface"
    default_endpoint = "https://huggingface.co"
    endpoint_env = "HF_ENDPOINT"

    def __init__(self, config: Config, token: str | None) -> None:
        super().__init__(config, token)
        try:
            import huggingface_hub
        except ImportError:
            raise FetchFailed("the HuggingFace client is not installed: pip install huggingface_hub", "other") from None
        self.hf = huggingface_hub
        self.api = huggingface_hub.HfApi(
            endpoint=self.endpoint, token=token or False, library_name="llama-ascend", library_version=__version__
        )
        self.commit: str | None = None
        self.max_delay = env_number(ENV_RETRY_MAX_DELAY, 30)
        self.timeout = env_number(ENV_TIMEOUT, 60)
        self._cancel = threading.Event()

    def _hf_error(self, exc: BaseException, file: str | None) -> LlamaAscendError | None:
        """Map a huggingface_hub error, or None when it is transient (retry it)."""
        errors = getattr(self.hf, "errors", None) or self.hf.utils
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(exc, getattr(errors, "GatedRepoError", ())):
            return self.denied(status, file)
        if isinstance(exc, getattr(errors, "RevisionNotFoundError", ())):
            return self.not_found(f"revision {self.revision}")
        if isinstance(exc, getattr(errors, "RepositoryNotFoundError", ())):
            if status == 401 and self.token is None:
                return self.denied(status, file)  # HF answers 401 for a gated or private repo without a token
            return self.not_found(f"repository {self.repo_id}")
        if status in (401, 403):
            return self.denied(status, file)
        if status == 404:
            return self.not_found(file or "")
        if status is not None and status < 500 and status not in (408, 429):
            return FetchFailed(
                f"{self.what}: {file or '(listing)'}: HTTP {status}: {str(exc).splitlines()[0]}", "other"
            )
        return None

    def _with_retries(self, what: str | None, call: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return call()
            except LlamaAscendError:
                raise
            except Retry as exc:
                failure: BaseException = exc
                timeout = exc.timeout
            except Exception as exc:
                mapped = self._hf_error(exc, what)
                if mapped is not None:
                    raise mapped from None
                failure, timeout = exc, "Timeout" in type(exc).__name__
            attempt += 1
            if attempt > self.retries or self._cancel.is_set():
                cause = str(failure).splitlines()[0] if isinstance(failure, Retry) else type(failure).__name__
                raise self.network(what, cause, timeout) from None
            delay = min(self.max_delay, 2.0 ** (attempt - 1)) if attempt > 1 else 0.0
            log.warning(
                "%s: %s failed (%s), retry %d/%d in %.0fs",
                self.repo_id,
                what or "listing",
                failure,
                attempt,
                self.retries,
                delay,
            )
            time.sleep(delay)

    def manifest(self) -> Manifest:
        from huggingface_hub.hf_api import RepoFile

        info = self._with_retries(
            None, lambda: self.api.repo_info(self.repo_id, revision=self.revision, repo_type="model")
        )
        self.commit = info.sha
        tree = self._with_retries(
            None,
            lambda: list(
                self.api.list_repo_tree(self.repo_id, recursive=True, revision=self.commit, repo_type="model")
            ),
        )
        files = [
            RemoteFile(
                f.path,
                int(f.size),
                f.lfs.sha256 if f.lfs is not None else None,
                None if f.lfs is not None else f.blob_id,
            )
            for f in tree
            if isinstance(f, RepoFile)
        ]
        return Manifest(self.commit, files)

    def download(self, files: list[RemoteFile], staging: Path, progress: Progress, partial: dict[str, int]) -> None:
        import requests  # urllib3 reads 1 MiB at a time and hands over what it got when a connection drops

        session = requests.Session()
        session.headers.update(
            self.hf.utils.build_hf_headers(
                token=self.token or False, library_name="llama-ascend", library_version=__version__
            )
        )
        session.headers["Accept-Encoding"] = "identity"
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=self.workers, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        with session, ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fetch") as pool:
            futures = [
                pool.submit(self._get, session, f, staging, progress) for f in sorted(files, key=lambda f: -f.size)
            ]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                self._cancel.set()
                for future in futures:
                    future.cancel()
                wait(futures)
                errors = [f.exception() for f in failed]
                raise next((e for e in errors if getattr(e, "reason", "") == "disk"), errors[0])  # type: ignore[misc]

    def _get(self, session: Any, rf: RemoteFile, staging: Path, progress: Progress) -> None:
        """One file into `<staging>/<path>.incomplete`, resumed from what is there, verified, renamed into place."""
        target = staging / rf.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + INCOMPLETE)
        url = self.hf.hf_hub_url(self.repo_id, rf.path, revision=self.commit, endpoint=self.endpoint)
        for attempt in range(1, HASH_ATTEMPTS + 1):
            try:
                digest = self._with_retries(rf.path, lambda: self._stream(session, url, rf, tmp, progress))
            except OSError as exc:
                if is_disk_full(exc):
                    tmp.unlink(missing_ok=True)
                    raise disk_full(self.what, staging.parent, rf.path) from None
                raise
            expected = rf.sha256 or rf.git_oid
            if expected is None or digest == expected:
                os.replace(tmp, target)
                return
            tmp.unlink(missing_ok=True)
            progress.add(-rf.size, 0)
            if attempt == HASH_ATTEMPTS:
                kind = "sha256" if rf.sha256 else "git blob id"
                raise self.integrity(rf.path, f"{kind} mismatch (expected {expected[:16]}…, got {digest[:16]}…)")
            log.warning("%s: %s: digest mismatch, fetching it again", self.repo_id, rf.path)

    def _stream(self, session: Any, url: str, rf: RemoteFile, tmp: Path, progress: Progress) -> str:
        """Append the missing bytes to `tmp`; returns the digest of the whole file. Raises Retry when cut short."""
        import requests

        if self._cancel.is_set():
            raise Retry("cancelled")
        have = tmp.stat().st_size if tmp.exists() else 0
        if have > rf.size:
            tmp.unlink()
            progress.add(-have, 0)
            have = 0
        digest = hashlib.sha256() if rf.sha256 else hashlib.sha1(b"blob %d\0" % rf.size)
        if have:
            with tmp.open("rb") as fh:
                while block := fh.read(8 << 20):
                    digest.update(block)
        if have == rf.size:
            return digest.hexdigest()
        request_headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with session.get(url, headers=request_headers, stream=True, timeout=(10, self.timeout)) as resp:
                if resp.status_code == 416:
                    tmp.unlink(missing_ok=True)
                    progress.add(-have, 0)
                    raise Retry(f"HTTP 416 resuming at byte {have}")
                if resp.status_code >= 500 or resp.status_code in (408, 429):
                    raise Retry(f"HTTP {resp.status_code}")
                if resp.status_code in (401, 403):
                    raise self.denied(resp.status_code, rf.path)
                if resp.status_code == 404:
                    raise self.not_found(rf.path)
                if resp.status_code >= 400:
                    raise FetchFailed(f"{self.what}: {rf.path}: HTTP {resp.status_code}", "other")
                mode = "ab"
                if have and resp.status_code != 206:  # the server ignored Range: start over
                    progress.add(-have, 0)
                    have, mode = 0, "wb"
                    digest = hashlib.sha256() if rf.sha256 else hashlib.sha1(b"blob %d\0" % rf.size)
                with tmp.open(mode) as fh:
                    for chunk in received(resp):
                        if have + len(chunk) > rf.size:
                            raise FetchFailed(
                                f"{self.what}: {rf.path}: the hub sent more than the listed {rf.size} bytes",
                                "integrity",
                            )
                        fh.write(chunk)
                        digest.update(chunk)
                        have += len(chunk)
                        progress.add(len(chunk))
                        if self._cancel.is_set():
                            raise Retry("cancelled")
        except (requests.RequestException, OSError, urllib3_error()) as exc:
            if isinstance(exc, OSError) and is_disk_full(exc):
                raise
            timeout = isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower()
            raise Retry(f"{type(exc).__name__} after {have} of {rf.size} bytes", timeout=timeout) from None
        if have < rf.size:
            raise Retry(f"connection closed after {have} of {rf.size} bytes")
        return digest.hexdigest()


def received(resp: Any, size: int = 1 << 20) -> Iterator[bytes]:
    """The body as it arrives, up to `size` bytes at a time: what was received before a connection dropped is handed
    over too (iter_content would hold back a partly filled chunk), so a resume loses nothing."""
    read1 = getattr(resp.raw, "read1", None)  # urllib3 >= 2
    if read1 is None:
        yield from resp.raw.stream(64 << 10, decode_content=True)
        return
    while data := read1(size, decode_content=True):
        yield data


def urllib3_error() -> type[BaseException]:
    from urllib3.exceptions import HTTPError

    return HTTPError
