"""A vLLM server we start ourselves (bench, the image tier, the tests): wait until it answers, stop its group."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from llama_ascend.client import auth_headers
from llama_ascend.errors import CheckFailed


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on the loopback interface (all held at once, so none is handed out twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_consecutive_ports(count: int) -> int:
    """The first of `count` consecutive TCP ports that are all free on the loopback interface (for `make fleet`'s
    layout: the router on P, the replicas on P+1...). A port the kernel hands out is free; the ones after it need not
    be (an outgoing connection may hold one), so each is bound here before the range is accepted."""
    while True:
        first = free_port()
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except (OSError, OverflowError):  # held, or past port 65535
            continue
        finally:
            for sock in sockets:
                sock.close()


def wait_for(
    ready: Callable[[], bool],
    *,
    alive: Callable[[], bool],
    log_tail: Callable[[], str],
    timeout: float,
    name: str = "the server",
    interval: float = 0.5,
) -> float:
    """Seconds until `ready()` holds, asked every `interval` s; CheckFailed with the log's tail if the server dies
    or `timeout` passes first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not alive():
            raise CheckFailed(f"{name} exited before it was ready:\n{log_tail()[-4000:]}")
        if ready():
            return time.monotonic() - started
        time.sleep(interval)
    raise CheckFailed(f"{name} was not ready after {timeout:.0f} s:\n{log_tail()[-4000:]}")


def wait_ready(
    url: str,
    *,
    alive: Callable[[], bool],
    log_tail: Callable[[], str],
    timeout: float,
    api_key: str | None = None,
    name: str = "the server",
) -> float:
    """Seconds until GET /v1/models answers 200; CheckFailed with the log's tail if the server dies or times out."""
    headers = auth_headers(api_key)

    def lists_models() -> bool:
        try:
            return httpx.get(f"{url}/v1/models", headers=headers, timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    return wait_for(lists_models, alive=alive, log_tail=log_tail, timeout=timeout, name=name)


def stop_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process group of a process started with start_new_session=True (vLLM's engine runs in a child),
    then SIGKILL what is left after `timeout` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class ServerProcess:
    """A server process we start in its own process group, logging to a file; its URL and how long it took to
    answer. `env` None: our environment."""

    name: str
    argv: list[str]
    env: dict[str, str] | None
    url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    ready_s: float = math.nan

    def launch(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float) -> float:
        assert self.process is not None, "launch() first"
        self.ready_s = wait_ready(self.url, alive=self.alive, log_tail=self.log, timeout=timeout, name=self.name)
        return self.ready_s

    def start(self, timeout: float = 1200) -> float:
        """launch() and wait_ready(); stops the server if it does not become ready."""
        self.launch()
        try:
            return self.wait_ready(timeout)
        except CheckFailed:
            self.stop()
            raise

    def stop(self, timeout: float = 120) -> None:
        if self.process is not None:
            stop_group(self.process, timeout)
