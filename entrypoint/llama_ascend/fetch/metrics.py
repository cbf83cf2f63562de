"""The fetch's Prometheus textfile on the volume (counters continue across runs); the exporter republishes it."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from llama_ascend.config import Config
from llama_ascend.fetch.results import FetchResult
from llama_ascend.fetch.settings import ENV_METRICS
from llama_ascend.paths import expand_path

log = logging.getLogger("llama_ascend.fetch")

METRICS_FILE = "llama_ascend_fetch.prom"
METRIC_BYTES = "llama_ascend_fetch_downloaded_bytes"  # counter: bytes moved over the network
METRIC_FILES = "llama_ascend_fetch_downloaded_files"  # counter: files downloaded
METRIC_FAILURES = "llama_ascend_fetch_failures"  # counter, label reason
METRIC_RUNS = "llama_ascend_fetch_runs"  # counter: fetches that had to do work (not the complete-cache fast path)
METRIC_DURATION = "llama_ascend_fetch_duration_seconds"  # gauge: the last run
METRIC_MODEL_BYTES = "llama_ascend_fetch_model_bytes"  # gauge: size of the complete model
METRIC_LAST_SUCCESS = "llama_ascend_fetch_last_success_timestamp_seconds"  # gauge
COUNTERS = (METRIC_BYTES, METRIC_FILES, METRIC_FAILURES, METRIC_RUNS)


def metrics_path(config: Config) -> Path | None:
    """$LLAMA_ASCEND_FETCH_METRICS, else `<model.path>/.metrics/llama_ascend_fetch.prom` for hub sources."""
    env = os.environ.get(ENV_METRICS, "").strip()
    if env:
        return Path(env).expanduser()
    if config.model.source == "local":
        return None
    return expand_path(config.model.path) / ".metrics" / METRICS_FILE


def write_metrics(config: Config, seconds: float, result: FetchResult | None, failure: str | None) -> None:
    """Add this run to the textfile: counters continue from the values already in the file."""
    path = metrics_path(config)
    if path is None:
        return
    from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    labels = ("source", "model")
    counters = {
        METRIC_BYTES: Counter(METRIC_BYTES, "Bytes downloaded from the hub", labels, registry=registry),
        METRIC_FILES: Counter(METRIC_FILES, "Files downloaded from the hub", labels, registry=registry),
        METRIC_FAILURES: Counter(METRIC_FAILURES, "Failed fetches by reason", (*labels, "reason"), registry=registry),
        METRIC_RUNS: Counter(METRIC_RUNS, "Fetches that had to download or verify", labels, registry=registry),
    }
    gauges = {
        METRIC_DURATION: Gauge(METRIC_DURATION, "Duration of the last fetch", labels, registry=registry),
        METRIC_MODEL_BYTES: Gauge(
            METRIC_MODEL_BYTES, "Size of the complete model on the volume", labels, registry=registry
        ),
        METRIC_LAST_SUCCESS: Gauge(
            METRIC_LAST_SUCCESS, "Unix time of the last successful fetch", labels, registry=registry
        ),
    }
    try:
        previous = path.read_text(encoding="utf-8") if path.exists() else ""
        for family in text_string_to_metric_families(previous):
            for sample in family.samples:
                name = sample.name.removesuffix("_total")
                if sample.name.endswith("_total") and name in counters:
                    counters[name].labels(**sample.labels).inc(sample.value)
                elif name in gauges:
                    gauges[name].labels(**sample.labels).set(sample.value)
    except (OSError, ValueError) as exc:
        log.warning("metrics: ignoring the unreadable %s (%s)", path, exc)
    key = {"source": config.model.source, "model": f"{config.model.id}@{config.model.effective_revision}"}
    counters[METRIC_RUNS].labels(**key).inc()
    gauges[METRIC_DURATION].labels(**key).set(seconds)
    if result is not None:
        counters[METRIC_BYTES].labels(**key).inc(result.bytes_downloaded)
        counters[METRIC_FILES].labels(**key).inc(result.files_downloaded)
        gauges[METRIC_MODEL_BYTES].labels(**key).set(result.bytes_total)
        gauges[METRIC_LAST_SUCCESS].labels(**key).set(time.time())
    if failure is not None:
        counters[METRIC_FAILURES].labels(**key, reason=failure).inc()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), registry)
    except OSError as exc:
        # When the volume itself is what failed, the fetch's own error already says so: one line, not two.
        level = logging.DEBUG if failure in ("volume", "disk") else logging.WARNING
        log.log(level, "metrics: cannot write %s (%s)", path, exc.strerror or exc)
