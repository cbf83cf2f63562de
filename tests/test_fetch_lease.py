"""The fetch lease (llama_ascend.lease) with real processes: one holder, dead holders taken over, live ones not."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fetch_support import ROOT, wait_for
from llama_ascend.lease import Lease, LeaseLost

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
        mine = Lease(path, heartbeat=0.1, stale_after=30)
        assert not mine.try_acquire()
        with pytest.raises(TimeoutError, match=f"held by pid {holder.pid}"):
            mine.acquire(timeout=0.5)  # alive and beating: no takeover
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        started = time.monotonic()
        mine.acquire(timeout=10)
        assert time.monotonic() - started < 2  # same host and PID namespace: the dead PID is seen, no 30 s wait
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


def test_a_lease_from_another_node_is_taken_over_only_after_its_heartbeat_stops(tmp_path: Path):
    path = tmp_path / ".main.lease"
    foreign_lease(path)
    stop = threading.Event()

    def heartbeat() -> None:  # the other node is alive: its lease file keeps changing
        while not stop.wait(0.1):
            os.utime(path)

    beating = threading.Thread(target=heartbeat, daemon=True)
    beating.start()
    mine = Lease(path, heartbeat=0.1, stale_after=0.8)
    with pytest.raises(TimeoutError):
        mine.acquire(timeout=2.0)  # 2.5 × stale_after, still held: it beats
    stop.set()
    beating.join()
    started = time.monotonic()
    mine.acquire(timeout=10)  # stopped beating: stale after 0.8 s of our own clock
    waited = time.monotonic() - started
    assert 0.7 <= waited < 5, waited
    mine.release()


def test_an_empty_lease_left_by_a_crash_between_create_and_write_goes_stale(tmp_path: Path):
    path = tmp_path / ".x.lease"
    path.write_text("")
    mine = Lease(path, heartbeat=0.05, stale_after=0.5)
    mine.acquire(timeout=10)
    assert json.loads(path.read_text())["token"] == mine.token
    mine.release()


def test_a_holder_that_lost_its_lease_knows_it(tmp_path: Path):
    path = tmp_path / ".y.lease"
    mine = Lease(path, heartbeat=0.05, stale_after=0.5)
    mine.acquire()
    foreign_lease(path.with_name("new"))
    os.replace(path.with_name("new"), path)  # someone judged us stale and took over
    assert wait_for(lambda: mine.lost, timeout=5)
    with pytest.raises(LeaseLost, match="another process took the lease over"):
        mine.check()
    mine.release()
    assert path.exists()  # not ours any more: release leaves it alone


def test_two_waiters_breaking_the_same_stale_lease_end_with_one_holder(tmp_path: Path):
    path = tmp_path / ".z.lease"
    foreign_lease(path)
    old = time.time() - 3600
    os.utime(path, (old, old))
    script = f"""
import sys, time
from pathlib import Path
from llama_ascend.lease import Lease
lease = Lease(Path({str(path)!r}), heartbeat=0.05, stale_after=0.3)
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
