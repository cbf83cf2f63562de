"""The fetch's tunables, read from the environment (defaults suit a 16 GB model over a WAN link)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from llama_ascend.errors import ConfigError
from llama_ascend.options import OFFLINE

# Tunables (environment; defaults suit a 16 GB model over a WAN link).
ENV_OFFLINE = OFFLINE.env  # 1: never touch the network (same as --offline)
ENV_METRICS = "LLAMA_ASCEND_FETCH_METRICS"  # path of the Prometheus textfile
ENV_RETRIES = "LLAMA_ASCEND_FETCH_RETRIES"  # retries per file after a network error or HTTP 5xx (default 5)
ENV_RETRY_MAX_DELAY = "LLAMA_ASCEND_FETCH_RETRY_MAX_DELAY"  # longest back-off between retries, seconds (default 30)
ENV_TIMEOUT = "LLAMA_ASCEND_FETCH_TIMEOUT"  # seconds without a byte before a read counts as timed out (default 60)
ENV_WORKERS = "LLAMA_ASCEND_FETCH_WORKERS"  # files downloaded at once (default 4)
ENV_LEASE_STALE = "LLAMA_ASCEND_FETCH_LEASE_STALE"  # seconds without a heartbeat before a lease is taken over (60)
ENV_LOG_INTERVAL = "LLAMA_ASCEND_FETCH_LOG_INTERVAL"  # seconds between progress lines when not on a terminal (15)
HASH_ATTEMPTS = 2  # a file whose digest does not match is fetched once more, then the fetch fails
DISK_RESERVE = 1 << 20


def env_number(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"${name}={raw!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"${name}={raw!r} must not be negative")
    return value
