"""Weights into a volume: fetch a model from ModelScope or HuggingFace (or verify a local one) — atomic, resumable,
verified, and safe when several pods share the volume.

Layout (hub sources), under the volume root `model.path`:

    <model.path>/<source>/<owner>/<name>/<revision>/          the model dir vLLM loads (Config.model_dir)
        .llama-ascend-fetch.json                               the completion marker, written last
    <model.path>/<source>/<owner>/<name>/.<revision>.partial/  downloads in progress (resumed from here)
    <model.path>/<source>/<owner>/<name>/.<revision>.lease     who is fetching right now (see lease.py)
    <model.path>/.cache/{modelscope,huggingface}/              the clients' own state (locks, session ids)
    <model.path>/.metrics/llama_ascend_fetch.prom              Prometheus textfile (or $LLAMA_ASCEND_FETCH_METRICS)

Guarantees: files are downloaded into the `.partial` dir under `<name>.incomplete` and renamed to their final name
only once their size and sha256 (where the hub lists one) match; the model dir appears — by one rename — only when
every selected file is there, and the marker is written last. A complete dir is recognised from the marker alone:
no network and no re-hashing (`is_complete`). One fetcher per model dir holds the lease; the others wait for it,
then find the marker.

ModelScope goes through the real `modelscope` client (modelscope-hub: listing, Range resume from `.incomplete`,
sha256 check, retries). HuggingFace goes through `huggingface_hub` for the revision, the file tree (sizes, sha256)
and the authenticated URLs; the bytes are streamed by `_HuggingFace._get` because huggingface_hub writes each file
to a per-process temporary name, so a killed download would restart from zero.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from llama_ascend import __version__
from llama_ascend.config import Config, expand_path
from llama_ascend.errors import CheckFailed, ConfigError, LlamaAscendError
from llama_ascend.lease import Lease, LeaseLost, describe

log = logging.getLogger(__name__)

MARKER = ".llama-ascend-fetch.json"
JOURNAL = ".llama-ascend-staging.json"  # inside the .partial dir: what the files there were fetched as
MARKER_FORMAT = 1
INCOMPLETE = ".incomplete"

# Tunables (environment; defaults suit a 16 GB model over a WAN link).
ENV_OFFLINE = "LLAMA_ASCEND_OFFLINE"  # 1: never touch the network (same as --offline)
ENV_METRICS = "LLAMA_ASCEND_FETCH_METRICS"  # path of the Prometheus textfile
ENV_RETRIES = "LLAMA_ASCEND_FETCH_RETRIES"  # retries per file after a network error or HTTP 5xx (default 5)
ENV_RETRY_MAX_DELAY = "LLAMA_ASCEND_FETCH_RETRY_MAX_DELAY"  # longest back-off between retries, seconds (default 30)
ENV_TIMEOUT = "LLAMA_ASCEND_FETCH_TIMEOUT"  # seconds without a byte before a read counts as timed out (default 60)
ENV_WORKERS = "LLAMA_ASCEND_FETCH_WORKERS"  # files downloaded at once (default 4)
ENV_LEASE_STALE = "LLAMA_ASCEND_FETCH_LEASE_STALE"  # seconds without a heartbeat before a lease is taken over (60)
ENV_LOG_INTERVAL = "LLAMA_ASCEND_FETCH_LOG_INTERVAL"  # seconds between progress lines when not on a terminal (15)

HASH_ATTEMPTS = 2  # a file whose digest does not match is fetched once more, then the fetch fails
DISK_RESERVE = 1 << 20


# ----------------------------------------------------------------------------------------------------------------
# Results and errors
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class FetchResult:
    model_dir: Path
    source: str
    model_id: str
    revision: str
    commit: str | None
    files: int
    bytes_total: int
    bytes_downloaded: int
    seconds: float
    already_complete: bool
    waited_seconds: float = 0.0
    files_downloaded: int = 0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_downloaded / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        what = f"{self.model_id}@{self.revision}" if self.source != "local" else "local model"
        if self.already_complete and not self.bytes_downloaded:
            state = "verified" if self.source == "local" else "already complete"
            return f"fetch: {what} {state} in {self.model_dir}: {self.files} files, {_gb(self.bytes_total)} ({self.seconds:.2f} s)"
        return (
            f"fetch: {what} complete in {self.model_dir}: {self.files} files, {_gb(self.bytes_total)} "
            f"({_gb(self.bytes_downloaded)} downloaded) in {self.seconds:.1f} s, {self.mb_per_s:.1f} MB/s"
        )


class FetchFailed(CheckFailed):
    """The fetch failed for a reason outside the config (network, hub, integrity, disk); exit code 1."""

    def __init__(self, message: str, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason


def _config_error(message: str, reason: str) -> ConfigError:
    exc = ConfigError(message)
    exc.reason = reason  # type: ignore[attr-defined]
    return exc


def _gb(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{int(n)} B"


def _env_number(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"${name}={raw!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"${name}={raw!r} must not be negative")
    return value


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# ----------------------------------------------------------------------------------------------------------------
# Files, selection, layout, marker
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None = None
    git_oid: str | None = None  # git blob id (sha1 over "blob <size>\0" + content): HuggingFace's id of non-LFS files

    def record(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256, "git_oid": self.git_oid}


@dataclass
class Manifest:
    commit: str | None
    files: list[RemoteFile]


def selected(files: list[RemoteFile], allow: list[str], ignore: list[str]) -> list[RemoteFile]:
    """The files vLLM needs: matching any allow glob and no ignore glob (fnmatch; `*` also crosses `/`)."""
    return [
        f
        for f in files
        if (not allow or any(fnmatch.fnmatchcase(f.path, p) for p in allow))
        and not any(fnmatch.fnmatchcase(f.path, p) for p in ignore)
    ]


@dataclass(frozen=True)
class Layout:
    final: Path

    @property
    def staging(self) -> Path:
        return self.final.parent / f".{self.final.name}.partial"

    @property
    def lease(self) -> Path:
        return self.final.parent / f".{self.final.name}.lease"

    @property
    def marker(self) -> Path:
        return self.final / MARKER


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _same_model(marker: Mapping[str, Any], config: Config) -> bool:
    m = config.model
    return (
        marker.get("format") == MARKER_FORMAT
        and marker.get("source") == m.source
        and marker.get("id") == m.id
        and marker.get("revision") == m.effective_revision
        and isinstance(marker.get("files"), dict)
        and bool(marker["files"])
    )


def _same_selection(marker: Mapping[str, Any], config: Config) -> bool:
    return marker.get("allow_patterns") == list(config.model.allow_patterns) and marker.get("ignore_patterns") == list(
        config.model.ignore_patterns
    )


def _stat_matches(directory: Path, path: str, record: Mapping[str, Any]) -> bool:
    try:
        st = (directory / path).stat()
    except OSError:
        return False
    return st.st_size == record.get("size") and st.st_mtime_ns == record.get("mtime_ns")


def is_complete(config: Config) -> bool:
    """True when the weights the config names are complete on disk: a marker check, no network, no hashing."""
    if config.model.source == "local":
        return not _local_problems(config.model_dir)
    marker = _read_json(Layout(config.model_dir).marker)
    if marker is None or not _same_model(marker, config) or not _same_selection(marker, config):
        return False
    return all(_stat_matches(config.model_dir, p, rec) for p, rec in marker["files"].items())


# ----------------------------------------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------------------------------------
def _digest_file(file: Path, record: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, hexdigest) of the strongest digest the record has for this file, or None when it has none."""
    if record.get("sha256"):
        h = hashlib.sha256()
        kind = "sha256"
    elif record.get("git_oid"):
        h = hashlib.sha1(b"blob %d\0" % file.stat().st_size)
        kind = "git_oid"
    else:
        return None
    with file.open("rb") as fh:
        while block := fh.read(8 << 20):
            h.update(block)
    return kind, h.hexdigest()


