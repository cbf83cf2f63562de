"""A lease file that lets exactly one process work on a directory of a shared volume, and outlives no dead holder.

`flock` is not enough on a shared volume: on some NFS mounts it silently succeeds for everyone. The lease is a file
holding who owns it, created whole: written under a temporary name, then hard-linked to the lease's name (a link
fails when the name exists, atomically on local filesystems and NFS), so no crash leaves an empty lease behind. The
holder touches it every `heartbeat` seconds and checks that it still holds it. Another process takes the lease over
when

- the holder runs on the same machine and in the same PID namespace and its process is gone (checked at once), or
- the lease file's mtime has not changed for `stale_after` seconds of the *waiter's own* clock (so clock skew
  between nodes does not matter) — a holder on another node that died, or froze that long.

Taking over renames the stale file away first and checks it took the file it judged, so two waiters cannot both
win. A holder whose lease was taken (it froze past `stale_after`) sees that at its next heartbeat: `lost` turns
true, `on_lost` is called, and the work must not be committed.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = 5.0
DRAFT_SUFFIX = ".draft"
DEFAULT_STALE_AFTER = 60.0


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return ""
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _boot_id() -> str:
    return _read(Path("/proc/sys/kernel/random/boot_id")).strip()


def _process_start(pid: int) -> str:
    """The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat): tells a reused PID apart."""
    stat = _read(Path(f"/proc/{pid}/stat"))
    if not stat:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "an unknown process"
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('since')})"


class LeaseLost(RuntimeError):
    """The lease was taken over while we held it; whatever we did under it must not be committed."""


class Lease:
    """`with Lease(path, purpose="fetch x"): ...` — blocks until this process holds the lease."""

    def __init__(
        self,
        path: Path,
        purpose: str = "",
        heartbeat: float = DEFAULT_HEARTBEAT,
        stale_after: float = DEFAULT_STALE_AFTER,
        poll: float = 0.5,
        on_lost: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if stale_after <= heartbeat:
            raise ValueError(f"stale_after ({stale_after}s) must be longer than heartbeat ({heartbeat}s)")
        self.path = Path(path)
        self.purpose = purpose
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.poll = poll
        self.on_lost = on_lost  # called from the heartbeat thread when the lease was taken over
        self.clock = clock  # the waiter's clock and pause: staleness is judged on our own time, never the file's
        self.sleep = sleep
        self.token = uuid.uuid4().hex
        self.held = False
        self.waited = 0.0
        self.took_over_live = False  # we broke a lease whose holder may still be alive (see _break)
        self.took_over_because = ""  # why we broke the previous holder's lease, if we did
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- identity ---------------------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        pid = os.getpid()
        return {
            "token": self.token,
            "host": socket.gethostname(),
            "pid": pid,
            "pid_start": _process_start(pid),
            "pid_namespace": _pid_namespace(),
            "boot_id": _boot_id(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "purpose": self.purpose,
        }

    @staticmethod
    def _holder_is_dead_here(holder: dict[str, Any]) -> bool:
        """True only when we can see for sure that the holder's process is gone (same machine, same PID namespace)."""
        if not holder or holder.get("host") != socket.gethostname() or holder.get("pid_namespace") != _pid_namespace():
            return False  # another machine or container: only the heartbeat can tell
        if holder.get("boot_id") and holder.get("boot_id") != _boot_id():
            return True  # this machine rebooted since: the holder died with it
        pid = holder.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, owned by someone else
        start = _process_start(pid)
        return bool(start) and bool(holder.get("pid_start")) and start != holder.get("pid_start")

    # -- acquire / release ------------------------------------------------------------------------------------
    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        draft = self.path.with_name(f"{self.path.name}.{self.token}{DRAFT_SUFFIX}")
        try:
            fd = os.open(draft, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            try:
                os.write(fd, json.dumps(self._identity()).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(draft, self.path)
        except (FileExistsError, FileNotFoundError):  # held; or a holder cleared our draft away mid-way
            return False
        finally:
            draft.unlink(missing_ok=True)
        if self._read_holder().get("token") != self.token:  # belt and braces: NFS may report a link it did not make
            return False
        # Drafts of processes killed between writing and linking; one still being written only fails its attempt.
        for leftover in self.path.parent.glob(f"{glob.escape(self.path.name)}.*{DRAFT_SUFFIX}"):
            leftover.unlink(missing_ok=True)
        self.held = True
        self._lost.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()
        return True

    def acquire(self, on_wait: Callable[[dict[str, Any]], None] | None = None, timeout: float | None = None) -> None:
        """Block until we hold the lease; `on_wait(holder)` is called about every 30 s while another one holds it."""
        started = self.clock()
        seen: tuple[float, str] | None = None  # (mtime, content) of the holder's file as last observed
        seen_since = self.clock()
        next_notice = 0.0
        while not self.try_acquire():
            # Open (read) before stat: NFS revalidates a file's attributes on open (close-to-open consistency), so
            # the mtime is the server's current one, not one cached for up to a minute.
            content = _read(self.path)
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                continue  # released just now: try again at once
            holder = _parse(content)
            now = self.clock()
            if seen != (mtime, content):
                seen, seen_since = (mtime, content), now
            if self._holder_is_dead_here(holder):
                self._break(content, f"its process is gone ({describe(holder)})", maybe_alive=False)
                continue
            if now - seen_since >= self.stale_after:
                self._break(content, f"no heartbeat for {now - seen_since:.0f}s ({describe(holder)})", maybe_alive=True)
                seen = None
                continue
            if timeout is not None and now - started >= timeout:
                raise TimeoutError(f"{self.path} is held by {describe(holder)}")
            if on_wait is not None and now >= next_notice:
                on_wait(holder)
                next_notice = now + 30
            self.sleep(self.poll)
        self.waited = self.clock() - started

    def _break(self, judged: str, why: str, maybe_alive: bool) -> None:
        """Remove the stale lease we judged, and only that one. `maybe_alive`: judged by its heartbeat alone, so its
        holder may only be frozen and could write again (for at most one heartbeat) when it wakes up."""
        aside = self.path.with_name(f"{self.path.name}.stale.{self.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if _read(aside) == judged:
            log.warning("taking over %s: %s", self.path, why)
            aside.unlink(missing_ok=True)
            self.took_over_live = self.took_over_live or maybe_alive
            self.took_over_because = why
            return
        # We moved a lease that changed after we judged it (a new holder): put it back if nobody took its place.
        with contextlib.suppress(FileExistsError):
            os.link(aside, self.path)
        aside.unlink(missing_ok=True)

    def _read_holder(self) -> dict[str, Any]:
        return _parse(_read(self.path))

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            if self._read_holder().get("token") != self.token:
                log.error("lost the lease %s to %s", self.path, describe(self._read_holder()))
                self._lose()
                return
            try:
                os.utime(self.path)
            except FileNotFoundError:
                self._lose()
                return
            except OSError as exc:  # a transient NFS error: the next beat tries again
                log.warning("cannot refresh the lease %s: %s", self.path, exc)

    def _lose(self) -> None:
        self._lost.set()
        if self.on_lost is not None and not self._stop.is_set():
            self.on_lost()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(
                f"{self.path}: another process took the lease over (we stalled longer than {self.stale_after:.0f}s)"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat + 1)
            self._thread = None
        if self.held and self._read_holder().get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _parse(content: str) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
