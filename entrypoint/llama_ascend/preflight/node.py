"""What any node needs: the port is free, and what serve will write (the caches, the volume) can be written."""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from llama_ascend.config import Config
from llama_ascend.errors import ConfigError, file_in_the_way
from llama_ascend.paths import expand_path
from llama_ascend.preflight.findings import Finding, fail, ok
from llama_ascend.preflight.sizing import footprint, gib


def check_port(config: Config) -> Finding:
    host, port = config.server.host, config.server.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # uvicorn binds with SO_REUSEADDR too, so a port in TIME_WAIT is not a conflict.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return fail(
                    "port",
                    f"{host}:{port} is already in use",
                    cause="another server (an earlier vLLM that did not exit, or a second replica) listens there",
                    fix=f"stop it (`ss -ltnp | grep :{port}`) or choose another port: --set server.port=<free port>",
                )
            if exc.errno == errno.EADDRNOTAVAIL:
                return fail(
                    "port",
                    f"server.host {host} is not an address of this machine",
                    fix="use 0.0.0.0 (all interfaces) or 127.0.0.1 (this machine only)",
                )
            return fail("port", f"cannot bind {host}:{port}: {exc.strerror}", fix="choose another server.port")
    return ok("port", f"{host}:{port} is free")


WRITE_PROBE_PREFIX = ".llama-ascend-write-probe-"


@dataclass(frozen=True)
class WriteProblem:
    """Why a directory cannot be created or written. `message` is a predicate of the path ("is on a read-only
    filesystem"), so callers put the key or flag and the path before it; `fix` names the key or flag `label`."""

    message: str
    fix: str
    cause: str = ""


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    try:
        stats = os.statvfs(nearest_existing(Path(path).absolute()))
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def write_problem(path: str | os.PathLike[str], label: str, instead: str = "a directory") -> WriteProblem | None:
    """Can `path` be created (when missing) and written as a directory? None when it can.

    Finds a regular file in the way, a read-only filesystem, a directory this user may not write and a full
    filesystem, by creating and removing one small file in the nearest existing directory: nothing is left behind
    and nothing is created on the way (`serve --dry-run` runs this too).
    """
    target = Path(path).absolute()
    blocker = file_in_the_way(target)
    if blocker is not None:
        what = f"{blocker} is a regular file, not a directory"
        return WriteProblem(
            "is a regular file, not a directory" if blocker == target else f"cannot be created: {what}",
            f"move {blocker} away, or point {label} at {instead}",
            cause="a file sits where the directory (or one of its parents) should be",
        )
    existing = nearest_existing(target)
    where = "is" if existing == target else f"would be created under {existing}, which is"
    try:
        handle, probe = tempfile.mkstemp(prefix=WRITE_PROBE_PREFIX, dir=existing)
        try:
            os.write(handle, b"probe")
        finally:
            os.close(handle)
            os.unlink(probe)
    except OSError as exc:
        code = exc.errno
        if code == errno.EROFS:
            return WriteProblem(
                f"{where} on a read-only filesystem",
                f"mount the volume read-write (docker -v SRC:DST:rw; Kubernetes: readOnly: false), or point {label} "
                f"at {instead} on a writable filesystem",
                cause="the volume is mounted read-only",
            )
        if code in (errno.EACCES, errno.EPERM):
            return WriteProblem(
                f"{where} not writable by uid {os.getuid()}",
                f"give this user write access (chown/chmod; Kubernetes: the pod's securityContext.fsGroup), or point "
                f"{label} at {instead} it may write",
                cause="the directory belongs to another user",
            )
        if code in (errno.ENOSPC, errno.EDQUOT):
            return WriteProblem(
                f"{where} on a full filesystem ({exc.strerror})",
                f"free space or enlarge the volume, or point {label} at {instead} on another filesystem",
            )
        return WriteProblem(
            f"{where} not writable ({exc.strerror or exc})", f"point {label} at {instead} that is writable"
        )
    return None


def writable_message(path: Path) -> str:
    """'is writable, N GiB free' or 'can be created (under D, N GiB free)'."""
    existing = nearest_existing(path.absolute())
    free = free_bytes(path)
    room = f", {gib(free)} free" if free is not None else ""
    if existing == path.absolute():
        return f"is writable{room}"
    return f"can be created (under {existing}{room})"


def check_cache_dir(config: Config) -> Finding:
    """server.cache_dir (compile caches, TMPDIR, the preflight report) can be created and written."""
    path = config.cache_dir
    label = "server.cache_dir"
    if config.server.cache_dir:
        name = f"{label} {path}"
    else:
        default = "$LLAMA_ASCEND_CACHE/compile-cache" if config.model.source == "local" else "<model.path>/cache"
        name = f"{label} (unset: {default}) {path}"
    problem = write_problem(path, label)
    if problem:
        return fail("cache-dir", f"{name} {problem.message}", cause=problem.cause, fix=problem.fix)
    return ok("cache-dir", f"{name} {writable_message(path)}")


def check_volume(config: Config) -> Finding | None:
    """model.path, where `fetch` writes the weights (hub sources), can be created and written; None for `local`
    (the model dir is only read)."""
    if config.model.source == "local":
        return None
    from llama_ascend import fetch

    root = expand_path(config.model.path)
    if fetch.is_complete(config):
        return ok("volume", f"model.path {root}: the weights are complete, fetch writes nothing there")
    problem = write_problem(root, "model.path")
    if problem:
        return fail(
            "volume",
            f"model.path {root} {problem.message}: fetch cannot download the weights there",
            cause=problem.cause,
            fix=problem.fix,
        )
    fp = footprint(config)
    free = free_bytes(root)
    if free is not None and free < fp.weight_bytes:
        return fail(
            "volume",
            f"model.path {root}: {gib(free)} free, the weights need ~{gib(fp.weight_bytes)}{fp.note}",
            fix="free space or enlarge the volume (fetch checks the exact size before it downloads)",
            severity="warning",
        )
    return ok("volume", f"model.path {root} {writable_message(root)}: fetch downloads the weights there")


def check_writes(config: Config, skip: Collection[str] = ()) -> list[Finding]:
    """What serve will write: the cache dir, and the volume when the weights are still to be fetched."""
    findings = []
    if "cache-dir" not in skip:
        findings.append(check_cache_dir(config))
    if "volume" not in skip:
        volume = check_volume(config)
        if volume is not None:
            findings.append(volume)
    return findings


def require_writable_dir(label: str, path: str | os.PathLike[str]) -> None:
    """Raise ConfigError (exit 2) naming `label` when the directory cannot be created or written; creates nothing."""
    problem = write_problem(path, label)
    if problem:
        raise ConfigError(f"{label} {path} {problem.message}; fix: {problem.fix}")


def require_writable_file(label: str, path: str | os.PathLike[str]) -> None:
    """Raise ConfigError (exit 2) naming `label` when the file cannot be written (a directory there, or its
    directory cannot be created or written); creates nothing."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{label} {path}: is a directory; fix: name a file, e.g. {target / 'preflight.json'}")
    directory = target.absolute().parent
    problem = write_problem(directory, label, instead="a file elsewhere")
    if problem:
        raise ConfigError(
            f"{label} {path}: cannot write it: its directory {directory} {problem.message}; fix: {problem.fix}"
        )
