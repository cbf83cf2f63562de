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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_ascend import __version__
from llama_ascend.config import Config, expand_path
from llama_ascend.errors import CheckFailed, ConfigError, LlamaAscendError, file_in_the_way
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
            size = _gb(self.bytes_total)
            return f"fetch: {what} {state} in {self.model_dir}: {self.files} files, {size} ({self.seconds:.2f} s)"
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
        return not local_problems(config.model_dir)
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
    tensors = [v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    ends = [v["data_offsets"][1] for v in tensors]
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


def local_problems(directory: Path) -> list[str]:
    """What keeps `directory` from being a loadable model dir (config, tokenizer, whole safetensors, shards)."""
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
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import (
            Progress as Bar,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Bar(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(self.label, total=self.total, completed=self.done)
            while not self._stop.wait(0.2):
                bar.update(task, completed=self.done)
            bar.update(task, completed=self.done)


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
    recorded: dict[str, Any] = marker["files"] if isinstance(marker.get("files"), dict) else {}
    for f in files:
        rec = recorded.get(f.path)
        if rec and all(rec.get(k) == v for k, v in f.record().items()) and _stat_matches(layout.final, f.path, rec):
            plan.in_final.add(f.path)
        elif (layout.final / f.path).is_file() and _content_matches(layout.final / f.path, f.record()):
            plan.in_final.add(f.path)  # there but not (or no longer) recorded: verified by content
    staging = layout.staging
    journal = _read_json(staging / JOURNAL) or {}
    before: dict[str, Any] = journal["files"] if isinstance(journal.get("files"), dict) else {}
    if staging.is_dir():
        for path in sorted(p for p in staging.rglob("*") if p.is_file() and p.name != JOURNAL):
            rel = path.relative_to(staging).as_posix()
            name = rel[: -len(INCOMPLETE)] if rel.endswith(INCOMPLETE) else rel
            entry = wanted.get(name)
            if entry is None or before.get(name) != entry.record() or entry.path in plan.in_final:
                path.unlink()  # from another selection or revision, or the client's scratch (parts): not ours to resume
            elif rel.endswith(INCOMPLETE):
                size = path.stat().st_size
                if size < entry.size:
                    plan.partial[name] = size
                elif size == entry.size and _content_matches(path, entry.record()):
                    os.replace(path, staging / name)  # whole and verified: stopped before its rename
                    plan.staged.add(name)
                else:
                    path.unlink()
            elif path.stat().st_size == entry.size:
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
        METRIC_MODEL_BYTES: Gauge(
            METRIC_MODEL_BYTES, "Size of the complete model on the volume", labels, registry=registry
        ),
        METRIC_LAST_SUCCESS: Gauge(
            METRIC_LAST_SUCCESS, "Unix time of the last successful fetch", labels, registry=registry
        ),
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
        config.model_dir,
        config.model.source,
        config.model.id,
        config.model.effective_revision,
        marker.get("commit"),
        len(files),
        sum(int(r.get("size", 0)) for r in files.values()),
        0,
        time.monotonic() - started,
        True,
        waited,
    )


def _verify_local(config: Config, started: float) -> FetchResult:
    directory = config.model_dir
    problems = local_problems(directory)
    if problems:
        raise ConfigError(f"model.path: {directory} is not a usable model dir: " + "; ".join(problems))
    files = [p for p in directory.rglob("*") if p.is_file()]
    return FetchResult(
        directory,
        "local",
        str(directory),
        "",
        None,
        len(files),
        sum(p.stat().st_size for p in files),
        0,
        time.monotonic() - started,
        True,
    )


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
            what,
            marker.get("allow_patterns"),
            marker.get("ignore_patterns"),
        )
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
        raise FetchFailed(
            f"{config.model_dir}: another fetcher took over while this one stalled; run fetch again", "lease"
        ) from None
    except LlamaAscendError as exc:
        failure = getattr(exc, "reason", "config" if isinstance(exc, ConfigError) else "other")
        raise
    except OSError as exc:  # the volume: read-only, not ours, full, gone
        disk = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        failure = "disk" if disk else "volume"
        where = f" ({exc.filename})" if exc.filename else ""
        what = f"{config.model.id}@{config.model.effective_revision}"
        root = expand_path(config.model.path)
        fix = "free space or enlarge the volume" if disk else "model.path must be a writable volume for this user"
        if exc.errno in (errno.ENOTDIR, errno.EEXIST) and (blocker := file_in_the_way(exc.filename or root)):
            fix = (
                f"{blocker} is a regular file where a directory is needed: move it away, or point model.path elsewhere"
            )
        message = f"{what}: cannot write the weights under {root}: {exc.strerror or exc}{where}; {fix}"
        raise FetchFailed(message, failure) from None
    except BaseException:
        failure = "interrupted"
        raise
    finally:
        if result is None or not result.already_complete:
            with contextlib.suppress(Exception):
                write_metrics(config, time.monotonic() - started, result, failure)


def _stop_writing(layout: Layout) -> None:
    """This process stalled (e.g. a paused VM) longer than the lease timeout and another fetcher took over: stop at
    once, from the heartbeat thread, so that only one process writes into the .partial dir."""
    print(
        f"error: {layout.final}: another fetcher took the lease over while this one was stalled; stopping so that "
        "only one writes (the other one completes the fetch)",
        file=sys.stderr,
        flush=True,
    )
    os._exit(1)


def _fetch_online(config: Config, progress: bool, started: float) -> FetchResult:
    layout = Layout(config.model_dir)
    what = f"{config.model.source} {config.model.id}@{config.model.effective_revision}"
    stale = _env_number(ENV_LEASE_STALE, 60)
    heartbeat = max(0.05, min(5.0, stale / 6))
    lease = Lease(
        layout.lease,
        purpose=f"fetch {what}",
        stale_after=stale,
        heartbeat=heartbeat,
        on_lost=lambda: _stop_writing(layout),
    )
    layout.final.parent.mkdir(parents=True, exist_ok=True)
    lease.acquire(on_wait=lambda holder: log.info("%s is being fetched by %s; waiting for it", what, describe(holder)))
    try:
        if is_complete(config):  # the fetcher we waited for finished it
            log.info("%s was completed by another fetcher while we waited (%.1f s)", what, lease.waited)
            return _complete_result(config, started, lease.waited)
        from llama_ascend import fetch_hubs

        with fetch_hubs.client_environment(config):
            source = fetch_hubs.make_source(config)
            manifest = source.manifest()
            files = selected(manifest.files, config.model.allow_patterns, config.model.ignore_patterns)
            if not files:
                raise _config_error(
                    f"{source.what}: none of its {len(manifest.files)} files match model.allow_patterns "
                    f"{config.model.allow_patterns} (minus model.ignore_patterns)",
                    "config",
                )
            if lease.took_over_live and layout.staging.is_dir():  # its holder may wake up and write to its open files
                log.warning("%s: the previous fetcher may be alive but stalled; not resuming its partial files", what)
                _remove_partials(layout.staging, {f.path for f in files})  # new files, new inodes
            plan = _plan(layout, manifest, files)
            _check_disk(source.what, layout, plan)
            missing = plan.missing
            present = plan.total - sum(f.size for f in missing) + sum(plan.partial.values())
            log.info(
                "%s: %d files, %s; %d to download (%s%s) into %s",
                what,
                len(files),
                _gb(plan.total),
                len(missing),
                _gb(plan.need),
                f", resuming {_gb(sum(plan.partial.values()))}" if plan.partial else "",
                layout.final,
            )
            bar = Progress(
                f"fetch {config.model.id}",
                plan.total,
                present,
                _progress_mode(progress),
                _env_number(ENV_LOG_INTERVAL, 15),
            )
            if missing:
                try:
                    with bar, _Flusher(layout.staging):
                        source.download(missing, layout.staging, bar, dict(plan.partial))
                except FetchFailed as exc:
                    if exc.reason == "disk":
                        _remove_partials(layout.staging, {f.path for f in files})
                    raise
            fetched = plan.staged | {f.path for f in missing}
            locate = lambda p: (layout.staging if p in fetched else layout.final) / p  # noqa: E731
            problems = _weights_problems(locate, [f.path for f in files])
            if problems:
                raise FetchFailed(
                    f"{source.what}: the fetched weights are not loadable: " + "; ".join(problems), "integrity"
                )
            _commit(layout, plan, manifest, config, lease)
    finally:
        lease.release()
    seconds = time.monotonic() - started
    return FetchResult(
        layout.final,
        config.model.source,
        config.model.id,
        config.model.effective_revision,
        manifest.commit,
        len(files),
        plan.total,
        bar.moved,
        seconds,
        False,
        lease.waited,
        len(missing),
    )