def _content_matches(file: Path, record: Mapping[str, Any]) -> bool:
    """Size, then digest (when the hub gave one)."""
    try:
        if file.stat().st_size != record.get("size"):
            return False
    except OSError:
        return False
    digest = _digest_file(file, record)
    return digest is None or digest[1] == record.get(digest[0])


def safetensors_problem(file: Path) -> str | None:
    """Why `file` is not a complete safetensors file (header length, JSON header, data size), or None."""
    try:
        size = file.stat().st_size
        with file.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{size} bytes, too short for a safetensors header"
            n = int.from_bytes(head, "little")
            if n <= 1 or 8 + n > size or n > 100 << 20:
                return f"header length {n} does not fit the file size {size}"
            header = json.loads(fh.read(n))
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    except ValueError:
        return "the header is not valid JSON"
    if not isinstance(header, dict):
        return "the header is not a JSON object"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    expected = 8 + n + (max(ends) if ends else 0)
    if expected != size:
        return f"the header describes {expected} bytes but the file has {size} (truncated or padded)"
    return None


def _weights_problems(locate: Callable[[str], Path], paths: list[str]) -> list[str]:
    """Structural checks that catch a wrong selection or a broken upload: safetensors present, shards complete.
    `locate` maps a model path to the file on disk."""
    problems = []
    tensors = [p for p in paths if p.endswith(".safetensors")]
    if not tensors:
        problems.append("no *.safetensors weights (check model.allow_patterns / model.ignore_patterns)")
    for p in tensors:
        why = safetensors_problem(locate(p))
        if why:
            problems.append(f"{p}: {why}")
    for index in (p for p in paths if p.endswith(".safetensors.index.json")):
        data = _read_json(locate(index))
        if data is None or not isinstance(data.get("weight_map"), dict):
            problems.append(f"{index}: not a JSON object with a weight_map")
            continue
        base = str(Path(index).parent) if "/" in index else ""
        for shard in sorted(set(map(str, data["weight_map"].values()))):
            shard_path = f"{base}/{shard}" if base else shard
            if shard_path not in paths:
                problems.append(f"{index}: shard {shard} is missing")
    return problems


