"""The hubs behind `llama-ascend fetch`: ModelScope through the real `modelscope` client, HuggingFace through
`huggingface_hub` (listing, revision, auth) with a resumable byte stream of our own. fetch.py plans, verifies and
commits; this module only lists a repository and downloads files into the `.partial` dir, mapping the clients'
errors to one-line messages. Imported by fetch.py only when something has to be downloaded.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from llama_ascend import __version__
from llama_ascend.config import Config, expand_path
from llama_ascend.errors import ConfigError, LlamaAscendError
from llama_ascend.fetch import (
    ENV_RETRIES,
    ENV_RETRY_MAX_DELAY,
    ENV_TIMEOUT,
    ENV_WORKERS,
    HASH_ATTEMPTS,
    INCOMPLETE,
    FetchFailed,
    Manifest,
    Progress,
    RemoteFile,
    _config_error,
    _env_number,
    _gb,
)

log = logging.getLogger(__name__)


def resolve_token(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """The hub token from $<model.token_env> or the file model.token_file. Never logged.

    For ModelScope the default `HF_TOKEN` variable is not read (an HF token must not be sent to another hub); the
    modelscope client reads its own MODELSCOPE_API_TOKEN.
    """
    environ = os.environ if environ is None else environ
    m = config.model
    if m.source == "huggingface" or m.token_env != "HF_TOKEN":
        value = environ.get(m.token_env, "").strip()
        if value:
            return value
    if m.token_file:
        path = expand_path(m.token_file)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(
                f"model.token_file: {path} does not exist (mount the token there, or set ${m.token_env})"
            ) from None
        except OSError as exc:
            raise ConfigError(f"model.token_file: cannot read {path} ({exc.strerror or exc})") from None
        if not value:
            raise ConfigError(f"model.token_file: {path} is empty")
        return value
    return None


@contextlib.contextmanager
def client_environment(config: Config) -> Iterator[None]:
    """Defaults for the hub clients while they run, restored afterwards so nothing leaks into the server's env.

    The clients read most of these when first imported, so set them before that import (fetch() does)."""
    root = expand_path(config.model.path)
    retries = int(_env_number(ENV_RETRIES, 5))
    defaults = {
        "MODELSCOPE_CACHE": str(root / ".cache" / "modelscope"),
        "MODELSCOPE_HOME": str(root / ".cache" / "modelscope"),
        "MODELSCOPE_LOG_LEVEL": "WARNING",
        "MODELSCOPE_DOWNLOAD_INTRA_CLOUD": "false",  # no Alibaba-cloud region probing from a pod
        "INTRA_CLOUD_ACCELERATION": "false",  # the same for clients before 1.38
        "MODELSCOPE_DOWNLOAD_MAX_RETRIES": str(retries),
        "MODELSCOPE_API_MAX_RETRIES": str(retries),
        "MODELSCOPE_DOWNLOAD_RETRY_MAX_DELAY_SECONDS": str(int(_env_number(ENV_RETRY_MAX_DELAY, 30))),
        "MODELSCOPE_DOWNLOAD_TIMEOUT": str(int(_env_number(ENV_TIMEOUT, 60))),
        "HF_HOME": str(root / ".cache" / "huggingface"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TQDM_DISABLE": "1",  # the clients' own bars; ours is rich
    }
    saved = {k: os.environ.get(k) for k in defaults}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    quiet = {name: logging.getLogger(name) for name in ("httpx", "httpx2", "huggingface_hub", "filelock")}
    levels = {name: logger.level for name, logger in quiet.items()}
    if not log.isEnabledFor(logging.DEBUG):  # one line per HTTP request is noise in a pod log
        for logger in quiet.values():
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            quiet[name].setLevel(level)
        for key, previous in saved.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous


class _Source:
    name = ""
    default_endpoint = ""
    endpoint_env = ""

    def __init__(self, config: Config, token: str | None) -> None:
        self.config = config
        self.token = token
        self.repo_id = config.model.id
        self.revision = config.model.effective_revision
        self.endpoint = (config.model.endpoint or os.environ.get(self.endpoint_env) or self.default_endpoint).rstrip(
            "/"
        )
        self.retries = int(_env_number(ENV_RETRIES, 5))
        self.workers = max(1, int(_env_number(ENV_WORKERS, 4)))

    @property
    def what(self) -> str:
        return f"{self.name} model {self.repo_id} revision {self.revision}"

    def manifest(self) -> Manifest:
        raise NotImplementedError

    def download(self, files: list[RemoteFile], staging: Path, progress: Progress, partial: dict[str, int]) -> None:
        raise NotImplementedError

    # shared wording of the errors
    def not_found(self, detail: str = "") -> LlamaAscendError:
        return _config_error(
            f"{self.what} not found at {self.endpoint} (404: model or revision not found{': ' + detail if detail else ''}); "
            "check model.id and model.revision",
            "not_found",
        )

    def denied(self, status: int | None, file: str | None = None) -> LlamaAscendError:
        where = f" ({file})" if file else ""
        if self.token is None:
            hint = (
                f"this model needs a token: export ${self.config.model.token_env} or mount it and set model.token_file"
                if self.name == "huggingface"
                else "this model needs a token: set model.token_file (or MODELSCOPE_API_TOKEN)"
            )
        elif status == 403:
            hint = (
                f"the token has no access: accept the model's license on its hub page ({self.endpoint}/{self.repo_id}) "
                "with the account that owns the token"
            )
        else:
            hint = "the token was rejected: check that it is valid and not expired"
        return _config_error(
            f"{self.what}{where}: access denied by {self.endpoint} (HTTP {status or '401/403'}); {hint}", "auth"
        )

    def network(self, file: str | None, cause: str, timeout: bool) -> FetchFailed:
        where = f" {file}" if file else " (listing)"
        if timeout:
            return FetchFailed(
                f"{self.what}:{where}: timed out after {self.retries} retries ({cause}); the hub or the link is too "
                f"slow or down: retry, or raise ${ENV_RETRIES} / ${ENV_TIMEOUT}",
                "timeout",
            )
        return FetchFailed(
            f"{self.what}:{where}: failed after {self.retries} retries ({cause}); check the network and the endpoint "
            f"{self.endpoint} (model.endpoint)",
            "network",
        )

    def integrity(self, file: str, detail: str) -> FetchFailed:
        return FetchFailed(
            f"{self.what}: {file}: {detail} after {HASH_ATTEMPTS} downloads; the hub (or a proxy) serves corrupted "
            "data: retry later or use another model.endpoint",
            "integrity",
        )


def _disk_full(what: str, directory: Path, file: str | None) -> FetchFailed:
    free = shutil.disk_usage(directory).free if directory.exists() else 0
    return FetchFailed(
        f"{what}: disk full under {directory} while writing {file or 'the weights'} ({_gb(free)} free); "
        "the partial files were removed: free space or enlarge the volume (model.path)",
        "disk",
    )


class _ModelScope(_Source):
    name = "modelscope"
    default_endpoint = "https://www.modelscope.cn"
    endpoint_env = "MODELSCOPE_ENDPOINT"

    def __init__(self, config: Config, token: str | None) -> None:
        super().__init__(config, token)
        try:
            from modelscope_hub import HubApi
        except ImportError:
            raise FetchFailed(
                "the ModelScope client is not installed: pip install 'modelscope>=1.38'", "other"
            ) from None
        self.api = HubApi(endpoint=config.model.endpoint, token=token)

    def manifest(self) -> Manifest:
        try:
            raw = self.api.legacy.list_repo_files(
                repo_id=self.repo_id, repo_type="model", revision=self.revision, recursive=True
            )
        except Exception as exc:  # the client's errors are its own classes; map them
            raise self.error(exc, None) from None
        files, commit = [], None
        for entry in raw:
            if (entry.get("Type") or "blob") == "tree":
                continue
            path = entry.get("Path") or entry.get("Name") or ""
            if path:
                files.append(RemoteFile(path, int(entry.get("Size") or 0), entry.get("Sha256") or None))
                commit = commit or entry.get("Revision") or None
        return Manifest(commit, files)

    def download(self, files: list[RemoteFile], staging: Path, progress: Progress, partial: dict[str, int]) -> None:
        import modelscope_hub._download as engine

        # The client retries a digest mismatch 3 times; our policy is one re-fetch, then a clear failure.
        if hasattr(engine, "DOWNLOAD_HASH_RETRY_TIMES"):
            engine.DOWNLOAD_HASH_RETRY_TIMES = HASH_ATTEMPTS
        listing = [{"Path": f.path, "Size": f.size, "Sha256": f.sha256, "Type": "blob"} for f in files]
        try:
            self.api.download_repo(
                self.repo_id,
                "model",
                revision=self.revision,
                local_dir=staging,
                file_list=listing,
                max_workers=self.workers,
                progress_callbacks=[_modelscope_callback(progress, partial)],
                user_agent={"llama-ascend": __version__},
            )
        except Exception as exc:
            failed = getattr(exc, "failed_files", None)
            if failed:
                path, cause = sorted(failed.items(), key=lambda kv: not _is_disk_full(kv[1]))[0]
                raise self.error(cause, path) from None
            raise self.error(exc, None) from None

    def error(self, exc: BaseException, file: str | None) -> LlamaAscendError:
        from modelscope_hub import errors as ms

        if isinstance(exc, LlamaAscendError):
            return exc
        if _is_disk_full(exc):
            return _disk_full(self.what, self.config.model_dir.parent, file)
        if isinstance(exc, ms.NotExistError):
            return self.not_found(file or "")
        if isinstance(exc, (ms.AuthenticationError, ms.PermissionDeniedError)):
            return self.denied(getattr(exc, "status_code", None), file)
        if isinstance(exc, ms.FileSizeMismatchError):
            return self.integrity(file or "?", f"the size differs from the listing ({exc})")
        if isinstance(exc, ms.FileIntegrityError):
            return self.integrity(file or "?", f"sha256 mismatch ({exc})")
        if isinstance(exc, ms.ServerError):
            status = getattr(exc, "status_code", None) or "5xx"
            return FetchFailed(
                f"{self.what}: {file or '(listing)'}: the hub answered HTTP {status} after {self.retries} retries; "
                "it is having problems: retry later",
                "server",
            )
        if isinstance(exc, (ms.NetworkError, TimeoutError)):
            chain = _chain(exc)
            timeout = any(
                isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ or "timed out" in str(e).lower()
                for e in chain
            )
            cause = "read timeout" if timeout else type(chain[-1]).__name__
            return self.network(file, cause, timeout)
        if isinstance(exc, ms.HubError):
            return FetchFailed(f"{self.what}: {file or '(listing)'}: {exc}", "other")
        if isinstance(exc, OSError):
            return FetchFailed(
                f"{self.what}: {file or ''}: {exc.strerror or exc} ({getattr(exc, 'filename', '')})", "other"
            )
        return FetchFailed(f"{self.what}: {file or '(listing)'}: {type(exc).__name__}: {exc}", "other")


class _Retry(Exception):
    """A transient failure (network, 5xx, short body): resume after a back-off."""

    def __init__(self, cause: str, timeout: bool = False) -> None:
        super().__init__(cause)
        self.timeout = timeout


class _HuggingFace(_Source):
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
        self.max_delay = _env_number(ENV_RETRY_MAX_DELAY, 30)
        self.timeout = _env_number(ENV_TIMEOUT, 60)
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
            except _Retry as exc:
                failure: BaseException = exc
                timeout = exc.timeout
            except Exception as exc:
                mapped = self._hf_error(exc, what)
                if mapped is not None:
                    raise mapped from None
                failure, timeout = exc, "Timeout" in type(exc).__name__
            attempt += 1
            if attempt > self.retries or self._cancel.is_set():
                cause = str(failure).splitlines()[0] if isinstance(failure, _Retry) else type(failure).__name__
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
                if _is_disk_full(exc):
                    tmp.unlink(missing_ok=True)
                    raise _disk_full(self.what, staging.parent, rf.path) from None
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
        """Append the missing bytes to `tmp`; returns the digest of the whole file. Raises _Retry when cut short."""
        import requests

        if self._cancel.is_set():
            raise _Retry("cancelled")
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
                    raise _Retry(f"HTTP 416 resuming at byte {have}")
                if resp.status_code >= 500 or resp.status_code in (408, 429):
                    raise _Retry(f"HTTP {resp.status_code}")
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
                    for chunk in _received(resp):
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
                            raise _Retry("cancelled")
        except (requests.RequestException, OSError, _urllib3_error()) as exc:
            if isinstance(exc, OSError) and _is_disk_full(exc):
                raise
            timeout = isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower()
            raise _Retry(f"{type(exc).__name__} after {have} of {rf.size} bytes", timeout=timeout) from None
        if have < rf.size:
            raise _Retry(f"connection closed after {have} of {rf.size} bytes")
        return digest.hexdigest()


def _received(resp: Any, size: int = 1 << 20) -> Iterator[bytes]:
    """The body as it arrives, up to `size` bytes at a time: what was received before a connection dropped is handed
    over too (iter_content would hold back a partly filled chunk), so a resume loses nothing."""
    read1 = getattr(resp.raw, "read1", None)  # urllib3 >= 2
    if read1 is None:
        yield from resp.raw.stream(64 << 10, decode_content=True)
        return
    while data := read1(size, decode_content=True):
        yield data


def _urllib3_error() -> type[BaseException]:
    from urllib3.exceptions import HTTPError

    return HTTPError


def _chain(exc: BaseException | None) -> list[BaseException]:
    """The exception and its causes, outermost first."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain and len(chain) < 8:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _is_disk_full(exc: BaseException | None) -> bool:
    return any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in _chain(exc))


def make_source(config: Config) -> _Source:
    token = resolve_token(config)
    if config.model.source == "modelscope":
        return _ModelScope(config, token)
    return _HuggingFace(config, token)


def _modelscope_callback(progress: Progress, partial: dict[str, int]) -> type:
    """A modelscope-hub ProgressCallback class. The client first reports the bytes of a resumed `.incomplete`
    file, which were counted as done and not moved: `partial` (path -> bytes) says how many."""
    from modelscope_hub import ProgressCallback

    credits = dict(partial)
    lock = threading.Lock()

    class _Callback(ProgressCallback):
        def __init__(self, filename: str, file_size: int) -> None:
            super().__init__(filename, file_size)
            with lock:  # a retried file gets a new instance, its partial file is not credited twice
                self.credit = credits.pop(filename, 0)

        def update(self, size: int) -> None:
            if size < 0:  # the client threw received bytes away and starts the file over
                self.credit = 0
                progress.add(size, 0)
                return
            credited = min(size, self.credit)
            self.credit -= credited
            progress.add(size - credited)

        def end(self) -> None:
            pass

    return _Callback
