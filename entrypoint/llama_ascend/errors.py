"""One error type for everything a user can get wrong; the CLI prints it as one line and exits with its code."""

from __future__ import annotations

import errno
import os
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a check or the server failed
    USAGE = 2  # bad configuration or usage
    PREFLIGHT = 3  # the node cannot run the deployment
    INTERRUPTED = 130  # Ctrl-C / SIGINT, as shells report it


class LlamaAscendError(Exception):
    """A failure the user can act on. The message says what happened, where, and how to fix it."""

    exit_code: ExitCode = ExitCode.FAILED


class ConfigError(LlamaAscendError):
    """Bad configuration or usage: a config key, a flag or a path the user named that cannot be used (exit 2)."""

    exit_code = ExitCode.USAGE


class CheckFailed(LlamaAscendError):
    exit_code = ExitCode.FAILED


class PreflightFailed(LlamaAscendError):
    exit_code = ExitCode.PREFLIGHT


# The fix for an OSError, by errno: what the user can do about it.
_OS_FIXES = {
    errno.EACCES: "this user may not write there: fix the permissions or the owner (Kubernetes: the pod's "
    "securityContext.fsGroup), or choose another path",
    errno.EPERM: "this user may not write there: fix the permissions or the owner, or choose another path",
    errno.EROFS: "the filesystem is read-only: mount the volume read-write, or choose a path on a writable one",
    errno.ENOSPC: "the filesystem is full: free space or enlarge the volume",
    errno.EDQUOT: "the disk quota is exhausted: free space or raise the quota",
    errno.EADDRINUSE: "the port is in use: stop what listens there (`ss -ltnp`) or choose another port",
    errno.EADDRNOTAVAIL: "the address is not one of this machine's: use 0.0.0.0 (all interfaces) or 127.0.0.1",
    errno.ENOENT: "a directory on the path does not exist: create it or choose another path",
    errno.EISDIR: "it is a directory where a file is expected: choose a file path",
}


def file_in_the_way(path: str | os.PathLike[str]) -> Path | None:
    """The first component of `path` (itself included) that exists and is not a directory, or None."""
    current = Path(path).absolute()
    for candidate in [*reversed(current.parents), current]:
        if not candidate.exists():
            return None
        if not candidate.is_dir():
            return candidate
    return None


def os_error_fix(exc: OSError) -> str:
    """What the user can do about an OSError, from its errno (and, for ENOTDIR / EEXIST, the file in the way)."""
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and isinstance(exc.filename, (str, os.PathLike)):
        blocker = file_in_the_way(exc.filename)
        if blocker is not None:
            return f"{blocker} is a regular file where a directory is needed: move it away, or choose another path"
    if exc.errno == errno.ENOTDIR:
        return "a component of the path is a regular file, not a directory: choose another path"
    return _OS_FIXES.get(exc.errno or -1, "")


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError at the CLI boundary: the path, what the system said, and the fix."""
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    text = f"{exc.filename}: {reason}" if exc.filename is not None else reason
    if exc.filename2 is not None:
        text += f" ({exc.filename2})"
    fix = os_error_fix(exc)
    return f"{text}; fix: {fix}" if fix else text


def unusable_path(label: str, path: str | os.PathLike[str], doing: str, exc: OSError) -> ConfigError:
    """A ConfigError for a path the user named (`label`: the flag or key) that cannot be used for `doing`."""
    fix = os_error_fix(exc) or f"choose another {label}"
    return ConfigError(f"{label} {path}: cannot {doing}: {exc.strerror or exc}; fix: {fix}")
