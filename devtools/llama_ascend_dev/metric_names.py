"""Every metric name the Grafana dashboard and the alerts use, and where each one is defined.

The dashboard (helm/llama-ascend/dashboards/llama-ascend.json) and the plain rules file
(helm/llama-ascend/monitoring/llama-ascend-rules.yaml, rendered from the chart) are read as shipped; the names come
out of their PromQL. `vllm:` names are checked against vLLM 0.18.0's own source: the source release the Dockerfile
builds (VLLM_SDIST_URL, verified by VLLM_SDIST_SHA256), downloaded and cached by llama_ascend_dev.ascend_pins.
Names vLLM removed (`vllm:gpu_cache_usage_perc`, ...) are refused by name. tests/test_monitoring.py runs the same
checks and, against the live servers, the other families (HTTP, exporter, router).

    python -m llama_ascend_dev.metric_names   # list the names, check the vllm: ones against the 0.18.0 source release
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from llama_ascend_dev.alert_rules import RULES
from llama_ascend_dev.dashboard import DASHBOARD
from llama_ascend_dev.downloads import Sdist, cached_download, http_client
from llama_ascend_dev.image_build import dockerfile_args

# Names vLLM removed, with what replaced them: anchors' dashboards still chart some of them and stay empty on 0.18.
REMOVED = {
    "vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc",
    "vllm:cpu_cache_usage_perc": "vllm:kv_cache_usage_perc (there is no CPU swap space in V1)",
    "vllm:gpu_prefix_cache_hit_rate": "vllm:prefix_cache_hits / vllm:prefix_cache_queries",
    "vllm:gpu_prefix_cache_hits": "vllm:prefix_cache_hits",
    "vllm:gpu_prefix_cache_queries": "vllm:prefix_cache_queries",
    "vllm:time_per_output_token_seconds": "vllm:inter_token_latency_seconds",
    "vllm:num_requests_swapped": "none (V1 does not swap)",
    "vllm:avg_prompt_throughput_toks_per_s": "rate(vllm:prompt_tokens_total[...])",
    "vllm:avg_generation_throughput_toks_per_s": "rate(vllm:generation_tokens_total[...])",
}
# Suffixes the exposition adds to a counter's or a histogram's base name.
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier that is not a function call, a $variable, part of a number or of a longer name.
_IDENT = re.compile(r"(?<![\w:$.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)")


def promql_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    return {name for name in _IDENT.findall(text) if name.lower() not in _KEYWORDS and name not in ("inf", "nan")}


def walk_panels(panels: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def dashboard_queries(path: Path = DASHBOARD) -> list[dict[str, Any]]:
    """Every panel target: row, panel title, refId, expr, instant."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    queries, row = [], ""
    for panel in walk_panels(dashboard["panels"]):
        if panel["type"] == "row":
            row = panel["title"]
            continue
        for target in panel.get("targets", []):
            queries.append(
                {
                    "row": row,
                    "panel": panel["title"],
                    "ref": target["refId"],
                    "expr": target["expr"],
                    "instant": bool(target.get("instant")),
                }
            )
    return queries


def dashboard_variable_queries(path: Path = DASHBOARD) -> list[str]:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    return [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]


def rule_queries(path: Path = RULES) -> list[dict[str, Any]]:
    rules = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [rule for group in rules["groups"] for rule in group["rules"]]


def used_names() -> dict[str, list[str]]:
    """metric name -> where it is used (panel or alert)."""
    used: dict[str, list[str]] = {}
    for query in dashboard_queries():
        for name in promql_names(query["expr"]):
            used.setdefault(name, []).append(f"panel {query['panel']!r} {query['ref']}")
    for definition in dashboard_variable_queries():
        for name in _LABEL_VALUES.findall(definition):
            used.setdefault(name, []).append(f"variable {definition!r}")
    for rule in rule_queries():
        for name in promql_names(rule["expr"]):
            used.setdefault(name, []).append(f"alert {rule['alert']}")
    return used


def base_names(name: str) -> list[str]:
    """The name and, for an exposed counter or histogram series, its base name."""
    return [name, *(name.removesuffix(s) for s in SUFFIXES if name.endswith(s))]


def known(name: str, defined: set[str]) -> bool:
    return any(candidate in defined for candidate in base_names(name))


def vllm_source_names(sdist: Sdist) -> set[str]:
    """Every `vllm:...` metric name in the source release's Python files (loggers, spec decode, KV connectors)."""
    names: set[str] = set()
    for member in sdist.names("vllm/"):
        if member.endswith(".py"):
            names.update(re.findall(r"[\"'](vllm:[a-z0-9_]+)[\"']", sdist.read(member)))
    return names


def vllm_sdist() -> Sdist:
    """vLLM 0.18.0's source release, downloaded once and verified (the pin checker's cache)."""
    pins = dockerfile_args()
    with http_client() as client:
        return Sdist(cached_download(client, pins["VLLM_SDIST_URL"], pins["VLLM_SDIST_SHA256"]))


def check_vllm(used: Iterable[str], source: set[str]) -> list[str]:
    problems = []
    for name in sorted(used):
        if name in REMOVED:
            problems.append(f"{name}: removed from vLLM, use {REMOVED[name]}")
        elif name.startswith("vllm:") and not known(name, source):
            problems.append(f"{name}: not defined in vLLM 0.18.0's source")
    return problems


def main() -> int:
    used = used_names()
    source = vllm_source_names(vllm_sdist())
    for name in sorted(used):
        family = "vLLM 0.18.0 source" if name.startswith("vllm:") else "live servers (tests/test_monitoring.py)"
        state = ("ok" if known(name, source) else "MISSING") if name.startswith("vllm:") else "-"
        print(f"{state:8} {name:55} {family}  ({len(used[name])} uses)")
    problems = check_vllm(used, source)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