def _local_problems(directory: Path) -> list[str]:
    if not directory.is_dir():
        return [f"{directory} is not a directory"]
    paths = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    problems = []
    if "config.json" not in paths:
        problems.append("config.json is missing")
    elif _read_json(directory / "config.json") is None:
        problems.append("config.json is not a JSON object")
    if not any(p in paths for p in ("tokenizer.json", "tokenizer.model")):
        problems.append("no tokenizer (tokenizer.json or tokenizer.model)")
    return problems + _weights_problems(lambda p: directory / p, [p for p in paths if not p.startswith("original/")])


# ----------------------------------------------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------------------------------------------
class Progress:
    """Bytes done of the whole fetch. A rich bar on a terminal, a log line every few seconds otherwise (pods)."""

    def __init__(self, label: str, total: int, initial: int, mode: str, interval: float = 15.0) -> None:
        self.label = label
        self.total = total
        self.done = initial
        self.moved = 0
        self.mode = mode  # "bar" | "log" | "off"
        self.interval = interval
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, done: int, moved: int | None = None) -> None:
        with self._lock:
            self.done += done
            self.moved += done if moved is None else moved

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.moved / elapsed
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_s = "?" if eta == float("inf") else f"{int(eta // 60)}m{int(eta % 60):02d}s"
        return f"{self.label}: {_gb(self.done)} / {_gb(self.total)} ({pct:.0f}%), {rate / 1e6:.1f} MB/s, ETA {eta_s}"

    def __enter__(self) -> Progress:
        if self.mode == "bar":
            self._thread = threading.Thread(target=self._bar, daemon=True)
        elif self.mode == "log":
            self._thread = threading.Thread(target=self._log, daemon=True)
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _log(self) -> None:
        while not self._stop.wait(self.interval):
            log.info("%s", self.line())

    def _bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress as Bar, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        with Bar(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(self.label, total=self.total, completed=self.done)
            while not self._stop.wait(0.2):
                bar.update(task, completed=self.done)
            bar.update(task, completed=self.done)

    def modelscope_callback(self, partial: dict[str, int]) -> type:
        """A modelscope-hub ProgressCallback class. The client first reports the bytes of a resumed `.incomplete`
        file, which were counted as done and not moved: `partial` (path -> bytes) says how many."""
        from modelscope_hub import ProgressCallback

        progress = self
        credits = dict(partial)
        lock = threading.Lock()

        class _Callback(ProgressCallback):  # type: ignore[misc]
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


# ----------------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------------
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
            raise ConfigError(f"model.token_file: {path} does not exist (mount the token there, or set ${m.token_env})") from None
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
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _Source:
    name = ""
    default_endpoint = ""
    endpoint_env = ""

    def __init__(self, config: Config, token: str | None) -> None:
        self.config = config
        self.token = token
        self.repo_id = config.model.id
        self.revision = config.model.effective_revision
        self.endpoint = (config.model.endpoint or os.environ.get(self.endpoint_env) or self.default_endpoint).rstrip("/")
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
        return _config_error(f"{self.what}{where}: access denied by {self.endpoint} (HTTP {status or '401/403'}); {hint}", "auth")

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
            raise FetchFailed("the ModelScope client is not installed: pip install 'modelscope>=1.38'", "other") from None
        self.api = HubApi(endpoint=config.model.endpoint, token=token)

    def manifest(self) -> Manifest:
        try:
            raw = self.api.legacy.list_repo_files(repo_id=self.repo_id, repo_type="model", revision=self.revision, recursive=True)
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
                progress_callbacks=[progress.modelscope_callback(partial)],
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
                isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ or "timed out" in str(e).lower() for e in chain
            )
            cause = "read timeout" if timeout else type(chain[-1]).__name__
            return self.network(file, cause, timeout)
        if isinstance(exc, ms.HubError):
            return FetchFailed(f"{self.what}: {file or '(listing)'}: {exc}", "other")
        if isinstance(exc, OSError):
            return FetchFailed(f"{self.what}: {file or ''}: {exc.strerror or exc} ({getattr(exc, 'filename', '')})", "other")
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
        self.api = huggingface_hub.HfApi(endpoint=self.endpoint, token=token or False, library_name="llama-ascend",
                                         library_version=__version__)  # fmt: skip
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
            return FetchFailed(f"{self.what}: {file or '(listing)'}: HTTP {status}: {str(exc).splitlines()[0]}", "other")
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
            log.warning("%s: %s failed (%s), retry %d/%d in %.0fs", self.repo_id, what or "listing", failure, attempt, self.retries, delay)
            time.sleep(delay)

    def manifest(self) -> Manifest:
        from huggingface_hub.hf_api import RepoFile

        info = self._with_retries(None, lambda: self.api.repo_info(self.repo_id, revision=self.revision, repo_type="model"))
        self.commit = info.sha
        tree = self._with_retries(
            None, lambda: list(self.api.list_repo_tree(self.repo_id, recursive=True, revision=self.commit, repo_type="model"))
        )
        files = [
            RemoteFile(f.path, int(f.size), f.lfs.sha256 if f.lfs is not None else None, None if f.lfs is not None else f.blob_id)
            for f in tree
            if isinstance(f, RepoFile)
        ]
        return Manifest(self.commit, files)

    def download(self, files: list[RemoteFile], staging: Path, progress: Progress, partial: dict[str, int]) -> None:
        import requests  # urllib3 reads 1 MiB at a time and hands over what it got when a connection drops

        session = requests.Session()
        session.headers.update(self.hf.utils.build_hf_headers(token=self.token or False, library_name="llama-ascend",
                                                              library_version=__version__))  # fmt: skip
        session.headers["Accept-Encoding"] = "identity"
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=self.workers, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        with session, ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="fetch") as pool:
            futures = [pool.submit(self._get, session, f, staging, progress) for f in sorted(files, key=lambda f: -f.size)]
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
                            raise FetchFailed(f"{self.what}: {rf.path}: the hub sent more than the listed {rf.size} bytes", "integrity")
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


