"""Shared fixtures: the converted stand-in model and one real vLLM CPU server for the whole session."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llama_ascend_dev import server_process

ROOT = Path(__file__).resolve().parent.parent
DEV_CONFIG = ROOT / "config" / "dev-cpu.yaml"
PROD_CONFIG = ROOT / "config" / "llama-3.1-8b-instruct.yaml"
READY_TIMEOUT = 600  # a cold torch/vLLM import on a loaded 2-core machine
DRAIN_SECONDS = 180


# A skip is a statement about the host. Under CI=true a skip whose reason starts with none of these fails the run, so
# a green CI means every tier ran; the list is printed at the end of every run.
SKIP_ALLOWLIST = (
    "no NPU on this host",  # the NPU acceptance tier (`make test-npu`) needs /dev/davinci*
    "an NPU host",  # a check of what happens without the Ascend driver tools cannot run where they are installed
)


# The image tier (`image_tier` tests) builds and runs the images: with LLAMA_ASCEND_IMAGE_TESTS=1 and these tools.
IMAGE_TOOLS = ("buildah", "podman", "runc", "debootstrap")
IMAGE_TIER_SKIP = pytest.mark.skip(
    reason=f"the image tier runs with `make image-test` (LLAMA_ASCEND_IMAGE_TESTS=1, {' '.join(IMAGE_TOOLS)})"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop the shared server run last, after every test that needs it; the image tier runs where it can."""
    items.sort(key=lambda item: item.get_closest_marker("stops_server") is not None)
    image_tier = os.environ.get("LLAMA_ASCEND_IMAGE_TESTS") == "1" and all(shutil.which(t) for t in IMAGE_TOOLS)
    for item in items:
        if not image_tier and item.get_closest_marker("image_tier"):
            item.add_marker(IMAGE_TIER_SKIP)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if isinstance(r, pytest.TestReport)]
    unexpected = [r for r in skipped if not _skip_reason(r).startswith(SKIP_ALLOWLIST)]
    terminalreporter.section("skips")
    terminalreporter.write_line(f"allowed skip reasons (CI=true fails on any other): {list(SKIP_ALLOWLIST)}")
    terminalreporter.write_line(f"{len(skipped)} skipped, {len(unexpected)} of them outside the allowlist")
    for report in unexpected:
        terminalreporter.write_line(f"  UNEXPECTED SKIP {report.nodeid}: {_skip_reason(report)}")
    if unexpected and _ci():
        terminalreporter.write_line("CI=true: unexpected skips fail the run (a tier that did not run is not green)")
    _user_error_table(terminalreporter)


# (test, exit code, its stderr lines) of each user-caused error tests/test_user_errors.py drove: the run's table.
USER_ERRORS: list[tuple[str, int, str]] = []


def _user_error_table(terminalreporter: pytest.TerminalReporter) -> None:
    if not USER_ERRORS:
        return
    terminalreporter.section("user errors: exit code and what stderr said")
    for test, code, text in USER_ERRORS:
        text = re.sub(r"/tmp/pytest-of-[^/]+/pytest-\d+/[^/ ]+", "<tmp>", text)
        terminalreporter.write_line(f"{code}  {test.removeprefix('test_')}: {text}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not _ci():
        return
    skipped = [r for r in reporter.stats.get("skipped", []) if isinstance(r, pytest.TestReport)]
    if any(not _skip_reason(r).startswith(SKIP_ALLOWLIST) for r in skipped) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real entry point in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "llama_ascend", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def metric_samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus endpoint, by name and sorted labels."""
    text = httpx.get(url, timeout=30).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric_total(url: str, name: str) -> float:
    """A counter summed over its labels."""
    return sum(value for (metric, _), value in metric_samples(url).items() if metric == name)


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
    sets: list[str]  # the --set overrides it was started with
    ready_seconds: float = 0.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def dev_server(standin_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`llama-ascend serve` with the dev profile on a free loopback port, with an API key (so 401s are real)."""
    port = server_process.free_port()
    api_key = "test-key-" + os.urandom(4).hex()
    log_path = tmp_path_factory.mktemp("dev-server") / "server.log"
    env = {**os.environ, "LLAMA_TEST_API_KEY": api_key}
    # a drain long enough for a request on a loaded 2-core machine; the SIGTERM test relies on it
    sets = [f"server.port={port}", "server.api_key_env=LLAMA_TEST_API_KEY", f"server.shutdown_timeout={DRAIN_SECONDS}"]
    cmd = [sys.executable, "-m", "llama_ascend", "serve", "--config", str(DEV_CONFIG)]
    for item in sets:
        cmd += ["--set", item]
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    server = DevServer(f"http://127.0.0.1:{port}", "SmolLM2-135M-Instruct", api_key, process, log_path, sets)
    try:
        server.ready_seconds = server_process.wait_ready(
            server.url,
            alive=lambda: process.poll() is None,
            log_tail=server.log,
            timeout=READY_TIMEOUT,
            api_key=api_key,
        )
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
