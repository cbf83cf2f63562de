"""`llama-ascend probe`: one request that tells whether the local server is up, serving or warm, for the chart's
probes and the image's HEALTHCHECK.

Ready means warm: the first request after a start pays the kernels' JIT compilation on the NPU (vllm-ascend #7193),
so the startup probe passes only once a real 1-token completion came back, and the pod takes traffic only when it
answers at full speed.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_ascend.client import HTTPError, ServerClient
from llama_ascend.errors import CheckFailed, ConfigError

HEALTH_PATH = "/health"
COMPLETIONS_PATH = "/v1/completions"
WARM_PROMPT = "Hello"
# What each check must know; the config supplies whatever the options leave out.
NEEDS = {
    "health": ("port",),
    "ready": ("port", "api_key_env"),
    "warm": ("port", "model", "api_key_env"),
    "healthcheck": ("port", "model", "api_key_env"),
}
# A server bound to every interface is reached on the loopback of the same family.
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}
MARKER_PREFIX = "llama-ascend-warm-"


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    model: str | None
    api_key_env: str | None  # the variable that holds the key; None: the server needs none
    timeout: float

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def client(self) -> ServerClient:
        if not self.api_key_env:
            key, source = None, "the probe sends none: pass --api-key-env VAR or set the config's server.api_key_env"
        else:
            key = os.environ.get(self.api_key_env) or None
            source = f"from ${self.api_key_env}" if key else f"${self.api_key_env} is unset or empty here"
        return ServerClient(self.url, key, self.timeout, key_source=source)


def resolve_target(
    check: str,
    config_path: str | None,
    *,
    host: str | None,
    port: int | None,
    model: str | None,
    api_key_env: str | None,
    timeout: float,
) -> Target:
    """The options as given; the config (loaded only when an option the check needs is missing) fills the rest.
    `api_key_env` "" says the server needs no key."""
    given: dict[str, Any] = {"host": host, "port": port, "model": model, "api_key_env": api_key_env}
    missing = [name for name in NEEDS[check] if given[name] is None]
    if missing:
        if not config_path:
            flags = " and ".join("--" + name.replace("_", "-") for name in missing)
            raise ConfigError(
                f"probe {check} needs {flags}, or a config to read them from (--config FILE or $LLAMA_ASCEND_CONFIG)"
            )
        from llama_ascend.config import load_config

        config = load_config(config_path)
        from_config = {
            "host": LOOPBACK.get(config.server.host, config.server.host),
            "port": config.server.port,
            "model": config.model.served_name,
            "api_key_env": config.server.api_key_env,
        }
        given = {name: from_config[name] if value is None else value for name, value in given.items()}
    return Target(
        host=given["host"] or "127.0.0.1",
        port=int(given["port"]),
        model=given["model"],
        api_key_env=given["api_key_env"] or None,
        timeout=timeout,
    )


def health(target: Target) -> str:
    target.client().send("GET", HEALTH_PATH)
    return f"healthy: {target.url}{HEALTH_PATH} answers"


def ready(target: Target) -> str:
    return f"ready: {target.url} serves {target.client().served_models()}"


def warm(target: Target) -> str:
    """One real completion: 1 token, greedy. A 404 (the model is not served) names the models the server has."""
    client = target.client()
    body = {"model": target.model, "prompt": WARM_PROMPT, "max_tokens": 1, "temperature": 0}
    started = time.monotonic()
    try:
        reply = client.request("POST", COMPLETIONS_PATH, json=body)
    except HTTPError as exc:
        if exc.status != 404:
            raise
        raise CheckFailed(
            f"{target.url}: model {target.model!r} is not served; it serves {client.served_models()} "
            f"(vLLM: {exc.message})"
        ) from None
    seconds = time.monotonic() - started
    choices = reply.get("choices") or []
    if not choices or (reply.get("usage") or {}).get("completion_tokens", 0) < 1:
        raise CheckFailed(f"{target.url}{COMPLETIONS_PATH}: the reply holds no completion: {str(reply)[:300]}")
    return f"warm: {target.model} completed {WARM_PROMPT!r} with {choices[0].get('text')!r} in {seconds:.2f} s"


def server_instance(pid: int) -> str | None:
    """What tells this run of process `pid` from any other: the boot, the pid and its start time (clock ticks after
    boot, field 22 of /proc/PID/stat). None where /proc does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    start = stat.rpartition(")")[2].split()[19]  # the fields after the command name start at field 3
    return f"{boot}-{pid}-{start}"


def healthcheck(target: Target, pid: int = 1, marker_dir: str | None = None) -> str:
    """Warm until one completion succeeded for this server process, then only /health.

    The success is remembered in a marker file named after the server process (`pid`: PID 1, the server `serve`
    exec'd in the container). A restarted container keeps its /tmp but has a new PID 1, so it warms again; a marker
    kept by name only would call a cold server warm.
    """
    instance = server_instance(pid)
    marker = Path(marker_dir or tempfile.gettempdir()) / f"{MARKER_PREFIX}{instance}" if instance else None
    if marker is not None and marker.exists():
        return health(target)
    result = warm(target)
    if marker is None:
        return f"{result} (/proc/{pid}/stat is unreadable: every check warms)"
    try:
        marker.touch()
    except OSError as exc:
        return f"{result} (cannot write {marker}: {exc.strerror}; every check warms)"
    return result