def _make_source(config: Config) -> _Source:
    token = resolve_token(config)
    if config.model.source == "modelscope":
        return _ModelScope(config, token)
    return _HuggingFace(config, token)


# ----------------------------------------------------------------------------------------------------------------
# Planning and committing
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    files: list[RemoteFile]
    in_final: set[str] = field(default_factory=set)  # verified in the model dir already
    staged: set[str] = field(default_factory=set)  # complete in the .partial dir
    partial: dict[str, int] = field(default_factory=dict)  # bytes of `.incomplete` files to resume

    @property
    def missing(self) -> list[RemoteFile]:
        return [f for f in self.files if f.path not in self.in_final and f.path not in self.staged]

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def need(self) -> int:
        return sum(f.size for f in self.missing) - sum(self.partial.values())


def _plan(layout: Layout, manifest: Manifest, files: list[RemoteFile]) -> Plan:
    """What is already there (model dir, .partial dir) and what remains; clears what no longer matches."""
    plan = Plan(files)
    wanted = {f.path: f for f in files}
    marker = _read_json(layout.marker) or {}
    recorded = marker.get("files") if isinstance(marker.get("files"), dict) else {}
    for f in files:
        rec = recorded.get(f.path)
        if rec and all(rec.get(k) == v for k, v in f.record().items()) and _stat_matches(layout.final, f.path, rec):
            plan.in_final.add(f.path)
        elif (layout.final / f.path).is_file() and _content_matches(layout.final / f.path, f.record()):
            plan.in_final.add(f.path)  # there but not (or no longer) recorded: verified by content
    staging = layout.staging
    journal = _read_json(staging / JOURNAL) or {}
    before = journal.get("files") if isinstance(journal.get("files"), dict) else {}
    if staging.is_dir():
        for path in sorted(p for p in staging.rglob("*") if p.is_file() and p.name != JOURNAL):
            rel = path.relative_to(staging).as_posix()
            name = rel[: -len(INCOMPLETE)] if rel.endswith(INCOMPLETE) else rel
            f = wanted.get(name)
            same = f is not None and before.get(name) == f.record() and f.path not in plan.in_final
            if not same:
                path.unlink()  # from another selection or revision, or the client's scratch (parts): not ours to resume
            elif rel.endswith(INCOMPLETE):
                size = path.stat().st_size
                if size <= f.size:
                    plan.partial[name] = size
                else:
                    path.unlink()
            elif path.stat().st_size == f.size:
                plan.staged.add(name)  # renamed into place by the client or by _get only after its digest matched
            else:
                path.unlink()
    staging.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(staging / JOURNAL, {"commit": manifest.commit, "files": {f.path: f.record() for f in files}})
    return plan


