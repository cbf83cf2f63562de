"""Generate helm/llama-ascend/values.schema.json: the entrypoint's config schema for `config:` plus the chart's keys;
and helm/llama-ascend/files/config-defaults.json: the config model's defaults, which the templates read instead of
restating them (values.schema.json is not readable from templates).

`config` gets exactly `llama_ascend.config.config_schema()` (the schema `llama-ascend schema` writes to
config/schema.json), with its `$ref`s inlined so Helm 3's and Helm 4's validators read it alike. The chart's own keys
take their description from the `## @param` comment in values.yaml and their type from the default there, refined
below where a type alone says too little (enums, ranges, nullables). Unknown keys are errors at every level the
chart owns; Kubernetes pass-through objects (resources, affinity, ...) are left to the API server.

    python -m llama_ascend_dev.chart_schema           # write both
    python -m llama_ascend_dev.chart_schema --check   # exit 1 if one is stale
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from llama_ascend.config import Config
from llama_ascend.config import config_schema as entrypoint_schema
from llama_ascend_dev import chart_params

SCHEMA = chart_params.CHART / "values.schema.json"
CONFIG_DEFAULTS = chart_params.CHART / "files" / "config-defaults.json"

QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
INT_OR_PERCENT = {"type": ["integer", "string"], "pattern": r"^([0-9]+%?)?$"}

# Refinements of the type inferred from each default. Merged over {"type": ..., "description": ...}.
REFINE: dict[str, dict[str, Any]] = {
    "workloadKind": {"enum": ["Deployment", "StatefulSet"]},
    "router.replicaCount": {"minimum": 1},
    "inferencePool.endpointPickerRef.portNumber": PORT,
    "inferencePool.endpointPickerRef.failureMode": {"enum": ["FailOpen", "FailClose"]},
    "replicaCount": {"minimum": 0},
    "image.repository": {"minLength": 1},
    "image.digest": {"pattern": r"^(sha256:[a-f0-9]{64})?$"},
    "image.pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "image.pullSecrets": {"items": {"type": "string"}},
    "updateStrategy": {
        "required": ["type"],
        "properties": {
            "type": {"enum": ["RollingUpdate", "Recreate", "OnDelete"]},
            "rollingUpdate": {"type": "object"},
        },
    },
    "podManagementPolicy": {"enum": ["OrderedReady", "Parallel"]},
    "revisionHistoryLimit": {"minimum": 0},
    "progressDeadlineSeconds": {"minimum": 1},
    "npu.resourceName": {"pattern": r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"},
    "ascend.driverMounts.paths": {"items": {"type": "string", "pattern": "^/"}},
    "shm.sizeLimit": QUANTITY,
    "tmpSizeLimit": QUANTITY,
    "persistence.mountPath": {"pattern": "^/[^:]*$"},
    "persistence.size": QUANTITY,
    "persistence.accessModes": {
        "minItems": 1,
        "items": {"enum": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]},
    },
    "fetch.extraArgs": {"items": {"type": "string"}},
    "hfToken.key": {"minLength": 1},
    "apiKey.key": {"minLength": 1},
    "startupProbe.periodSeconds": {"minimum": 1},
    "startupProbe.timeoutSeconds": {"minimum": 1},
    "startupProbe.loadBudgetSeconds": {"minimum": 0},
    "startupProbe.graphCaptureBudgetSeconds": {"minimum": 0},
    "readinessProbe.path": {"pattern": "^/"},
    "readinessProbe.periodSeconds": {"minimum": 1},
    "readinessProbe.timeoutSeconds": {"minimum": 1},
    "readinessProbe.failureThreshold": {"minimum": 1},
    "livenessProbe.path": {"pattern": "^/"},
    "livenessProbe.periodSeconds": {"minimum": 1},
    "livenessProbe.timeoutSeconds": {"minimum": 1},
    "livenessProbe.failureThreshold": {"minimum": 1},
    "preStopSleepSeconds": {"minimum": 0},
    "terminationGracePeriodSeconds": {"type": ["integer", "null"], "minimum": 0},
    "podSecurityContext.runAsUser": {"minimum": 0},
    "podSecurityContext.runAsGroup": {"minimum": 0},
    "podSecurityContext.fsGroup": {"minimum": 0},
    "podSecurityContext.fsGroupChangePolicy": {"enum": ["OnRootMismatch", "Always"]},
    "podSecurityContext.supplementalGroups": {"items": {"type": "integer", "minimum": 0}},
    "networkPolicy.allowedClients": {"items": {"type": "object"}},
    "service.type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    "service.port": PORT,
    "ingress.hosts": {
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["host", "paths"],
            "properties": {
                "host": {"type": "string"},
                "paths": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["path", "pathType"],
                        "properties": {
                            "path": {"type": "string", "pattern": "^/"},
                            "pathType": {"enum": ["Prefix", "Exact", "ImplementationSpecific"]},
                        },
                    },
                },
            },
        }
    },
    "exporter.port": PORT,
    "exporter.args": {"items": {"type": "string"}},
    "autoscaling.hpa.minReplicas": {"minimum": 1},
    "autoscaling.hpa.maxReplicas": {"minimum": 1},
    "autoscaling.hpa.metricName": {"minLength": 1},
    "autoscaling.hpa.targetAverageValue": {"type": ["string", "number"]},
    "autoscaling.keda.threshold": {"type": ["string", "number"]},
    "autoscaling.keda.minReplicaCount": {"minimum": 0},
    "autoscaling.keda.maxReplicaCount": {"minimum": 1},
    "autoscaling.keda.pollingInterval": {"minimum": 1},
    "autoscaling.keda.cooldownPeriod": {"minimum": 0},
    "pdb.minAvailable": INT_OR_PERCENT,
    "pdb.maxUnavailable": INT_OR_PERCENT,
    "extraArgs": {"items": {"type": "string"}},
    "dashboards.labels": {"additionalProperties": {"type": "string"}},
    "dashboards.annotations": {"additionalProperties": {"type": "string"}},
    "prometheusRule.labels": {"additionalProperties": {"type": "string"}},
    "prometheusRule.additionalLabels": {"additionalProperties": {"type": "string"}},
    "prometheusRule.runbookUrl": {"pattern": "^(https?://.+)?$"},
}

# The alerts of templates/_monitoring.tpl: each `enabled`, `for` and `severity`, plus its thresholds.
PROMETHEUS_DURATION = {"type": "string", "pattern": r"^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"}
_FRACTION = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
_ALERT_THRESHOLDS: dict[str, dict[str, Any]] = {
    "targetDown": {},
    "noReadyReplica": {},
    "requestsWaiting": {"threshold": {"type": "number", "minimum": 0}},
    "kvCacheHigh": {"threshold": _FRACTION},
    "preemptions": {"threshold": {"type": "number", "minimum": 0}, "window": PROMETHEUS_DURATION},
    "ttftHigh": {"sloSeconds": {"type": "number", "exclusiveMinimum": 0}},
    "errorRatio": {"threshold": _FRACTION},
    "npuUnhealthy": {},
    "npuSmiDown": {},
    "hbmNearFull": {"threshold": _FRACTION},
    "npuTemperatureHigh": {"celsius": {"type": "number", "exclusiveMinimum": 0}},
    "fetchFailed": {},
    "preflightFailed": {},
    "routerNoHealthyWorker": {},
}
for _name, _thresholds in _ALERT_THRESHOLDS.items():
    REFINE[f"prometheusRule.alerts.{_name}"] = {
        "additionalProperties": False,
        "properties": {
            "enabled": {"type": "boolean"},
            "for": PROMETHEUS_DURATION,
            "severity": {"enum": ["critical", "warning", "info"]},
            **_thresholds,
        },
    }


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise ValueError(f"cannot infer a type from {value!r}: add the key to REFINE in {Path(__file__).name}")


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace every `{"$ref": "#/$defs/X"}` by the definition (the config models are not recursive)."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                name = node["$ref"].removeprefix("#/$defs/")
                merged = {**walk(copy.deepcopy(defs[name])), **{k: walk(v) for k, v in node.items() if k != "$ref"}}
                return merged
            return {k: walk(v) for k, v in node.items() if k not in ("$defs", "$schema")}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def strip_titles(node: Any, in_properties: bool = False) -> Any:
    """Drop pydantic's generated `title`s (noise in error messages); property *names* are kept."""
    if isinstance(node, dict):
        return {
            k: strip_titles(v, in_properties=(k == "properties" and not in_properties))
            for k, v in node.items()
            if in_properties or k != "title"
        }
    if isinstance(node, list):
        return [strip_titles(v) for v in node]
    return node


