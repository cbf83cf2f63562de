"""`llama-ascend router`: the router's command line from the config's router section, checked by hand and against
vllm-router's own parser (the version the image pins)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from conftest import DEV_CONFIG, cli
from llama_ascend.config import load_config
from llama_ascend.router import LAUNCHER_MODULE, ROUTER_KEY_VAR, render_router

STATIC = ["--worker-url", "http://127.0.0.1:8001", "--worker-url", "http://127.0.0.1:8002"]


def test_static_workers_render_the_documented_command() -> None:
    launch = render_router(load_config(DEV_CONFIG, environ={}), ["http://127.0.0.1:8001", "http://127.0.0.1:8002/"])
    assert launch.argv == [
        "vllm-router",
        "--host", "0.0.0.0", "--port", "8000", "--policy", "cache_aware",
        "--prometheus-host", "0.0.0.0", "--prometheus-port", "29000",
        "--worker-urls", "http://127.0.0.1:8001", "http://127.0.0.1:8002",
        "--health-check-interval-secs", "10", "--health-failure-threshold", "2", "--health-success-threshold", "2",
        "--health-check-timeout-secs", "5", "--request-timeout-secs", "1800", "--worker-startup-timeout-secs", "900",
        "--retry-max-retries", "3", "--retry-initial-backoff-ms", "50", "--retry-max-backoff-ms", "2000",
        "--cb-failure-threshold", "5", "--cb-success-threshold", "2", "--cb-timeout-duration-secs", "30",
        "--cb-window-duration-secs", "60",
    ]  # fmt: skip
    assert launch.env == {} and launch.secret_env == {}


def test_kubernetes_discovery_renders_the_selector_port_and_namespace() -> None:
    sets = [
        "router.discovery.selector={app.kubernetes.io/instance: llama, app.kubernetes.io/component: server}",
        "router.discovery.namespace=llm",
        "router.policy=round_robin",
        "router.retries=0",
        "router.circuit_breaker=false",
    ]
    argv = render_router(load_config(DEV_CONFIG, sets, environ={})).argv
    i = argv.index("--service-discovery")
    assert argv[i : i + 8] == [
        "--service-discovery", "--selector", "app.kubernetes.io/component=server", "app.kubernetes.io/instance=llama",
        "--service-discovery-port", "8000", "--service-discovery-namespace", "llm",
    ]  # fmt: skip
    assert "--worker-urls" not in argv and argv[argv.index("--policy") + 1] == "round_robin"
    assert "--disable-retries" in argv and "--disable-circuit-breaker" in argv
    assert not any(a.startswith(("--retry-max", "--cb-")) for a in argv)


def test_the_router_key_travels_by_environment_never_argv() -> None:
    config = load_config(DEV_CONFIG, ["router.api_key_env=FLEET_KEY"], environ={})
    launch = render_router(config, ["http://127.0.0.1:8001"], python="/usr/bin/python3")
    assert launch.argv[:3] == ["/usr/bin/python3", "-m", LAUNCHER_MODULE]
    assert launch.secret_env == {ROUTER_KEY_VAR: "FLEET_KEY"}
    assert "--api-key" not in launch.argv
    done = cli("router", "--config", str(DEV_CONFIG), "--set", "router.api_key_env=FLEET_KEY", *STATIC, "--dry-run")
    assert done.returncode == 2 and "router.api_key_env names $FLEET_KEY, but it is unset" in done.stderr
    secret = "fleet-" + os.urandom(4).hex()
    shown = cli(
        "router", "--config", str(DEV_CONFIG), "--set", "router.api_key_env=FLEET_KEY", *STATIC, "--dry-run",
        env={"FLEET_KEY": secret},
    )  # fmt: skip
    assert shown.returncode == 0 and f'{ROUTER_KEY_VAR}="$FLEET_KEY"' in shown.stdout and secret not in shown.stdout


def test_vllm_routers_own_parser_reads_the_rendered_command() -> None:
    """What we exec is a command line the pinned vllm-router accepts, with the values we meant."""
    from vllm_router.launch_router import parse_router_args

    sets = ["router.api_key_env=FLEET_KEY", "router.health_check_interval=3", "router.retries=4"]
    launch = render_router(load_config(DEV_CONFIG, sets, environ={}), ["http://10.0.0.5:8000"])
    args = parse_router_args(launch.argv[3:])  # after `python -m llama_ascend.router_launcher`
    assert (args.policy, args.port, args.worker_urls) == ("cache_aware", 8000, ["http://10.0.0.5:8000"])
    assert (args.health_check_interval_secs, args.retry_max_retries, args.prometheus_port) == (3, 4, 29000)
    assert args.api_key is None  # set by the launcher from the environment, not parsed
    discovery = render_router(load_config(DEV_CONFIG, ["router.discovery.selector={app: llama}"], environ={}))
    parsed = parse_router_args(discovery.argv[1:])
    assert parsed.service_discovery and parsed.selector == {"app": "llama"} and parsed.service_discovery_port == 8000


def test_where_the_workers_come_from_is_checked_all_at_once(tmp_path: Path) -> None:
    profile = tmp_path / "fleet.yaml"
    profile.write_text(yaml.safe_dump({"backend": "cpu", "router": {"workers": ["localhost:8001", "http://ok:8002"]}}))
    both = cli("router", "--config", str(profile), "--set", "router.discovery.selector={app: llama}", "--dry-run")
    assert both.returncode == 2 and "Traceback" not in both.stderr
    assert both.stderr.splitlines() == [
        "error: router: router.workers / --worker-url and router.discovery.selector are both set: the router takes "
        "its workers from one of them; drop the list or the selector",
        "error: router.workers: 'localhost:8001' is not a replica's base URL (expected http://HOST:PORT)",
    ]
    bad = cli("router", "--config", str(DEV_CONFIG), "--set", "router.policy=fastest", "--set", "router.port=0")
    assert bad.returncode == 2
    assert [line.split(": ")[2] for line in bad.stderr.splitlines()] == ["router.policy", "router.port"]


def test_render_shows_the_router_command() -> None:
    done = cli("render", "--config", str(DEV_CONFIG), "--router", *STATIC)
    assert done.returncode == 0 and done.stdout.startswith("vllm-router --host 0.0.0.0 --port 8000")


def test_the_launcher_hands_the_key_to_the_router(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher parses with vllm-router's parser and launches with the key from the environment."""
    import vllm_router.launch_router as upstream

    from llama_ascend import router_launcher

    launched = []
    monkeypatch.setattr(upstream, "launch_router", launched.append)
    monkeypatch.setenv(ROUTER_KEY_VAR, "k-123")
    assert router_launcher.main(["--worker-urls", "http://127.0.0.1:8001", "--port", "9000"]) == 0
    (args,) = launched
    assert (args.api_key, args.port, args.worker_urls) == ("k-123", 9000, ["http://127.0.0.1:8001"])
    assert ROUTER_KEY_VAR not in os.environ  # not inherited by anything the router starts