def _check_disk(what: str, layout: Layout, plan: Plan) -> None:
    free = shutil.disk_usage(layout.staging).free
    if plan.need + DISK_RESERVE > free:
        raise FetchFailed(
            f"{what}: not enough disk space under {layout.final.parent}: {len(plan.missing)} files need "
            f"{_gb(plan.need)} more, only {_gb(free)} free; free space or enlarge the volume (model.path)",
            "disk",
        )


class _Flusher:
    """Writes the downloaded bytes back to disk while the download runs (fdatasync every `interval` seconds on the
    files that grew), so the fsync before the marker has little left to do."""

    def __init__(self, directory: Path, interval: float = 0.2) -> None:
        self.directory = directory
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fetch-flush", daemon=True)

    def _run(self) -> None:
        synced: dict[Path, int] = {}
        while not self._stop.wait(self.interval):
            for path in self.directory.rglob("*"):
                try:
                    size = path.stat().st_size
                    if not path.is_file() or synced.get(path) == size:
                        continue
                    fd = os.open(path, os.O_RDONLY)
                except OSError:  # renamed into place or removed in the meantime
                    continue
                try:
                    os.fdatasync(fd)
                    synced[path] = size
                except OSError:
                    pass
                finally:
                    os.close(fd)

    def __enter__(self) -> _Flusher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _remove_partials(staging: Path, complete: set[str]) -> None:
    """Delete every partial download (`.incomplete` files, the client's range parts); keep verified files."""
    for path in [p for p in staging.rglob("*") if p.is_file()]:
        rel = path.relative_to(staging).as_posix()
        if rel not in complete and rel != JOURNAL:
            path.unlink(missing_ok=True)


