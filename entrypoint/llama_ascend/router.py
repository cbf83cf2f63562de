"""Config → the vLLM router's command line (vllm-project/router's `vllm-router`): one endpoint in front of the
replicas, routing by policy, health-checking and retrying them. Pure: no I/O, no environment reads. Like the
server, the router is exec'd: nothing of ours stays in the request path."""

from __future__ import annotations

import re
from collections.abc import Sequence

from llama_ascend.config import Config
from llama_ascend.errors import ConfigError
from llama_ascend.launch import Launch

ROUTER_COMMAND = "vllm-router"
# vllm-router takes its own key (what it sends to the workers) only as --api-key: with router.api_key_env set, this
# small launcher reads it from the environment and starts the same router in-process, so it is never in argv.
LAUNCHER_MODULE = "llama_ascend.router_launcher"
ROUTER_KEY_VAR = "LLAMA_ASCEND_ROUTER_API_KEY"
_URL = re.compile(r"https?://[^\s/:]+(:\d{1,5})?/?")


def worker_problems(config: Config, workers: Sequence[str]) -> list[str]:
    """Where the router gets its workers from: a static list or Kubernetes discovery, not both, not neither."""
    discovery = bool(config.router.discovery.selector)
    problems = []
    if workers and discovery:
        problems.append(
            "router: router.workers / --worker-url and router.discovery.selector are both set: the router takes its "
            "workers from one of them; drop the list or the selector"
        )
    if not workers and not discovery:
        problems.append(
            "router: no workers: list the replicas in router.workers (or --worker-url URL, repeatable), or set "
            "router.discovery.selector to find the model pods in Kubernetes"
        )
    problems += [
        f"router.workers: {url!r} is not a replica's base URL (expected http://HOST:PORT)"
        for url in workers
        if not _URL.fullmatch(url)
    ]
    return problems


def render_router(config: Config, worker_urls: Sequence[str] = (), python: str = "python3") -> Launch:
    """The router's argv and environment; ConfigError listing every problem with where the workers come from."""
    router = config.router
    workers = [*router.workers, *worker_urls]
    problems = worker_problems(config, workers)
    if problems:
        raise ConfigError("\n".join(problems))
    command = [python, "-m", LAUNCHER_MODULE] if router.api_key_env else [ROUTER_COMMAND]
    argv = [
        *command,
        "--host",
        router.host,
        "--port",
        str(router.port),
        "--policy",
        router.policy,
        "--prometheus-host",
        router.metrics_host,
        "--prometheus-port",
        str(router.metrics_port),
    ]
    if workers:
        argv += ["--worker-urls", *(url.rstrip("/") for url in workers)]
    else:
        discovery = router.discovery
        argv += ["--service-discovery", "--selector", *(f"{k}={v}" for k, v in sorted(discovery.selector.items()))]
        argv += ["--service-discovery-port", str(discovery.port or config.server.port)]
        if discovery.namespace:
            argv += ["--service-discovery-namespace", discovery.namespace]
    argv += [
        "--health-check-interval-secs",
        str(router.health_check_interval),
        "--health-failure-threshold",
        str(router.health_failure_threshold),
        "--health-success-threshold",
        str(router.health_success_threshold),
        "--health-check-timeout-secs",
        str(router.health_check_timeout),
        "--request-timeout-secs",
        str(router.request_timeout),
        "--worker-startup-timeout-secs",
        str(router.worker_startup_timeout),
    ]
    if router.retries:
        argv += [
            "--retry-max-retries",
            str(router.retries),
            "--retry-initial-backoff-ms",
            str(router.retry_initial_backoff_ms),
            "--retry-max-backoff-ms",
            str(router.retry_max_backoff_ms),
        ]
    else:
        argv.append("--disable-retries")
    if router.circuit_breaker:
        argv += [
            "--cb-failure-threshold",
            str(router.cb_failure_threshold),
            "--cb-success-threshold",
            str(router.cb_success_threshold),
            "--cb-timeout-duration-secs",
            str(router.cb_timeout),
            "--cb-window-duration-secs",
            str(router.cb_window),
        ]
    else:
        argv.append("--disable-circuit-breaker")
    secret = {ROUTER_KEY_VAR: router.api_key_env} if router.api_key_env else {}
    return Launch(argv=argv, env={}, secret_env=secret, secret_key="router.api_key_env")