def config_schema() -> dict[str, Any]:
    schema = strip_titles(inline_refs(entrypoint_schema()))
    schema.pop("title", None)
    return schema


def _key_schema(key: str, param: chart_params.Param | None, value: Any, params: dict[str, chart_params.Param]) -> dict:
    if param is None:  # an intermediate mapping: its documented children, nothing else
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                name: _key_schema(f"{key}.{name}", params.get(f"{key}.{name}"), child, params)
                for name, child in value.items()
            },
        }
    refined = REFINE.get(key, {})
    schema: dict[str, Any] = {"description": param.description}
    if "type" not in refined:
        schema["type"] = _json_type(value)
    schema.update(refined)
    if isinstance(value, dict) and value and any(k.startswith(f"{key}.") for k in params):
        # A documented mapping whose children are documented too: the chart owns its keys.
        schema["additionalProperties"] = False
        schema["properties"] = {
            name: _key_schema(f"{key}.{name}", params.get(f"{key}.{name}") or _inherit(param, child), child, params)
            for name, child in value.items()
        }
    return schema


def _inherit(parent: chart_params.Param, value: Any) -> chart_params.Param:
    return chart_params.Param(parent.key, parent.description, value)


def build() -> dict[str, Any]:
    chart = chart_params.load()
    params = chart.params
    properties: dict[str, Any] = {}
    for name, value in chart.values.items():
        if name == "config":
            properties["config"] = {**config_schema(), "description": params["config"].description}
        else:
            properties[name] = _key_schema(name, params.get(name), value, params)
    # `global` is what a parent chart passes to every subchart.
    properties["global"] = {"type": "object", "description": "Values a parent chart shares with its subcharts."}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "llama-ascend chart values",
        "description": "Generated by llama_ascend_dev.chart_schema from llama_ascend.config and values.yaml; do not edit.",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def render_defaults() -> str:
    return json.dumps(Config().model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    outputs = {SCHEMA: render, CONFIG_DEFAULTS: render_defaults}
    return chart_params.generator_main(argv, __spec__.name, outputs)


if __name__ == "__main__":
    sys.exit(main())