def _commit(layout: Layout, plan: Plan, manifest: Manifest, config: Config, lease: Lease) -> None:
    """Move the staged files into the model dir (one rename when it is new) and write the marker last."""
    staging, final = layout.staging, layout.final
    for name in plan.staged | {f.path for f in plan.missing}:
        fd = os.open(staging / name, os.O_RDONLY)  # data on disk before the marker says so
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        rel = path.relative_to(staging).as_posix()
        if rel not in plan.staged and rel not in {f.path for f in plan.missing}:
            path.unlink()  # the journal, scratch files: nothing but the model goes into the model dir
    lease.check()
    fresh = not final.exists()
    home = staging if fresh else final
    if not fresh:
        for name in sorted(plan.staged | {f.path for f in plan.missing}):
            (final / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, final / name)
    records = {}
    for f in plan.files:
        st = (home / f.path).stat()
        if st.st_size != f.size:
            raise FetchFailed(f"{f.path}: {st.st_size} bytes on disk, the hub lists {f.size}", "integrity")
        records[f.path] = {**f.record(), "mtime_ns": st.st_mtime_ns}
    marker = {
        "format": MARKER_FORMAT,
        "source": config.model.source,
        "id": config.model.id,
        "revision": config.model.effective_revision,
        "commit": manifest.commit,
        "allow_patterns": list(config.model.allow_patterns),
        "ignore_patterns": list(config.model.ignore_patterns),
        "files": records,
        "bytes": sum(f.size for f in plan.files),
        "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "fetched_by": f"{socket.gethostname()}/{os.getpid()}",
        "llama_ascend": __version__,
    }
    _write_json_atomic(home / MARKER, marker)
    if fresh:
        os.rename(staging, final)
        _fsync_dir(final.parent)
    else:
        shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# Metrics (Prometheus textfile)
# ----------------------------------------------------------------------------------------------------------------
METRICS_FILE = "llama_ascend_fetch.prom"
METRIC_BYTES = "llama_ascend_fetch_downloaded_bytes"  # counter: bytes moved over the network
METRIC_FILES = "llama_ascend_fetch_downloaded_files"  # counter: files downloaded
METRIC_FAILURES = "llama_ascend_fetch_failures"  # counter, label reason
METRIC_RUNS = "llama_ascend_fetch_runs"  # counter: fetches that had to do work (not the complete-cache fast path)
METRIC_DURATION = "llama_ascend_fetch_duration_seconds"  # gauge: the last run
METRIC_MODEL_BYTES = "llama_ascend_fetch_model_bytes"  # gauge: size of the complete model
METRIC_LAST_SUCCESS = "llama_ascend_fetch_last_success_timestamp_seconds"  # gauge
COUNTERS = (METRIC_BYTES, METRIC_FILES, METRIC_FAILURES, METRIC_RUNS)


def metrics_path(config: Config) -> Path | None:
    """$LLAMA_ASCEND_FETCH_METRICS, else `<model.path>/.metrics/llama_ascend_fetch.prom` for hub sources."""
    env = os.environ.get(ENV_METRICS, "").strip()
    if env:
        return Path(env).expanduser()
    if config.model.source == "local":
        return None
    return expand_path(config.model.path) / ".metrics" / METRICS_FILE


