"""The fetch lease (llama_ascend.lease) with real processes: one holder, dead holders taken over, live ones not."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from llama_ascend.lease import Lease, LeaseLost
from llama_ascend_dev import ROOT
from llama_ascend_dev.fetch_helpers import wait_for

HOLD = """
import sys, time
from pathlib import Path
from llama_ascend.lease import Lease
lease = Lease(Path(sys.argv[1]), purpose="test holder", heartbeat=0.1, stale_after=1.0)
lease.acquire()
print("held", flush=True)
time.sleep(600)
"""


def hold_in_subprocess(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_only_one_holder_and_a_killed_holder_is_taken_over_at_once(tmp_path: Path):
    path = tmp_path / ".master.lease"
    holder = hold_in_subprocess(path)
    try:
        holder_info = json.loads(path.read_text())
        assert holder_info["pid"] == holder.pid and holder_info["purpose"] == "test holder"
        # Only seeing the holder's process gone can free the lease: no heartbeat timeout within the test's lifetime.
        mine = Lease(path, heartbeat=0.1, stale_after=3600)
        assert not mine.try_acquire()
        with pytest.raises(TimeoutError, match=f"held by pid {holder.pid}"):
            mine.acquire(timeout=0.5)  # alive: no takeover
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        mine.acquire(timeout=600)
        assert mine.took_over_because.startswith(f"its process is gone (pid {holder.pid} on ")
        assert not mine.took_over_live  # its partial files may be resumed
        assert json.loads(path.read_text())["token"] == mine.token
        mine.release()
        assert not path.exists()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def foreign_lease(path: Path, host: str = "other-node") -> dict:
    """A lease written by a process on another node (its PID means nothing here)."""
    info = {"token": "t-" + os.urandom(4).hex(), "host": host, "pid": 1, "pid_namespace": "pid:[1]", "since": "earlier"}
    path.write_text(json.dumps(info))
    return info


class SteppedClock:
    """The waiter's clock, moved only by its own pauses; `on_pause` runs at each (the other node's heartbeat)."""

    def __init__(self, on_pause: Callable[[int], None]) -> None:
        self.now = 1000.0
        self.pauses = 0
        self.on_pause = on_pause

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses += 1
        self.now += seconds
        self.on_pause(self.pauses)


def test_a_lease_from_another_node_is_taken_over_only_after_its_heartbeat_stops(tmp_path: Path):
    path = tmp_path / ".main.lease"
    foreign_lease(path)
    beats_until = 40  # the other node touches its lease at each of our first 40 pauses (20 s), then dies

    def other_node(pause: int) -> None:
        if pause <= beats_until:
            os.utime(path, ns=(pause, pause))  # a new mtime per beat, whatever the filesystem's resolution

    clock = SteppedClock(other_node)
    mine = Lease(path, heartbeat=0.1, stale_after=5.0, poll=0.5, clock=clock, sleep=clock.sleep)
    mine.acquire(timeout=600)
    # 40 beats kept it alive for 20 s (4 × stale_after); after the last one, 5 s of our clock without a change.
    assert clock.pauses == beats_until + 10
    assert mine.took_over_because.startswith("no heartbeat for 5s")
    assert mine.took_over_live  # it may only be frozen: its partial files must not be resumed
    mine.release()


def test_an_unreadable_lease_goes_stale_like_a_silent_holder(tmp_path: Path):
    path = tmp_path / ".x.lease"
    path.write_text("")  # not a lease we write (they are linked into place whole), but a damaged volume can hold one
    clock = SteppedClock(lambda pause: None)
    mine = Lease(path, heartbeat=0.05, stale_after=2.0, poll=0.5, clock=clock, sleep=clock.sleep)
    mine.acquire(timeout=600)
    assert clock.pauses == 4 and mine.took_over_because.startswith("no heartbeat for 2s (an unknown process)")
    assert json.loads(path.read_text())["token"] == mine.token
    mine.release()


def test_a_draft_left_by_a_crash_before_its_link_is_never_the_lease_and_is_cleared(tmp_path: Path):
    path = tmp_path / ".w.lease"
    draft = tmp_path / ".w.lease.0123abcd.draft"
    draft.write_text('{"token": "crashed"')  # written half-way, then the process was killed
    mine = Lease(path, heartbeat=0.05, stale_after=3600)
    assert mine.try_acquire()  # no lease existed: the draft is not one
    assert json.loads(path.read_text())["token"] == mine.token
    assert sorted(p.name for p in tmp_path.iterdir()) == [".w.lease"]
    mine.release()
    assert not path.exists()


def test_a_holder_that_lost_its_lease_knows_it(tmp_path: Path):
    path = tmp_path / ".y.lease"
    mine = Lease(path, heartbeat=0.05, stale_after=0.5)
    mine.acquire()
    foreign_lease(path.with_name("new"))
    os.replace(path.with_name("new"), path)  # someone judged us stale and took over
    assert wait_for(lambda: mine.lost, timeout=120)  # its next heartbeat sees it
    with pytest.raises(LeaseLost, match="another process took the lease over"):
        mine.check()
    mine.release()
    assert path.exists()  # not ours any more: release leaves it alone


def dead_local_lease(path: Path) -> dict:
    """A lease of a process of this machine that has exited: every waiter can see at once that it is gone."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    info = {
        "token": "t-dead",
        "host": socket.gethostname(),
        "pid": gone.pid,
        "pid_start": "1",
        "pid_namespace": os.readlink("/proc/self/ns/pid"),
        "since": "earlier",
    }
    path.write_text(json.dumps(info))
    return info


def test_two_waiters_breaking_the_same_stale_lease_end_with_one_holder(tmp_path: Path):
    path = tmp_path / ".z.lease"
    dead_local_lease(path)
    # Three waiters race to break the same dead holder's lease; a heartbeat timeout cannot interfere (an hour).
    script = f"""
import sys, time
from pathlib import Path
from llama_ascend.lease import Lease
lease = Lease(Path({str(path)!r}), heartbeat=0.05, stale_after=3600)
lease.acquire(timeout=30)
print(time.monotonic(), flush=True)
time.sleep(1.0)
print("lost" if lease.lost else "kept", flush=True)
lease.release()
"""
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(out[1] == "kept" for out in outputs), outputs  # nobody had the lease taken away while holding it
    spans = sorted((float(out[0]), float(out[0]) + 1.0) for out in outputs)
    assert all(a[1] <= b[0] + 0.05 for a, b in itertools.pairwise(spans)), spans  # one at a time
