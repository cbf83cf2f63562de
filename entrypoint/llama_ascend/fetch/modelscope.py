"""ModelScope through the real `modelscope` client (modelscope-hub: listing, Range resume from `.incomplete`, sha256
check, retries), its errors mapped to one-line messages."""

from __future__ import annotations

import threading
from pathlib import Path

from llama_ascend import __version__
from llama_ascend.config import Config
from llama_ascend.errors import LlamaAscendError
from llama_ascend.fetch.hub import Source, disk_full, exception_chain, is_disk_full
from llama_ascend.fetch.layout import Manifest, RemoteFile
from llama_ascend.fetch.progress import Progress
from llama_ascend.fetch.results import FetchFailed
from llama_ascend.fetch.settings import HASH_ATTEMPTS


class ModelScope(Source):
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
                progress_callbacks=[modelscope_callback(progress, partial)],
                user_agent={"llama-ascend": __version__},
            )
        except Exception as exc:
            failed = getattr(exc, "failed_files", None)
            if failed:
                path, cause = sorted(failed.items(), key=lambda kv: not is_disk_full(kv[1]))[0]
                raise self.error(cause, path) from None
            raise self.error(exc, None) from None

    def error(self, exc: BaseException, file: str | None) -> LlamaAscendError:
        from modelscope_hub import errors as ms

        if isinstance(exc, LlamaAscendError):
            return exc
        if is_disk_full(exc):
            return disk_full(self.what, self.config.model_dir.parent, file)
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
            chain = exception_chain(exc)
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


def modelscope_callback(progress: Progress, partial: dict[str, int]) -> type:
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