def write_metrics(config: Config, seconds: float, result: FetchResult | None, failure: str | None) -> None:
    """Add this run to the textfile: counters continue from the values already in the file."""
    path = metrics_path(config)
    if path is None:
        return
    from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    labels = ("source", "model")
    counters = {
        METRIC_BYTES: Counter(METRIC_BYTES, "Bytes downloaded from the hub", labels, registry=registry),
        METRIC_FILES: Counter(METRIC_FILES, "Files downloaded from the hub", labels, registry=registry),
        METRIC_FAILURES: Counter(METRIC_FAILURES, "Failed fetches by reason", (*labels, "reason"), registry=registry),
        METRIC_RUNS: Counter(METRIC_RUNS, "Fetches that had to download or verify", labels, registry=registry),
    }
    gauges = {
        METRIC_DURATION: Gauge(METRIC_DURATION, "Duration of the last fetch", labels, registry=registry),
        METRIC_MODEL_BYTES: Gauge(METRIC_MODEL_BYTES, "Size of the complete model on the volume", labels, registry=registry),
        METRIC_LAST_SUCCESS: Gauge(METRIC_LAST_SUCCESS, "Unix time of the last successful fetch", labels, registry=registry),
    }
    try:
        previous = path.read_text(encoding="utf-8") if path.exists() else ""
        for family in text_string_to_metric_families(previous):
            for sample in family.samples:
                name = sample.name.removesuffix("_total")
                if sample.name.endswith("_total") and name in counters:
                    counters[name].labels(**sample.labels).inc(sample.value)
                elif name in gauges:
                    gauges[name].labels(**sample.labels).set(sample.value)
    except (OSError, ValueError) as exc:
        log.warning("metrics: ignoring the unreadable %s (%s)", path, exc)
    key = {"source": config.model.source, "model": f"{config.model.id}@{config.model.effective_revision}"}
    counters[METRIC_RUNS].labels(**key).inc()
    gauges[METRIC_DURATION].labels(**key).set(seconds)
    if result is not None:
        counters[METRIC_BYTES].labels(**key).inc(result.bytes_downloaded)
        counters[METRIC_FILES].labels(**key).inc(result.files_downloaded)
        gauges[METRIC_MODEL_BYTES].labels(**key).set(result.bytes_total)
        gauges[METRIC_LAST_SUCCESS].labels(**key).set(time.time())
    if failure is not None:
        counters[METRIC_FAILURES].labels(**key, reason=failure).inc()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), registry)
    except OSError as exc:
        log.warning("metrics: cannot write %s (%s)", path, exc.strerror or exc)


# ----------------------------------------------------------------------------------------------------------------
# The entry points
# ----------------------------------------------------------------------------------------------------------------
def _progress_mode(progress: bool) -> str:
    if not progress:
        return "off"
    return "bar" if sys.stderr.isatty() else "log"


def _complete_result(config: Config, started: float, waited: float = 0.0) -> FetchResult:
    marker = _read_json(Layout(config.model_dir).marker) or {}
    files = marker.get("files") or {}
    return FetchResult(
        config.model_dir, config.model.source, config.model.id, config.model.effective_revision, marker.get("commit"),
        len(files), sum(int(r.get("size", 0)) for r in files.values()), 0, time.monotonic() - started, True, waited,
    )  # fmt: skip


def _verify_local(config: Config, started: float) -> FetchResult:
    directory = config.model_dir
    problems = _local_problems(directory)
    if problems:
        raise ConfigError(f"model.path: {directory} is not a usable model dir: " + "; ".join(problems))
    files = [p for p in directory.rglob("*") if p.is_file()]
    return FetchResult(directory, "local", str(directory), "", None, len(files), sum(p.stat().st_size for p in files), 0,
                       time.monotonic() - started, True)  # fmt: skip


def _verify_offline(config: Config, started: float) -> FetchResult:
    """--offline: accept the marker when the files still match it (re-hashing only files whose stat changed)."""
    layout = Layout(config.model_dir)
    what = f"{config.model.id}@{config.model.effective_revision}"
    marker = _read_json(layout.marker)
    if marker is None or not _same_model(marker, config):
        raise FetchFailed(
            f"offline: the weights of {what} are not complete in {layout.final} (no valid {MARKER}); "
            "run `llama-ascend fetch` with network access first, or drop --offline / $LLAMA_ASCEND_OFFLINE",
            "offline",
        )
    for path, rec in sorted(marker["files"].items()):
        if not _stat_matches(layout.final, path, rec) and not _content_matches(layout.final / path, rec):
            raise FetchFailed(
                f"offline: {what}: {layout.final / path} is missing or changed since it was verified; "
                "run `llama-ascend fetch` with network access to repair it",
                "offline",
            )
    if not _same_selection(marker, config):
        log.warning(
            "offline: %s was fetched with allow_patterns=%s ignore_patterns=%s, not the configured ones; using it as it is",
            what, marker.get("allow_patterns"), marker.get("ignore_patterns"),
        )  # fmt: skip
    return _complete_result(config, started)


