"""What is already on the volume and what remains (the plan), keeping written bytes on disk while downloading, and
the commit: staged files into the model dir, the marker last."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_ascend import __version__
from llama_ascend.config import Config
from llama_ascend.durable import fsync_dir, read_json, write_json_atomic
from llama_ascend.fetch.layout import (
    INCOMPLETE,
    JOURNAL,
    MARKER,
    MARKER_FORMAT,
    Layout,
    Manifest,
    RemoteFile,
    stat_matches,
)
from llama_ascend.fetch.results import FetchFailed, gb
from llama_ascend.fetch.settings import DISK_RESERVE
from llama_ascend.fetch.verify import content_matches
from llama_ascend.lease import Lease


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


def make_plan(layout: Layout, manifest: Manifest, files: list[RemoteFile]) -> Plan:
    """What is already there (model dir, .partial dir) and what remains; clears what no longer matches."""
    plan = Plan(files)
    wanted = {f.path: f for f in files}
    marker = read_json(layout.marker) or {}
    recorded: dict[str, Any] = marker["files"] if isinstance(marker.get("files"), dict) else {}
    for f in files:
        rec = recorded.get(f.path)
        if rec and all(rec.get(k) == v for k, v in f.record().items()) and stat_matches(layout.final, f.path, rec):
            plan.in_final.add(f.path)
        elif (layout.final / f.path).is_file() and content_matches(layout.final / f.path, f.record()):
            plan.in_final.add(f.path)  # there but not (or no longer) recorded: verified by content
    staging = layout.staging
    journal = read_json(staging / JOURNAL) or {}
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
                elif size == entry.size and content_matches(path, entry.record()):
                    os.replace(path, staging / name)  # whole and verified: stopped before its rename
                    plan.staged.add(name)
                else:
                    path.unlink()
            elif path.stat().st_size == entry.size:
                plan.staged.add(name)  # renamed into place by the client or by _get only after its digest matched
            else:
                path.unlink()
    staging.mkdir(parents=True, exist_ok=True)
    write_json_atomic(staging / JOURNAL, {"commit": manifest.commit, "files": {f.path: f.record() for f in files}})
    return plan


def check_disk(what: str, layout: Layout, plan: Plan) -> None:
    free = shutil.disk_usage(layout.staging).free
    if plan.need + DISK_RESERVE > free:
        raise FetchFailed(
            f"{what}: not enough disk space under {layout.final.parent}: {len(plan.missing)} files need "
            f"{gb(plan.need)} more, only {gb(free)} free; free space or enlarge the volume (model.path)",
            "disk",
        )


class Flusher:
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

    def __enter__(self) -> Flusher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def remove_partials(staging: Path, complete: set[str]) -> None:
    """Delete every partial download (`.incomplete` files, the client's range parts); keep verified files."""
    for path in [p for p in staging.rglob("*") if p.is_file()]:
        rel = path.relative_to(staging).as_posix()
        if rel not in complete and rel != JOURNAL:
            path.unlink(missing_ok=True)


def commit(layout: Layout, plan: Plan, manifest: Manifest, config: Config, lease: Lease) -> None:
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
    write_json_atomic(home / MARKER, marker)
    if fresh:
        os.rename(staging, final)
        fsync_dir(final.parent)
    else:
        shutil.rmtree(staging, ignore_errors=True)
