"""Shared fixtures: the converted stand-in model and one real vLLM CPU server for the whole session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEV_CONFIG = ROOT / "config" / "dev-cpu.yaml"
PROD_CONFIG = ROOT / "config" / "llama-3.1-8b-instruct.yaml"
READY_TIMEOUT = 600  # a cold torch/vLLM import on a loaded 2-core machine
DRAIN_SECONDS = 180


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop the shared server run last, after every test that needs it."""
    items.sort(key=lambda item: item.get_closest_marker("stops_server") is not None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real entry point in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "llama_ascend", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture(scope="session")
def standin_model_dir() -> Path:
    from llama_ascend import standin

    return standin.convert()


@dataclass
class DevServer:
    url: str
    model: str
    api_key: str
    process: subprocess.Popen[bytes]
    log_path: Path
    ready_seconds: float = 0.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_ready(url: str, api_key: str | None, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> float:
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/v1/models", headers=headers, timeout=5).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise RuntimeError(f"server not ready after {timeout} s:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def dev_server(standin_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`llama-ascend serve` with the dev profile on a free loopback port, with an API key (so 401s are real)."""
    port = free_port()
    api_key = "test-key-" + os.urandom(4).hex()
    log_path = tmp_path_factory.mktemp("dev-server") / "server.log"
    env = {**os.environ, "LLAMA_TEST_API_KEY": api_key}
    cmd = [sys.executable, "-m", "llama_ascend", "serve", "--config", str(DEV_CONFIG),
           "--set", f"server.port={port}", "--set", "server.api_key_env=LLAMA_TEST_API_KEY",
           # a drain long enough for a request on a loaded 2-core machine; the SIGTERM test relies on it
           "--set", f"server.shutdown_timeout={DRAIN_SECONDS}"]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    server = DevServer(f"http://127.0.0.1:{port}", "SmolLM2-135M-Instruct", api_key, process, log_path)
    try:
        server.ready_seconds = wait_ready(server.url, api_key, process, log_path, READY_TIMEOUT)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