def fetch(config: Config, offline: bool = False, progress: bool = True) -> FetchResult:
    """Make the weights the config names complete in `config.model_dir`, downloading only what is missing.

    A complete dir returns at once (marker check, no network). `offline` (or $LLAMA_ASCEND_OFFLINE=1,
    $HF_HUB_OFFLINE=1 for HuggingFace) never touches the network and fails unless the weights are complete.
    """
    started = time.monotonic()
    if config.model.source == "local":
        return _verify_local(config, started)
    if is_complete(config):
        return _complete_result(config, started)
    if offline or _env_flag(ENV_OFFLINE) or (config.model.source == "huggingface" and _env_flag("HF_HUB_OFFLINE")):
        return _verify_offline(config, started)
    result: FetchResult | None = None
    failure: str | None = None
    try:
        result = _fetch_online(config, progress, started)
        return result
    except LeaseLost:
        failure = "lease"
        raise FetchFailed(f"{config.model_dir}: another fetcher took over while this one stalled; run fetch again", "lease") from None
    except LlamaAscendError as exc:
        failure = getattr(exc, "reason", "config" if isinstance(exc, ConfigError) else "other")
        raise
    except BaseException:
        failure = "interrupted"
        raise
    finally:
        if result is None or not result.already_complete:
            with contextlib.suppress(Exception):
                write_metrics(config, time.monotonic() - started, result, failure)


def _fetch_online(config: Config, progress: bool, started: float) -> FetchResult:
    layout = Layout(config.model_dir)
    what = f"{config.model.source} {config.model.id}@{config.model.effective_revision}"
    stale = _env_number(ENV_LEASE_STALE, 60)
    lease = Lease(layout.lease, purpose=f"fetch {what}", stale_after=stale, heartbeat=max(0.05, min(5.0, stale / 6)))
    layout.final.parent.mkdir(parents=True, exist_ok=True)
    lease.acquire(on_wait=lambda holder: log.info("%s is being fetched by %s; waiting for it", what, describe(holder)))
    try:
        if is_complete(config):  # the fetcher we waited for finished it
            log.info("%s was completed by another fetcher while we waited (%.1f s)", what, lease.waited)
            return _complete_result(config, started, lease.waited)
        with client_environment(config):
            source = _make_source(config)
            manifest = source.manifest()
            files = selected(manifest.files, config.model.allow_patterns, config.model.ignore_patterns)
            if not files:
                raise _config_error(
                    f"{source.what}: none of its {len(manifest.files)} files match model.allow_patterns "
                    f"{config.model.allow_patterns} (minus model.ignore_patterns)",
                    "config",
                )
            plan = _plan(layout, manifest, files)
            _check_disk(source.what, layout, plan)
            missing = plan.missing
            present = plan.total - sum(f.size for f in missing) + sum(plan.partial.values())
            log.info(
                "%s: %d files, %s; %d to download (%s%s) into %s",
                what, len(files), _gb(plan.total), len(missing), _gb(plan.need),
                f", resuming {_gb(sum(plan.partial.values()))}" if plan.partial else "", layout.final,
            )  # fmt: skip
            bar = Progress(f"fetch {config.model.id}", plan.total, present, _progress_mode(progress),
                           _env_number(ENV_LOG_INTERVAL, 15))  # fmt: skip
            if missing:
                try:
                    with bar, _Flusher(layout.staging):
                        source.download(missing, layout.staging, bar, dict(plan.partial))
                except FetchFailed as exc:
                    if exc.reason == "disk":
                        _remove_partials(layout.staging, {f.path for f in files})
                    raise
            fetched = plan.staged | {f.path for f in missing}
            problems = _weights_problems(lambda p: (layout.staging if p in fetched else layout.final) / p, [f.path for f in files])
            if problems:
                raise FetchFailed(f"{source.what}: the fetched weights are not loadable: " + "; ".join(problems), "integrity")
            _commit(layout, plan, manifest, config, lease)
    finally:
        lease.release()
    seconds = time.monotonic() - started
    return FetchResult(layout.final, config.model.source, config.model.id, config.model.effective_revision,
                       manifest.commit, len(files), plan.total, bar.moved, seconds, False, lease.waited, len(missing))  # fmt: skip
