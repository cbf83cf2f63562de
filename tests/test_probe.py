"""`llama-ascend probe` against real vLLM CPU servers of the stand-in: a keyless one this module starts (and stops),
probed before it listens and while it starts, and the session's dev server, which needs an API key. Completions are
counted on vLLM's own /metrics. No assertion is about time."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import DEV_CONFIG, READY_TIMEOUT, ROOT, cli, metric_total
from llama_ascend import probe
from llama_ascend.errors import ConfigError
from llama_ascend_dev import server_process
from test_helm import container, render, workload

MODEL = "SmolLM2-135M-Instruct"
NOT_UP = "server unreachable (ConnectError: [Errno 111] Connection refused); not up yet, or not running"
CHECKS = ("health", "ready", "warm", "healthcheck")


def finished(url: str) -> float:
    return metric_total(f"{url}/metrics", "vllm:request_success_total")


def generated(url: str) -> float:
    return metric_total(f"{url}/metrics", "vllm:generation_tokens_total")


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


@dataclass
class FreshServer:
    """A keyless stand-in server, with what the probes said before it was launched and while it started."""

    server: server_process.ServerProcess
    port: int
    before: dict[str, subprocess.CompletedProcess[str]]
    while_starting: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def probe(self, check: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return cli("probe", check, "--port", str(self.port), "--model", MODEL, "--api-key-env", "", *args, env=env)


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory, standin_model_dir: Path) -> Iterator[FreshServer]:
    port = server_process.free_port()
    argv = [sys.executable, "-m", "llama_ascend", "serve", "--config", str(DEV_CONFIG), "--set", f"server.port={port}"]
    log = tmp_path_factory.mktemp("probe-server") / "server.log"
    server = server_process.ServerProcess("the probe test's server", argv, None, f"http://127.0.0.1:{port}", log)
    fresh = FreshServer(server, port, {})
    pid_arg = ("--pid", str(os.getpid()))  # no server process yet: any live one keys the marker
    fresh.before = {check: fresh.probe(check, *(pid_arg if check == "healthcheck" else ())) for check in CHECKS}
    server.launch()
    try:

        def healthy() -> bool:
            fresh.while_starting.append(fresh.probe("health"))
            return fresh.while_starting[-1].returncode == 0

        server_process.wait_for(
            healthy, alive=server.alive, log_tail=server.log, timeout=READY_TIMEOUT, name=server.name, interval=2
        )
        yield fresh
    finally:
        server.stop()


@pytest.mark.e2e
def test_every_check_says_not_up_before_the_server_listens_and_health_passes_once_it_does(fresh_server):
    for check, result in fresh_server.before.items():
        assert one_line_error(result) == f"error: {fresh_server.url}: {NOT_UP}\n", check
    *starting, up = fresh_server.while_starting
    assert up.returncode == 0 and up.stdout == f"healthy: {fresh_server.url}/health answers\n"
    assert all(one_line_error(r) == f"error: {fresh_server.url}: {NOT_UP}\n" for r in starting)


@pytest.mark.e2e
def test_warm_is_exactly_one_real_completion_of_one_token(fresh_server):
    requests, tokens = finished(fresh_server.url), generated(fresh_server.url)
    result = fresh_server.probe("warm")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"warm: {MODEL} completed 'Hello' with ")
    assert (finished(fresh_server.url), generated(fresh_server.url)) == (requests + 1, tokens + 1)


@pytest.mark.e2e
def test_ready_lists_the_model_and_sends_no_completion(fresh_server):
    requests = finished(fresh_server.url)
    result = fresh_server.probe("ready")
    assert result.returncode == 0 and result.stdout == f"ready: {fresh_server.url} serves ['{MODEL}']\n"
    assert finished(fresh_server.url) == requests


@pytest.mark.e2e
def test_warm_with_a_wrong_model_name_names_the_served_ones(fresh_server):
    result = cli(
        "probe", "warm", "--port", str(fresh_server.port), "--model", "Llama-3.1-8B-Instruct", "--api-key-env", ""
    )
    assert one_line_error(result).startswith(
        f"error: {fresh_server.url}: model 'Llama-3.1-8B-Instruct' is not served; it serves ['{MODEL}'] (vLLM: "
    )


@pytest.mark.e2e
def test_the_config_supplies_port_name_and_key_variable(fresh_server):
    """Only the port is given: the served name and the (absent) key variable come from the dev profile, from
    $LLAMA_ASCEND_CONFIG as in the image."""
    requests = finished(fresh_server.url)
    result = cli("probe", "warm", "--port", str(fresh_server.port), env={"LLAMA_ASCEND_CONFIG": str(DEV_CONFIG)})
    assert result.returncode == 0 and result.stdout.startswith(f"warm: {MODEL} completed"), result.stderr
    assert finished(fresh_server.url) == requests + 1


@pytest.mark.e2e
def test_healthcheck_warms_once_per_server_process_then_only_asks_health(fresh_server, tmp_path):
    env = {"TMPDIR": str(tmp_path)}
    pid = str(fresh_server.server.process.pid)  # serve exec'd vLLM: the server's own process, PID 1 in the image
    requests = finished(fresh_server.url)
    first = fresh_server.probe("healthcheck", "--pid", pid, env=env)
    assert first.returncode == 0 and first.stdout.startswith(f"warm: {MODEL} completed"), first.stderr
    assert finished(fresh_server.url) == requests + 1
    (marker,) = tmp_path.glob(f"{probe.MARKER_PREFIX}*")
    assert marker.name == f"{probe.MARKER_PREFIX}{probe.server_instance(int(pid))}"
    for _ in range(2):
        again = fresh_server.probe("healthcheck", "--pid", pid, env=env)
        assert again.returncode == 0 and again.stdout == f"healthy: {fresh_server.url}/health answers\n"
    assert finished(fresh_server.url) == requests + 1
    # Another server process (a restarted container's new PID 1) is not warm, whatever /tmp kept.
    restarted = fresh_server.probe("healthcheck", "--pid", str(os.getpid()), env=env)
    assert restarted.returncode == 0 and restarted.stdout.startswith(f"warm: {MODEL} completed"), restarted.stderr
    assert finished(fresh_server.url) == requests + 2


@pytest.mark.e2e
def test_with_an_api_key_ready_and_warm_read_it_from_the_named_variable(dev_server):
    """The dev server needs the key in $LLAMA_TEST_API_KEY: the probe reads it from the variable, never from argv."""
    port = dev_server.url.rsplit(":", 1)[1]
    args = ("--port", port, "--model", dev_server.model, "--api-key-env", "PROBE_KEY")
    requests = finished(dev_server.url)
    for check in ("ready", "warm"):
        result = cli("probe", check, *args, env={"PROBE_KEY": dev_server.api_key})
        assert result.returncode == 0, result.stderr
    assert finished(dev_server.url) == requests + 1
    refusals = {
        "": "the server needs an API key ($PROBE_KEY is unset or empty here)",
        "wrong": "the server refused the API key (from $PROBE_KEY)",
    }
    for key, says in refusals.items():
        for check, path in (("ready", "/v1/models"), ("warm", "/v1/completions")):
            error = one_line_error(cli("probe", check, *args, env={"PROBE_KEY": key}))
            assert error == f"error: {dev_server.url}{path}: 401 Unauthorized: {says}\n"
    assert finished(dev_server.url) == requests + 1
    health = cli("probe", "health", "--port", port)  # /health needs no key
    assert health.returncode == 0, health.stderr


def chart_probes(port: int, *sets: str) -> dict[str, dict[str, Any]]:
    """The server container's probes as the chart renders them with the dev cpu values (helm/llama-ascend/ci)."""
    extra = ("--set", f"config.server.port={port}", *(arg for item in sets for arg in ("--set", item)))
    server = container(workload(render("cpu", *extra))["spec"]["template"]["spec"], "server")
    return {kind: server[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}


def run_exec_probe(probe_spec: dict[str, Any], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The exec probe's command exactly as rendered, found on PATH as in the image, with a config that would fail to
    load: the rendered command must need none."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "LLAMA_ASCEND_CONFIG": "/nonexistent/config.yaml", **env}
    return subprocess.run(probe_spec["exec"]["command"], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.e2e
def test_the_charts_probes_pass_against_the_live_server(fresh_server):
    """Rendered for the keyless server's port: the startup probe is one real completion; readiness and liveness are
    the httpGets the kubelet would make."""
    probes = chart_probes(fresh_server.port)
    requests = finished(fresh_server.url)
    result = run_exec_probe(probes["startupProbe"], {})
    assert result.returncode == 0 and result.stdout.startswith(f"warm: {MODEL} completed"), result.stderr
    assert finished(fresh_server.url) == requests + 1
    for kind in ("readinessProbe", "livenessProbe"):
        assert httpx.get(f"{fresh_server.url}{probes[kind]['httpGet']['path']}", timeout=30).status_code == 200


@pytest.mark.e2e
def test_the_charts_keyed_probes_pass_with_the_key_in_the_container_environment(dev_server):
    """Rendered with an API key for the keyed dev server: the startup and readiness probes are execs that name only
    the variable; with the Secret's value in it they pass, without it they fail with a 401."""
    port = int(dev_server.url.rsplit(":", 1)[1])
    probes = chart_probes(port, "apiKey.value=not-the-key", "config.server.api_key_env=LLAMA_TEST_API_KEY")
    assert dev_server.api_key not in json.dumps(probes)
    requests = finished(dev_server.url)
    for kind in ("startupProbe", "readinessProbe"):
        passed = run_exec_probe(probes[kind], {"LLAMA_TEST_API_KEY": dev_server.api_key})
        assert passed.returncode == 0, passed.stderr
        failed = run_exec_probe(probes[kind], {"LLAMA_TEST_API_KEY": ""})
        assert failed.returncode == 1 and "401 Unauthorized" in failed.stderr, failed.stderr
    assert finished(dev_server.url) == requests + 1


# Without a vLLM server: the errors a probe meets when the server is not a healthy vLLM ---------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_server_that_does_not_answer_is_a_timeout(silent_port: int):
    result = cli("probe", "health", "--port", str(silent_port), "--timeout", "0.5")
    assert one_line_error(result) == f"error: http://127.0.0.1:{silent_port}/health: no answer within 0.5 s\n"


@pytest.fixture
def failing_server() -> Iterator[int]:
    """An HTTP server that answers every request with vLLM's error shape and status 503."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"error": {"message": "the engine is dead", "type": "ServiceUnavailable", "code": 503}}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_an_http_error_prints_the_status_and_vllms_message(failing_server: int):
    result = cli("probe", "health", "--port", str(failing_server))
    assert one_line_error(result) == f"error: http://127.0.0.1:{failing_server}/health: HTTP 503: the engine is dead\n"


def test_without_a_config_the_options_the_check_needs_are_named():
    result = cli("probe", "warm", "--port", "8000", env={"LLAMA_ASCEND_CONFIG": ""})
    assert result.returncode == 2
    assert result.stderr == (
        "error: probe warm needs --model and --api-key-env, or a config to read them from (--config FILE or "
        "$LLAMA_ASCEND_CONFIG)\n"
    )


def test_options_win_and_the_config_is_not_read_when_they_say_everything(tmp_path: Path):
    missing = tmp_path / "no-such-config.yaml"
    target = probe.resolve_target(
        "warm", str(missing), host=None, port=9000, model="m", api_key_env="", timeout=5
    )  # the config would fail to load
    assert target == probe.Target("127.0.0.1", 9000, "m", None, 5)
    with pytest.raises(ConfigError, match=r"no-such-config\.yaml"):
        probe.resolve_target("warm", str(missing), host=None, port=9000, model="m", api_key_env=None, timeout=5)
    prod = ROOT / "config" / "llama-3.1-8b-instruct.yaml"
    filled = probe.resolve_target("warm", str(prod), host=None, port=None, model=None, api_key_env="K", timeout=5)
    assert filled == probe.Target("127.0.0.1", 8000, "Llama-3.1-8B-Instruct", "K", 5)  # 0.0.0.0: the loopback
    assert filled.url == "http://127.0.0.1:8000"
    assert probe.Target("::1", 8000, None, None, 5).url == "http://[::1]:8000"


def test_the_server_instance_is_stable_for_a_process_and_differs_between_processes():
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            mine = probe.server_instance(os.getpid())
            assert mine is not None and mine == probe.server_instance(os.getpid())
            assert probe.server_instance(other.pid) not in (None, mine)
        finally:
            other.kill()
    assert probe.server_instance(2**22 + 1) is None  # above Linux's pid_max: no such process
