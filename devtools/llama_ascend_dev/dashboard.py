"""Generate helm/llama-ascend/dashboards/llama-ascend.json, the Grafana dashboard of a llama-ascend deployment.

The panels are declared below (title, PromQL, unit, what to check first) and laid out in rows: traffic, latency, load,
NPUs, weights and start, the router. Every query selects by the dashboard's variables, so the same JSON works behind
the chart's ServiceMonitor and behind a static scrape config that attaches the same labels (docs/monitoring.md):

- `datasource`: the Prometheus data source (never a hard-coded UID);
- `namespace`, `job`: the deployment (`job` is the Service name under the Prometheus Operator);
- `pod`: one or more replicas (a server pod and its exporter sidecar share the `pod` label);
- `router`: the `job` of the router's metrics, when a router runs in front of the replicas.

Metric names are those of vLLM 0.18.0 (`vllm/v1/metrics/loggers.py`), prometheus-fastapi-instrumentator (the HTTP
counters vLLM mounts), Huawei's npu-exporter (`llama-ascend exporter`), llama-ascend's fetch and preflight, and
vllm-router 0.1.17; tests/test_monitoring.py checks each against those sources and the live servers.

    python -m llama_ascend_dev.dashboard           # write the JSON
    python -m llama_ascend_dev.dashboard --check   # exit 1 if it is stale
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from llama_ascend_dev import chart_params

DASHBOARD = chart_params.CHART / "dashboards" / "llama-ascend.json"
UID = "llama-ascend"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# The selectors every query uses: one deployment, the chosen replicas; the router by its own job.
S = 'namespace=~"$namespace", job=~"$job", pod=~"$pod"'
R = 'namespace=~"$namespace", job=~"$router"'
RATE = "$__rate_interval"


@dataclass
class Target:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass
class Panel:
    title: str
    description: str
    targets: list[Target]
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 8
    height: int = 8
    mappings: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)
    min: float | None = None
    max: float | None = None


@dataclass
class Row:
    title: str
    panels: list[Panel]
    collapsed: bool = False


def quantiles(metric: str, by: str = "le") -> list[Target]:
    return [
        Target(f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{{{S}}}[{RATE}])))", f"p{round(q * 100)}")
        for q in (0.5, 0.9, 0.99)
    ]


HEALTH_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "1": {"text": "OK", "color": "green", "index": 0},
            "0": {"text": "unhealthy", "color": "red", "index": 1},
            "-1": {"text": "unknown", "color": "orange", "index": 2},
        },
    }
]
BOOL_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "1": {"text": "yes", "color": "green", "index": 0},
            "0": {"text": "no", "color": "red", "index": 1},
        },
    }
]
FAILED_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "passed", "color": "green", "index": 0},
            "1": {"text": "FAILED", "color": "red", "index": 1},
        },
    }
]
CB_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "closed", "color": "green", "index": 0},
            "1": {"text": "open", "color": "red", "index": 1},
            "2": {"text": "half-open", "color": "orange", "index": 2},
        },
    }
]

ROWS = [
    Row(
        "Traffic",
        [
            Panel(
                "Requests finished / s",
                "Requests the engine finished, by finish reason (vllm:request_success). `length` is max_tokens reached, "
                "`stop` a stop token, `abort` a client that went away, `error` an engine error.",
                [
                    Target(
                        f"sum by (pod, finished_reason) (rate(vllm:request_success_total{{{S}}}[{RATE}]))",
                        "{{pod}} {{finished_reason}}",
                    )
                ],
                unit="reqps",
            ),
            Panel(
                "HTTP responses / s by status",
                "OpenAI API responses by handler and status class (prometheus-fastapi-instrumentator). A 401 from the "
                "API-key check is answered before the instrumentation and is not counted here.",
                [
                    Target(
                        f'sum by (pod, handler, status) (rate(http_requests_total{{{S}, handler=~"/v1/.*"}}[{RATE}]))',
                        "{{pod}} {{handler}} {{status}}",
                    )
                ],
                unit="reqps",
            ),
            Panel(
                "Error ratio (5xx)",
                "Share of API responses that are server errors (5xx), per replica; 0 when there are none. First check: "
                "the server log (`kubectl logs POD -c server`) for engine errors.",
                [
                    Target(
                        f'(sum by (pod) (rate(http_requests_total{{{S}, status="5xx"}}[{RATE}])) or sum by (pod) (rate(http_requests_total{{{S}}}[{RATE}])) * 0)'
                        f" / sum by (pod) (rate(http_requests_total{{{S}}}[{RATE}]))",
                        "{{pod}}",
                    )
                ],
                unit="percentunit",
                min=0,
                thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")],
            ),
            Panel(
                "Client errors (4xx) / s",
                "Requests refused as invalid (unknown model, too many tokens, bad JSON), per handler.",
                [
                    Target(
                        f'sum by (pod, handler) (rate(http_requests_total{{{S}, status="4xx"}}[{RATE}]))',
                        "{{pod}} {{handler}}",
                    )
                ],
                unit="reqps",
            ),
            Panel(
                "Tokens / s in and out",
                "Prompt tokens prefilled and tokens generated per second (vllm:prompt_tokens, vllm:generation_tokens).",
                [
                    Target(f"sum by (pod) (rate(vllm:prompt_tokens_total{{{S}}}[{RATE}]))", "{{pod}} prompt"),
                    Target(f"sum by (pod) (rate(vllm:generation_tokens_total{{{S}}}[{RATE}]))", "{{pod}} generated"),
                ],
                unit="short",
                width=16,
            ),
        ],
    ),
    Row(
        "Latency",
        [
            Panel(
                "Time to first token",
                "p50 / p90 / p99 of vllm:time_to_first_token_seconds over the selected replicas: queueing plus prefill. "
                "Rising with the waiting queue means the replicas are saturated.",
                quantiles("vllm:time_to_first_token_seconds"),
                unit="s",
            ),
            Panel(
                "Inter-token latency",
                "p50 / p90 / p99 of vllm:inter_token_latency_seconds: the time between two streamed tokens (decode "
                "step); grows with the batch size.",
                quantiles("vllm:inter_token_latency_seconds"),
                unit="s",
            ),
            Panel(
                "End-to-end request latency",
                "p50 / p90 / p99 of vllm:e2e_request_latency_seconds, from arrival to the last token.",
                quantiles("vllm:e2e_request_latency_seconds"),
                unit="s",
            ),
            Panel(
                "Queue time",
                "p50 / p90 / p99 of vllm:request_queue_time_seconds: how long requests waited before their first "
                "scheduling.",
                quantiles("vllm:request_queue_time_seconds"),
                unit="s",
            ),
        ],
    ),
    Row(
        "Load",
        [
            Panel(
                "Requests running and waiting",
                "Requests in the batch (at most config.server.max_num_seqs) and requests queued behind it. A queue "
                "that stays above 0 needs more replicas (autoscaling.hpa / autoscaling.keda).",
                [
                    Target(f"sum by (pod) (vllm:num_requests_running{{{S}}})", "{{pod}} running"),
                    Target(f"sum by (pod) (vllm:num_requests_waiting{{{S}}})", "{{pod}} waiting"),
                ],
            ),
            Panel(
                "KV-cache usage",
                "Share of the KV-cache blocks in use (vllm:kv_cache_usage_perc; 1 = full). Near 1, new requests wait "
                "and running ones are preempted.",
                [Target(f"max by (pod) (vllm:kv_cache_usage_perc{{{S}}})", "{{pod}}")],
                unit="percentunit",
                min=0,
                max=1,
                thresholds=[(None, "green"), (0.8, "orange"), (0.9, "red")],
            ),
            Panel(
                "Preemptions / s",
                "Running requests the scheduler evicted to free KV cache (vllm:num_preemptions); they are recomputed "
                "later. Sustained preemptions: lower max_num_seqs or max_model_len, or add cards.",
                [Target(f"sum by (pod) (rate(vllm:num_preemptions_total{{{S}}}[{RATE}]))", "{{pod}}")],
                unit="short",
            ),
            Panel(
                "Prefix-cache hit rate",
                "Prompt tokens served from the prefix cache over tokens looked up (vllm:prefix_cache_hits / "
                "vllm:prefix_cache_queries).",
                [
                    Target(
                        f"sum by (pod) (rate(vllm:prefix_cache_hits_total{{{S}}}[{RATE}])) / sum by (pod) (rate(vllm:prefix_cache_queries_total{{{S}}}[{RATE}]))",
                        "{{pod}}",
                    )
                ],
                unit="percentunit",
                min=0,
                max=1,
            ),
        ],
    ),
    Row(
        "NPUs (llama-ascend exporter, npu-exporter names)",
        [
            Panel(
                "HBM used and total",
                "HBM per card in MB as npu-smi reports it (npu_chip_info_hbm_used_memory / _total_memory). vLLM takes "
                "gpu_memory_utilization of the card at start, so ~91 % used is normal while serving.",
                [
                    Target(f"npu_chip_info_hbm_used_memory{{{S}}}", "{{pod}} NPU {{id}} used"),
                    Target(f"npu_chip_info_hbm_total_memory{{{S}}}", "{{pod}} NPU {{id}} total"),
                ],
                unit="decmbytes",
            ),
            Panel(
                "AI Core utilization",
                "AICore(%) per card (npu_chip_info_utilization).",
                [Target(f"npu_chip_info_utilization{{{S}}}", "{{pod}} NPU {{id}}")],
                unit="percent",
                min=0,
                max=100,
            ),
            Panel(
                "Power",
                "Board power per card in W (npu_chip_info_power; absent where npu-smi shows NA).",
                [Target(f"npu_chip_info_power{{{S}}}", "{{pod}} NPU {{id}}")],
                unit="watt",
            ),
            Panel(
                "Temperature",
                "Chip temperature per card in °C (npu_chip_info_temperature).",
                [Target(f"npu_chip_info_temperature{{{S}}}", "{{pod}} NPU {{id}}")],
                unit="celsius",
                thresholds=[(None, "green"), (75, "orange"), (85, "red")],
            ),
            Panel(
                "Card health",
                "npu_chip_info_health_status per card: 1 OK, 0 Warning/Alarm/Critical, -1 unknown; and whether the last "
                "npu-smi read worked (llama_ascend_npu_smi_up). First check: `npu-smi info -t health -i N` on the node.",
                [
                    Target(f"npu_chip_info_health_status{{{S}}}", "{{pod}} NPU {{id}}"),
                    Target(f"llama_ascend_npu_smi_up{{{S}}}", "{{pod}} npu-smi readable"),
                ],
                kind="state-timeline",
                mappings=HEALTH_MAPPINGS,
                width=16,
            ),
        ],
    ),
    Row(
        "Weights and start",
        [
            Panel(
                "Weights complete, preflight passed",
                "llama_ascend_model_weights_complete (every shard on the volume) and llama_ascend_preflight_passed "
                "(the last preflight `serve` ran).",
                [
                    Target(f"max by (pod) (llama_ascend_model_weights_complete{{{S}}})", "{{pod}} weights complete"),
                    Target(f"max by (pod) (llama_ascend_preflight_passed{{{S}}})", "{{pod}} preflight passed"),
                ],
                kind="stat",
                mappings=BOOL_MAPPINGS,
            ),
            Panel(
                "Preflight checks",
                "Each check of the last preflight (llama_ascend_preflight_check_failed): what failed is what to fix "
                "(docs/operate.md lists the fix per check).",
                [Target(f"max by (pod, check) (llama_ascend_preflight_check_failed{{{S}}})", "{{pod}} {{check}}")],
                kind="state-timeline",
                mappings=FAILED_MAPPINGS,
                width=16,
            ),
            Panel(
                "Fetch: bytes downloaded and model size",
                "Bytes fetch moved from the hub (counter over all runs) and the size of the complete model "
                "(llama_ascend_fetch_downloaded_bytes, llama_ascend_fetch_model_bytes).",
                [
                    Target(
                        f"max by (pod, model) (llama_ascend_fetch_downloaded_bytes_total{{{S}}})", "{{pod}} downloaded"
                    ),
                    Target(f"max by (pod, model) (llama_ascend_fetch_model_bytes{{{S}}})", "{{pod}} model size"),
                ],
                unit="bytes",
            ),
            Panel(
                "Fetch: failures by reason",
                "Failed fetches (llama_ascend_fetch_failures) by reason, total over the volume's life. First check: "
                "the fetch container's log (`kubectl logs POD -c fetch`).",
                [Target(f"max by (pod, reason) (llama_ascend_fetch_failures_total{{{S}}})", "{{pod}} {{reason}}")],
            ),
            Panel(
                "Fetch: last run",
                "Duration of the last fetch and the time since the last successful one.",
                [
                    Target(f"max by (pod) (llama_ascend_fetch_duration_seconds{{{S}}})", "{{pod}} last duration"),
                    Target(
                        f"time() - max by (pod) (llama_ascend_fetch_last_success_timestamp_seconds{{{S}}})",
                        "{{pod}} since success",
                    ),
                ],
                kind="stat",
                unit="s",
            ),
            Panel(
                "Time to ready",
                "Seconds from the server process start (process_start_time_seconds: `serve` execs vLLM, so it is serve's "
                "start) to the first successful scrape of vLLM's /metrics, which vLLM serves only once the engine is up. "
                "For processes started in the time range, accurate to the query step; it measures readiness only when "
                "Prometheus was already scraping the pod while it started (it is: the ServiceMonitor targets pods that "
                "are not ready yet).",
                [
                    Target(
                        f"(min_over_time(timestamp(process_start_time_seconds{{{S}}})[$__range:$__interval]) - min_over_time(process_start_time_seconds{{{S}}}[$__range]))"
                        f" and (min_over_time(process_start_time_seconds{{{S}}}[$__range]) > time() - $__range_s)",
                        "{{pod}}",
                        instant=True,
                    )
                ],
                kind="stat",
                unit="s",
            ),
            Panel(
                "Server starts",
                "Server processes started in the time range per replica (changes of process_start_time_seconds) and "
                "their uptime. Restarts without a rollout: check `kubectl describe pod` for OOMKilled or probe failures.",
                [
                    Target(f"changes(process_start_time_seconds{{{S}}}[$__range]) + 1", "{{pod}} starts", instant=True),
                    Target(f"time() - process_start_time_seconds{{{S}}}", "{{pod}} uptime", instant=True),
                ],
                kind="stat",
                width=16,
            ),
        ],
    ),
    Row(
        "Router (when enabled)",
        [
            Panel(
                "Requests / s per worker",
                "Requests the router sent to each replica (vllm_router_processed_requests).",
                [Target(f"sum by (worker) (rate(vllm_router_processed_requests_total{{{R}}}[{RATE}]))", "{{worker}}")],
                unit="reqps",
            ),
            Panel(
                "Worker health",
                "The router's health check per worker (vllm_router_worker_health: 1 healthy, 0 unhealthy) and the "
                "workers it routes to (vllm_router_active_workers).",
                [
                    Target(f"max by (worker) (vllm_router_worker_health{{{R}}})", "{{worker}}"),
                    Target(f"sum by (pod) (vllm_router_active_workers{{{R}}})", "{{pod}} active workers"),
                ],
                kind="state-timeline",
                mappings=BOOL_MAPPINGS,
            ),
            Panel(
                "Circuit breaker state",
                "Per worker: 0 closed (traffic flows), 1 open (the worker failed too often, no traffic), 2 half-open "
                "(probing) (vllm_router_cb_state).",
                [Target(f"max by (worker) (vllm_router_cb_state{{{R}}})", "{{worker}}")],
                kind="state-timeline",
                mappings=CB_MAPPINGS,
            ),
        ],
        collapsed=True,
    ),
]


def _variable(name: str, label: str, query: str, multi: bool = False, include_all: bool = False) -> dict[str, Any]:
    variable: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable", "qryType": 1},
        "refresh": 2,
        "sort": 1,
        "regex": "",
        "hide": 0,
        "multi": multi,
        "includeAll": include_all,
        "current": {},
        "options": [],
    }
    if include_all:
        variable["allValue"] = ".*"
        variable["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return variable


def templating() -> dict[str, Any]:
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "regex": "",
                "hide": 0,
                "refresh": 1,
                "multi": False,
                "includeAll": False,
                "current": {},
                "options": [],
            },
            _variable("namespace", "Namespace", "label_values(vllm:num_requests_running, namespace)"),
            _variable(
                "job", "Deployment (job)", 'label_values(vllm:num_requests_running{namespace=~"$namespace"}, job)'
            ),
            _variable(
                "pod",
                "Replica (pod)",
                'label_values(vllm:num_requests_running{namespace=~"$namespace", job=~"$job"}, pod)',
                multi=True,
                include_all=True,
            ),
            _variable(
                "router",
                "Router (job)",
                'label_values(vllm_router_active_workers{namespace=~"$namespace"}, job)',
                multi=True,
                include_all=True,
            ),
        ]
    }


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for index, target in enumerate(panel.targets):
        targets.append(
            {
                "datasource": DATASOURCE,
                "expr": target.expr,
                "legendFormat": target.legend,
                "refId": chr(ord("A") + index),
                "range": not target.instant,
                "instant": target.instant,
                "editorMode": "code",
            }
        )
    defaults: dict[str, Any] = {"unit": panel.unit, "mappings": panel.mappings}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    steps = panel.thresholds or [(None, "green")]
    defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}
    if panel.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    options: dict[str, Any] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
    if panel.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value"}
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets,
    }


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    panel_id, y = 1, 0
    for row in ROWS:
        row_json: dict[str, Any] = {
            "id": panel_id,
            "type": "row",
            "title": row.title,
            "collapsed": row.collapsed,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        }
        panel_id, y = panel_id + 1, y + 1
        panels.append(row_json)
        x, line_height = 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + line_height
                line_height = 0
            child = _panel_json(panel, panel_id, x, y)
            panel_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
            # A collapsed row carries its panels; an open row is followed by them.
            (row_json["panels"] if row.collapsed else panels).append(child)
        y += line_height
    return {
        "__comment": "Generated by llama_ascend_dev.dashboard; do not edit. docs/monitoring.md explains the variables.",
        "uid": UID,
        "title": "llama-ascend: Llama on Ascend NPUs (vLLM)",
        "description": "Traffic, latency, load, NPUs, weights and start of a llama-ascend deployment, and its router.",
        "tags": ["llama-ascend", "vllm", "ascend"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "links": [],
        "annotations": {"list": []},
        "templating": templating(),
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    return chart_params.generator_main(argv, __spec__.name, {DASHBOARD: render})


if __name__ == "__main__":
    sys.exit(main())
