"""The Helm chart helm/llama-ascend, rendered by the real Helm 3 and Helm 4 binaries.

Every value set in helm/llama-ascend/ci/ (plus the defaults) is rendered with both Helms, validated offline against
the Kubernetes schemas of three minor versions (kubernetes-validate --strict), and the objects are asserted. The
tools come from llama_ascend_dev.helm_tools (`make helm-tools`); without them these tests skip and say so.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_ascend_dev import ROOT
from llama_ascend_dev import helm_tools as tools

CHART = ROOT / "helm" / "llama-ascend"

HELMS = ("helm3", "helm4")
KUBE_VERSIONS = ("1.29", "1.33", "1.37")  # the chart's floor (Chart.yaml kubeVersion), a middle one, the newest
RENDER_KUBE_VERSION = "1.33.0"
VALUE_SETS = ("default", *sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml")))
RELEASE, NAMESPACE = "llama", "llm"
FULLNAME = f"{RELEASE}-llama-ascend"
# No CRD schemas ship offline; asserted structurally below.
CRD_KINDS = {"ServiceMonitor", "ScaledObject", "PrometheusRule", "InferencePool"}

# checkov findings we accept, each with its reason. Anything else failing fails the test.
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit on purpose: CFS throttling stalls token streaming; the request reserves the cores",
    "CKV_K8S_15": "pullPolicy IfNotPresent: the image carries CANN + vLLM (many GB) and is versioned by tag/digest",
    "CKV_K8S_35": "vLLM reads the API key only from the environment (VLLM_API_KEY); it comes from a secretKeyRef, "
    "never from args or the ConfigMap",
    "CKV_K8S_40": "uid/gid 1000 is the image's HwHiAiUser, the owner of the Ascend driver files on the hosts; a high "
    "UID would lose access to the driver and device nodes",
    "CKV_K8S_43": "image digest is optional: set image.digest where the registry is known (tested below)",
}
# The helm test pod skips the probe and NetworkPolicy checks in its own annotations (templates/tests/smoke.yaml).


def need(tool: str) -> Path:
    path = tools.find(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed: run `make helm-tools`")
    return path


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that rejects duplicate keys (PyYAML keeps the last one silently; the API server would not)."""


def _construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def values_file(value_set: str) -> Path | None:
    return None if value_set == "default" else CHART / "ci" / f"{value_set}-values.yaml"


def helm(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(need(tool)), *args], capture_output=True, text=True, timeout=120)


def template(tool: str, *args: str, kube_version: str = RENDER_KUBE_VERSION) -> subprocess.CompletedProcess[str]:
    return helm(tool, "template", RELEASE, str(CHART), "-n", NAMESPACE, "--kube-version", kube_version, *args)


@functools.cache
def rendered_text(tool: str, value_set: str, extra: tuple[str, ...] = ()) -> str:
    path = values_file(value_set)
    proc = template(tool, *(["-f", str(path)] if path else []), *extra)
    assert proc.returncode == 0, f"helm template {value_set} {extra} failed:\n{proc.stderr}"
    return proc.stdout


def render(value_set: str = "default", *extra: str, tool: str = "helm4") -> list[dict[str, Any]]:
    docs = yaml.load_all(rendered_text(tool, value_set, tuple(extra)), Loader=UniqueKeyLoader)
    return [doc for doc in docs if doc]


def merged_values(value_set: str) -> dict[str, Any]:
    """values.yaml with the value set merged the way Helm merges: maps deep, everything else replaced."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in over.items()}}
        return copy.deepcopy(over)

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    path = values_file(value_set)
    return merge(values, yaml.safe_load(path.read_text())) if path else values


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The model server's Deployment or StatefulSet (with router.enabled there is the router's Deployment too)."""
    found = [
        d
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == "server"
    ]
    assert len(found) == 1
    return found[0]


def container(pod_spec: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    for c in pod_spec.get("initContainers" if init else "containers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no {'init ' if init else ''}container {name!r}")


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            specs.append((f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            specs.append((f"Pod/{d['metadata']['name']}", d["spec"]))
    return specs


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


GOLDEN = ROOT / "tests" / "golden" / "chart"
UPDATE_GOLDEN = "LLAMA_ASCEND_UPDATE_GOLDEN"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rendered_chart_matches_its_golden_file(value_set: str) -> None:
    """What each value set renders, byte for byte: a template change that alters the objects shows up here as a diff
    to review (rewrite with LLAMA_ASCEND_UPDATE_GOLDEN=1 when the change is meant)."""
    import os

    golden = GOLDEN / f"{value_set}.yaml"
    text = rendered_text("helm4", value_set)
    if os.environ.get(UPDATE_GOLDEN) == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no {golden.relative_to(ROOT)}: render it with {UPDATE_GOLDEN}=1"
    assert text == golden.read_text(), f"{value_set} renders differently from {golden.relative_to(ROOT)}"


# Lint, render under both Helms, validate against Kubernetes ------------------------------------------------------


@pytest.mark.parametrize("tool", HELMS)
def test_lint_strict_every_value_set(tool: str) -> None:
    for value_set in VALUE_SETS:
        path = values_file(value_set)
        proc = helm(tool, "lint", "--strict", str(CHART), *(["-f", str(path)] if path else []))
        assert proc.returncode == 0, f"helm lint --strict ({tool}, {value_set}):\n{proc.stdout}\n{proc.stderr}"
        assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm3_and_helm4_render_the_same(value_set: str) -> None:
    assert rendered_text("helm3", value_set) == rendered_text("helm4", value_set)


@pytest.fixture(scope="module")
def kubernetes_validate():
    import kubernetes_validate as kv
    from kubernetes_validate import utils

    # Each validate() re-reads the multi-megabyte _definitions.json; read every schema file once.
    original = utils.schema_contents
    utils.schema_contents = functools.lru_cache(maxsize=None)(original)
    yield kv
    utils.schema_contents = original


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_object_validates_against_kubernetes(value_set: str, kubernetes_validate: Any) -> None:
    for version in KUBE_VERSIONS:
        docs = render(value_set, "--kube-version", f"{version}.0")
        assert docs, "nothing rendered"
        for doc in docs:
            where = f"{value_set}: {doc['kind']}/{doc['metadata']['name']} on Kubernetes {version}"
            if doc["kind"] in CRD_KINDS:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{where}: {path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                pytest.fail(f"{where}: {exc.message}")


def test_strict_validation_rejects_an_unknown_field(kubernetes_validate: Any) -> None:
    """The validator is not vacuous: a misspelt field in a rendered Deployment fails."""
    deployment = copy.deepcopy(workload(render()))
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_renders_no_whitespace_only_lines(value_set: str) -> None:
    text = rendered_text("helm4", value_set)
    assert not [line for line in text.splitlines() if line and not line.strip()], (
        "a template leaves blank indented lines"
    )


def test_duplicate_keys_are_caught() -> None:
    """The loader the render assertions use refuses what the API server would refuse."""
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'a'"):
        yaml.load("metadata:\n  a: 1\n  a: 2\n", Loader=UniqueKeyLoader)


# The config block: one source of truth ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values_file", "profile"),
    [
        ("values.yaml", "llama-3.1-8b-instruct"),
        ("ci/low-latency-values.yaml", "llama-3.1-8b-instruct-low-latency"),
        ("ci/w8a8-values.yaml", "llama-3.1-8b-instruct-w8a8"),
    ],
)
def test_a_values_config_is_its_profile(values_file: str, profile: str) -> None:
    values = yaml.safe_load((CHART / values_file).read_text())
    assert values["config"] == yaml.safe_load((ROOT / "config" / f"{profile}.yaml").read_text())


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_configmap_is_the_config_as_is_and_the_entrypoint_accepts_it(value_set: str, tmp_path: Path) -> None:
    from llama_ascend.config import load_config
    from llama_ascend.render import render as render_launch

    configmap = one(render(value_set), "ConfigMap", FULLNAME)
    text = configmap["data"]["config.yaml"]
    expected = merged_values(value_set)["config"]
    assert yaml.safe_load(text) == expected
    path = tmp_path / "config.yaml"
    path.write_text(text)
    config = load_config(path, environ={})  # the entrypoint's own validation, as `serve` runs it in the pod
    argv = render_launch(config).argv
    tp = argv[argv.index("--tensor-parallel-size") + 1]
    assert tp == str(expected["server"].get("tensor_parallel_size", 1))
    assert argv[argv.index("--port") + 1] == str(expected["server"]["port"])


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_npu_request_is_the_tensor_parallel_size(value_set: str) -> None:
    values = merged_values(value_set)
    server = container(workload(render(value_set))["spec"]["template"]["spec"], "server")
    resource = values["npu"]["resourceName"]
    if values["config"].get("backend", "ascend") == "ascend":
        tp = values["config"]["server"].get("tensor_parallel_size", 1)
        assert server["resources"]["requests"][resource] == tp
        assert server["resources"]["limits"][resource] == tp
    else:
        assert resource not in server["resources"].get("requests", {})
        assert resource not in server["resources"].get("limits", {})
    # Everything else in resources is what the values say.
    for section, given in values["resources"].items():
        for key, value in given.items():
            assert server["resources"][section][key] == value


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_set_tensor_parallel_size_just_works(tp: int) -> None:
    docs = render("default", "--set", f"config.server.tensor_parallel_size={tp}")
    server = container(workload(docs)["spec"]["template"]["spec"], "server")
    assert server["resources"]["limits"]["huawei.com/Ascend910"] == tp
    assert yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])["server"]["tensor_parallel_size"] == tp


def test_server_sees_the_device_plugin_allocation_annotation() -> None:
    """serve reads huawei.com/AscendReal from /etc/podinfo/annotations to set ASCEND_RT_VISIBLE_DEVICES (TP > 1)."""
    from llama_ascend.devices import DEFAULT_ANNOTATIONS_PATH

    spec = workload(render("tp4"))["spec"]["template"]["spec"]
    mount = next(m for m in container(spec, "server")["volumeMounts"] if m["name"] == "podinfo")
    volume = next(v for v in spec["volumes"] if v["name"] == "podinfo")
    item = volume["downwardAPI"]["items"][0]
    assert f"{mount['mountPath']}/{item['path']}" == DEFAULT_ANNOTATIONS_PATH
    assert item["fieldRef"]["fieldPath"] == "metadata.annotations"


def test_resource_name_is_a_value() -> None:
    docs = render("tp2", "--set", "npu.resourceName=huawei.com/Ascend910B")
    server = container(workload(docs)["spec"]["template"]["spec"], "server")
    assert server["resources"]["requests"]["huawei.com/Ascend910B"] == 2
    assert "huawei.com/Ascend910" not in server["resources"]["requests"]


def test_config_change_rolls_the_pods() -> None:
    def checksum(*args: str) -> str:
        return workload(render("default", *args))["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() != checksum("--set", "config.server.max_num_seqs=16")
    assert checksum() == checksum("--set", "service.annotations.team=llm")


# Probes, drain, update strategy ----------------------------------------------------------------------------------


def probe_command(check: str, values: dict[str, Any], timeout: int) -> list[str]:
    """`llama-ascend probe CHECK` as the chart should render it for these values: port, name and key variable from
    the config (the config-defaults the chart reads, under `config:`), 2 s under the kubelet's timeout."""
    config = json.loads((CHART / "files" / "config-defaults.json").read_text())
    for section, keys in values["config"].items():
        config[section] = {**config[section], **keys} if isinstance(keys, dict) else keys
    model = ["--model", config["model"]["served_name"]] if check == "warm" else []
    return [
        "llama-ascend",
        "probe",
        check,
        "--port",
        str(config["server"]["port"]),
        *model,
        "--api-key-env",
        config["server"].get("api_key_env") or "",
        "--timeout",
        str(timeout - 2),
    ]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_startup_probe_is_one_real_completion_within_the_load_and_graph_capture_budget(value_set: str) -> None:
    values = merged_values(value_set)
    server = container(workload(render(value_set))["spec"]["template"]["spec"], "server")
    probe = server["startupProbe"]
    assert probe["exec"]["command"] == probe_command("warm", values, values["startupProbe"]["timeoutSeconds"])
    assert probe["timeoutSeconds"] == values["startupProbe"]["timeoutSeconds"] >= 30, "the first NPU request compiles"
    budget = values["startupProbe"]["loadBudgetSeconds"]
    compiles = values["config"].get("backend", "ascend") == "ascend" and not values["config"]["server"].get(
        "enforce_eager"
    )
    if compiles:
        budget += values["startupProbe"]["graphCaptureBudgetSeconds"]
    allowed = probe["failureThreshold"] * probe["periodSeconds"]
    assert budget <= allowed < budget + probe["periodSeconds"]
    assert allowed >= 600, "an 8B load needs minutes; the probe would kill it"
    assert server["livenessProbe"]["httpGet"]["path"] == "/health"


def test_readiness_asks_for_the_model_list() -> None:
    server = container(workload(render())["spec"]["template"]["spec"], "server")
    assert server["readinessProbe"]["httpGet"] == {"path": "/v1/models", "port": "http"}


def test_without_warmup_the_startup_probe_asks_health() -> None:
    server = container(
        workload(render("default", "--set", "startupProbe.warmup=false"))["spec"]["template"]["spec"], "server"
    )
    assert server["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_readiness_with_an_api_key_reads_it_from_the_environment() -> None:
    server = container(workload(render("ingress"))["spec"]["template"]["spec"], "server")
    assert server["readinessProbe"]["exec"]["command"] == probe_command("ready", merged_values("ingress"), 5)
    assert server["startupProbe"]["exec"]["command"][-3] == "VLLM_API_KEY"
    assert "test-key-not-a-secret" not in json.dumps(server)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_probe_commands_are_ones_the_cli_takes(value_set: str) -> None:
    """Every exec probe parses with the real CLI's parser, into a probe that needs no config."""
    from llama_ascend import cli

    server = container(workload(render(value_set))["spec"]["template"]["spec"], "server")
    commands = [
        server[kind]["exec"]["command"] for kind in ("startupProbe", "readinessProbe") if "exec" in server[kind]
    ]
    assert commands
    for command in commands:
        assert command[0] == "llama-ascend"
        args = cli.build_parser().parse_args(command[1:])
        assert args.command == "probe" and args.port is not None and args.api_key_env is not None


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_grace_period_covers_prestop_and_vllm_drain(value_set: str) -> None:
    values = merged_values(value_set)
    spec = workload(render(value_set))["spec"]["template"]["spec"]
    server = container(spec, "server")
    sleep = int(server["lifecycle"]["preStop"]["exec"]["command"][1])
    assert server["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert sleep == values["preStopSleepSeconds"]
    drain = values["config"]["server"].get("shutdown_timeout", 30)
    assert spec["terminationGracePeriodSeconds"] >= sleep + drain


def test_grace_period_follows_the_config() -> None:
    spec = workload(render("default", "--set", "config.server.shutdown_timeout=300"))["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 10 + 300 + 15
    # A zero over a non-zero default is a value, not "unset" (the chart merges `config:` over the model's defaults).
    spec = workload(render("default", "--set", "config.server.shutdown_timeout=0"))["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 10 + 0 + 15


def test_a_config_without_server_keys_gets_the_config_models_defaults(tmp_path: Path) -> None:
    values = tmp_path / "bare.yaml"
    values.write_text("config: null\n")  # drop the reference block: every config key takes the model's default
    docs = render("default", "-f", str(values))
    server = container(workload(docs)["spec"]["template"]["spec"], "server")
    assert server["ports"][0]["containerPort"] == 8000
    assert server["resources"]["limits"]["huawei.com/Ascend910"] == 1
    assert one(docs, "ConfigMap")["data"]["config.yaml"].strip() in ("null", "{}")


def test_default_update_never_needs_spare_npus() -> None:
    deployment = one(render(), "Deployment")
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    recreate = one(
        render("default", "--set", "updateStrategy.type=Recreate", "--set", "updateStrategy.rollingUpdate=null"),
        "Deployment",
    )
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}


# Volumes, fetch, shm, driver ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_mounts_shm_and_fetch_init_container(value_set: str) -> None:
    values = merged_values(value_set)
    spec = workload(render(value_set))["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": values["shm"]["sizeLimit"]}
    assert volumes["config"]["configMap"]["name"] == FULLNAME
    server = container(spec, "server")
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    assert mounts["/dev/shm"]["name"] == "shm"
    assert mounts["/etc/llama-ascend"] == {"name": "config", "mountPath": "/etc/llama-ascend", "readOnly": True}
    assert mounts["/models"]["name"] == "models" and mounts["/tmp"]["name"] == "tmp"
    assert server["args"] == ["serve", "--config", "/etc/llama-ascend/config.yaml"]
    assert server["ports"] == [{"name": "http", "containerPort": values["config"]["server"]["port"], "protocol": "TCP"}]
    fetch = container(spec, "fetch", init=True)
    assert fetch["args"] == ["fetch", "--config", "/etc/llama-ascend/config.yaml"]
    assert {m["mountPath"] for m in fetch["volumeMounts"]} == {"/etc/llama-ascend", "/models", "/tmp"}
    assert fetch["image"] == server["image"]
    # Config paths on the volume, and the cache root the pods use there too.
    assert env_of(server)["LLAMA_ASCEND_CACHE"]["value"].startswith("/models/")


def test_default_weights_volume_is_a_kept_claim() -> None:
    docs = render()
    claim = one(docs, "PersistentVolumeClaim", f"{FULLNAME}-models")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-models"


def test_existing_claim_creates_no_claim() -> None:
    docs = render("existing-claim")
    assert "PersistentVolumeClaim" not in kinds(docs)
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "llama-weights"
    assert one(docs, "Deployment")["spec"]["replicas"] == 2


def test_statefulset_gets_a_volume_per_replica() -> None:
    docs = render("statefulset")
    sts = one(docs, "StatefulSet")
    assert "PersistentVolumeClaim" not in kinds(docs)
    (template_,) = sts["spec"]["volumeClaimTemplates"]
    assert template_["metadata"]["name"] == "models"
    assert template_["spec"]["resources"]["requests"]["storage"] == "80Gi"
    assert template_["spec"]["storageClassName"] == "fast-ssd"
    assert "models" not in {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert sts["spec"]["serviceName"] == f"{FULLNAME}-headless"
    assert one(docs, "Service", f"{FULLNAME}-headless")["spec"]["clusterIP"] == "None"
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate"}


def test_no_persistence_uses_an_empty_dir() -> None:
    docs = render("default", "--set", "persistence.enabled=false")
    assert "PersistentVolumeClaim" not in kinds(docs)
    volumes = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["models"] == {"name": "models", "emptyDir": {}}


def test_driver_mounts_are_read_only_host_paths_when_enabled() -> None:
    values = merged_values("tp8")
    spec = workload(render("tp8"))["spec"]["template"]["spec"]
    host_paths = sorted(v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v)
    assert host_paths == sorted(values["ascend"]["driverMounts"]["paths"])
    mounts = [m for m in container(spec, "server")["volumeMounts"] if m["name"].startswith("ascend-driver")]
    assert sorted(m["mountPath"] for m in mounts) == host_paths and all(m["readOnly"] for m in mounts)
    assert spec["nodeSelector"] == {"accelerator": "huawei-Ascend910", "accelerator-type": "module-910b-8"}
    assert spec["securityContext"]["supplementalGroups"] == [1001]
    default_spec = workload(render())["spec"]["template"]["spec"]
    assert not [v for v in default_spec["volumes"] if "hostPath" in v]


# Security ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_container_is_hardened(value_set: str) -> None:
    docs = render(value_set)
    specs = pod_specs(docs)
    assert {name.split("/")[0] for name, _ in specs} >= {"Pod"}, "the helm test pod is rendered"
    for where, spec in specs:
        # Only the router talks to the API server (it discovers the model pods); nothing else gets a token.
        assert spec["automountServiceAccountToken"] is (where == f"Deployment/{FULLNAME}-router"), where
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] == 1000 and pod_sc["runAsGroup"] == 1000, where
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (where, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (where, c["name"])
            assert sc["privileged"] is False, (where, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (where, c["name"])
            assert "resources" in c and c["resources"].get("limits", {}).get("memory"), (where, c["name"])
            writable = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in writable, f"{where} {c['name']}: a read-only root needs a writable /tmp"
    for service_account in [d for d in docs if d["kind"] == "ServiceAccount"]:
        assert service_account["automountServiceAccountToken"] is False  # pods opt in (the router does)


def test_network_policy_admits_clients_monitoring_and_the_test_pod() -> None:
    docs = render()
    policy = one(docs, "NetworkPolicy")
    server_labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= server_labels.items()
    api, metrics = policy["spec"]["ingress"]
    assert api["ports"] == [{"port": "http", "protocol": "TCP"}]
    client_label = {f"{FULLNAME}-client": "true"}
    assert {"podSelector": {"matchLabels": client_label}} in api["from"]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    test_pod = one(docs, "Pod")
    assert client_label.items() <= test_pod["metadata"]["labels"].items()


def test_network_policy_opens_for_the_ingress_controller_and_the_exporter() -> None:
    api = one(render("ingress"), "NetworkPolicy")["spec"]["ingress"][0]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in api["from"]
    metrics = one(render("servicemonitor"), "NetworkPolicy")["spec"]["ingress"][1]
    assert {"port": "npu-metrics", "protocol": "TCP"} in metrics["ports"]
    external = one(render("default", "--set", "networkPolicy.allowExternal=true"), "NetworkPolicy")["spec"]["ingress"][
        0
    ]
    assert "from" not in external


SECRET = "s3cr3t-value-that-must-stay-in-the-secret"


@pytest.mark.parametrize(
    ("sets", "env_name", "key"),
    [
        (
            (
                "--set",
                f"hfToken.value={SECRET}",
                "--set",
                "config.model.source=huggingface",
                "--set",
                "config.model.id=meta-llama/Llama-3.1-8B-Instruct",
            ),
            "HF_TOKEN",
            "hf-token",
        ),
        (
            ("--set", f"apiKey.value={SECRET}", "--set", "config.server.api_key_env=VLLM_API_KEY"),
            "VLLM_API_KEY",
            "api-key",
        ),
    ],
)
def test_secret_values_appear_only_in_the_secret(sets: tuple[str, ...], env_name: str, key: str) -> None:
    docs = render("default", *sets)
    secret = one(docs, "Secret", f"{FULLNAME}-secrets")
    assert base64.b64decode(secret["data"][key]).decode() == SECRET
    for doc in docs:
        if doc is not secret:
            assert SECRET not in json.dumps(doc), f"{doc['kind']}/{doc['metadata']['name']} shows the secret"
    spec = workload(docs)["spec"]["template"]["spec"]
    ref = env_of(container(spec, "server"))[env_name]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": f"{FULLNAME}-secrets", "key": key}
    checksum = workload(docs)["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
    assert checksum != workload(render())["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]


def test_existing_secrets_are_referenced_not_created() -> None:
    docs = render("tp4")
    assert "Secret" not in kinds(docs)
    spec = workload(docs)["spec"]["template"]["spec"]
    assert env_of(container(spec, "server"))["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "llama-api",
        "key": "token",
    }
    smoke = one(docs, "Pod")["spec"]["containers"][0]
    assert env_of(smoke)["LLAMA_ASCEND_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llama-api", "key": "token"}
    hf = render("w8a8")
    for c in (
        container(workload(hf)["spec"]["template"]["spec"], "fetch", init=True),
        container(workload(hf)["spec"]["template"]["spec"], "server"),
    ):
        assert env_of(c)["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}


# Labels, Service, helm test -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_labels_and_selectors(value_set: str) -> None:
    docs = render(value_set)
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE, doc["kind"]
        assert labels["app.kubernetes.io/name"] == "llama-ascend", doc["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", doc["kind"]
        assert (
            labels["helm.sh/chart"] == "llama-ascend-" + yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
        )
        assert doc["metadata"]["namespace"] == NAMESPACE
    wl = workload(docs)
    pod_labels = wl["spec"]["template"]["metadata"]["labels"]
    assert wl["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = one(docs, "Service", f"{FULLNAME}-server" if merged_values(value_set)["router"]["enabled"] else FULLNAME)
    assert service["spec"]["selector"].items() <= pod_labels.items()
    test_pod = one(docs, "Pod")
    assert not service["spec"]["selector"].items() <= test_pod["metadata"]["labels"].items(), (
        "the Service would route to the test pod"
    )


def test_helm_test_pod_runs_smoke_against_the_service() -> None:
    pod = one(render(), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    smoke = pod["spec"]["containers"][0]
    assert smoke["args"] == ["smoke"]
    env = env_of(smoke)
    assert env["LLAMA_ASCEND_URL"]["value"] == f"http://{FULLNAME}.{NAMESPACE}.svc:8000"
    assert env["LLAMA_ASCEND_MODEL"]["value"] == "Llama-3.1-8B-Instruct"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_commonlabels_and_annotations_reach_every_object() -> None:
    docs = render("servicemonitor", "--set", "commonLabels.team=llm", "--set", "commonAnnotations.owner=ml-platform")
    for doc in docs:
        assert doc["metadata"]["labels"]["team"] == "llm", doc["kind"]
        assert doc["metadata"]["annotations"]["owner"] == "ml-platform", doc["kind"]


def test_image_reference() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    server = lambda *a: container(workload(render("default", *a))["spec"]["template"]["spec"], "server")  # noqa: E731
    assert server()["image"] == f"llama-ascend:{app_version}"
    assert (
        server("--set", "image.registry=registry.local:5000", "--set", "image.tag=1.2")["image"]
        == "registry.local:5000/llama-ascend:1.2"
    )
    digest = "sha256:" + "a" * 64
    assert server("--set", f"image.digest={digest}")["image"] == f"llama-ascend@{digest}"


def test_chart_app_version_is_the_project_version() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == project


# Optional objects -------------------------------------------------------------------------------------------------


def test_hpa_scales_on_the_vllm_queue() -> None:
    docs = render("hpa")
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "vllm:num_requests_waiting"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert "replicas" not in one(docs, "Deployment")["spec"], "a fixed replica count would fight the HPA"
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert one(docs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_keda_scaled_object() -> None:
    docs = render("keda")
    scaled = one(docs, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": FULLNAME}
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == "http://prometheus-operated.monitoring.svc:9090"
    assert (
        trigger["metadata"]["query"]
        == f'sum(vllm:num_requests_waiting{{namespace="{NAMESPACE}",service="{FULLNAME}"}})'
    )
    assert isinstance(trigger["metadata"]["threshold"], str)
    assert "replicas" not in one(docs, "StatefulSet")["spec"]
    assert "HorizontalPodAutoscaler" not in kinds(docs)


# The InferencePool v1 API as kubernetes-sigs/gateway-api-inference-extension publishes it (api/v1/
# inferencepool_types.go): selector.matchLabels; exactly one target port; a required endpointPickerRef with a name.
INFERENCE_POOL_V1 = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "inference.networking.k8s.io/v1"},
        "kind": {"const": "InferencePool"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "targetPorts", "endpointPickerRef"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["matchLabels"],
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "targetPorts": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["number"],
                        "properties": {"number": {"type": "integer", "minimum": 1, "maximum": 65535}},
                    },
                },
                "endpointPickerRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "group": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string", "minLength": 1, "maxLength": 253},
                        "portNumber": {"type": "integer", "minimum": 1, "maximum": 65535},
                        "failureMode": {"enum": ["FailOpen", "FailClose"]},
                    },
                },
            },
        },
    },
}


def test_inference_pool_selects_the_model_pods_on_the_api_port() -> None:
    import jsonschema

    docs = render("inferencepool")
    pool = one(docs, "InferencePool")
    jsonschema.validate(pool, INFERENCE_POOL_V1)
    pods = workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"].items() <= pods.items()
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    assert pool["spec"]["endpointPickerRef"] == {"name": "llama-epp", "portNumber": 9002, "failureMode": "FailClose"}
    assert "Deployment" in kinds(docs) and not [d for d in docs if d["metadata"]["name"].endswith("-router")]
    broken = {**pool, "spec": {**pool["spec"], "targetPorts": [{"number": 8000}, {"number": 8001}]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, INFERENCE_POOL_V1)  # the schema above can fail


def test_router_is_the_endpoint_and_finds_the_model_pods_by_their_labels() -> None:
    docs = render("router")
    router = one(docs, "Deployment", f"{FULLNAME}-router")
    server = one(docs, "Deployment", FULLNAME)
    router_pod = router["spec"]["template"]
    server_labels = server["spec"]["template"]["metadata"]["labels"]
    assert router["spec"]["replicas"] == 2 and server["spec"]["replicas"] == 2
    assert router_pod["metadata"]["labels"]["app.kubernetes.io/component"] == "router"
    main = one(docs, "Service", FULLNAME)  # what clients call: the router
    assert main["spec"]["selector"].items() <= router_pod["metadata"]["labels"].items()
    direct = one(docs, "Service", f"{FULLNAME}-server")  # the model pods stay reachable
    assert direct["spec"]["selector"].items() <= server_labels.items()
    assert not direct["spec"]["selector"].items() <= router_pod["metadata"]["labels"].items()
    spec = router_pod["spec"]
    (c,) = spec["containers"]
    assert spec["serviceAccountName"] == f"{FULLNAME}-router" and spec["automountServiceAccountToken"] is True
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8000, "router-metrics": 29000}
    probes = {kind: c[kind]["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {"startupProbe": "/liveness", "readinessProbe": "/readiness", "livenessProbe": "/liveness"}
    role = one(docs, "Role", f"{FULLNAME}-router")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = one(docs, "RoleBinding", f"{FULLNAME}-router")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{FULLNAME}-router", "namespace": NAMESPACE}]
    assert one(docs, "PodDisruptionBudget", f"{FULLNAME}-router")["spec"]["minAvailable"] == 1


def test_the_routers_command_is_one_the_cli_renders_to_discovery_of_exactly_the_model_pods(tmp_path: Path) -> None:
    """The router pod's args run through the real CLI with the chart's config: the router it would exec watches this
    namespace for pods with the model Deployment's labels, on the server's port."""
    docs = render("router")
    config = tmp_path / "config.yaml"
    config.write_text(one(docs, "ConfigMap", FULLNAME)["data"]["config.yaml"])
    (c,) = one(docs, "Deployment", f"{FULLNAME}-router")["spec"]["template"]["spec"]["containers"]
    args = [("--config" if a == "--config" else a) for a in c["args"]]
    args[args.index("--config") + 1] = str(config)
    done = subprocess.run([sys.executable, "-m", "llama_ascend", "render", "--router", *args[1:]],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    argv = done.stdout.replace("\\\n", " ").split()
    selector = argv[argv.index("--selector") + 1 : argv.index("--service-discovery-port")]
    server_labels = one(docs, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    assert dict(item.split("=", 1) for item in selector).items() <= server_labels.items()
    assert argv[argv.index("--service-discovery-namespace") + 1] == NAMESPACE
    assert argv[argv.index("--service-discovery-port") + 1] == "8000"


def test_with_the_router_only_the_router_reaches_the_model_pods() -> None:
    docs = render("router")
    server_policy = one(docs, "NetworkPolicy", FULLNAME)
    api = server_policy["spec"]["ingress"][0]
    sources = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in api["from"]]
    assert sources == ["router", "test"]  # no client label, no ingress controller
    router_policy = one(docs, "NetworkPolicy", f"{FULLNAME}-router")
    clients = router_policy["spec"]["ingress"][0]["from"]
    assert clients == [{"podSelector": {"matchLabels": {f"{FULLNAME}-client": "true"}}}]
    metrics = router_policy["spec"]["ingress"][1]
    assert metrics["ports"] == [{"port": "router-metrics", "protocol": "TCP"}]


def test_with_the_router_the_server_metrics_keep_their_job_and_the_router_is_scraped() -> None:
    docs = render("router")
    server_monitor = one(docs, "ServiceMonitor", FULLNAME)
    direct = one(docs, "Service", f"{FULLNAME}-server")
    assert server_monitor["spec"]["selector"]["matchLabels"].items() <= direct["metadata"]["labels"].items()
    main = one(docs, "Service", FULLNAME)
    assert not server_monitor["spec"]["selector"]["matchLabels"].items() <= main["metadata"]["labels"].items()
    relabel = server_monitor["spec"]["endpoints"][0]["relabelings"]
    assert relabel == [{"targetLabel": "job", "replacement": FULLNAME}]
    router_monitor = one(docs, "ServiceMonitor", f"{FULLNAME}-router")
    assert router_monitor["spec"]["endpoints"][0]["port"] == "router-metrics"
    assert router_monitor["spec"]["endpoints"][0]["relabelings"][0]["replacement"] == f"{FULLNAME}-router"


def test_router_and_pool_are_refused_together_and_a_pool_needs_its_picker() -> None:
    both = template("helm4", "-f", str(values_file("router")), "--set", "inferencePool.enabled=true",
                    "--set", "inferencePool.endpointPickerRef.name=epp")  # fmt: skip
    assert both.returncode != 0 and "router.enabled and inferencePool.enabled are both true" in both.stderr
    nameless = template("helm4", "--set", "inferencePool.enabled=true")
    assert nameless.returncode != 0 and "needs inferencePool.endpointPickerRef.name" in nameless.stderr
    static = template("helm4", "-f", str(values_file("router")), "--set", "config.router.workers={http://a:8000}")
    assert static.returncode != 0 and "config.router.workers" in static.stderr


def test_service_monitor_and_exporter_sidecar() -> None:
    docs = render("servicemonitor")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    assert endpoints["http"]["path"] == "/metrics" and endpoints["npu-metrics"]["path"] == "/metrics"
    service = one(docs, "Service", FULLNAME)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {p["name"] for p in service["spec"]["ports"]} == {"http", "npu-metrics"}
    exporter = container(workload(docs)["spec"]["template"]["spec"], "exporter")
    assert exporter["args"] == [
        "exporter",
        "--config",
        "/etc/llama-ascend/config.yaml",
        "--host",
        "0.0.0.0",
        "--port",
        "9101",
    ]
    assert exporter["ports"][0]["containerPort"] == 9101
    assert env_of(exporter)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "huawei.com/Ascend910" not in json.dumps(exporter["resources"]), "the sidecar must not take NPUs"


@pytest.mark.parametrize("value_set", ["default", "servicemonitor", "tp4", "router"])
def test_container_args_parse_with_the_real_cli(value_set: str) -> None:
    """What the pods run is a valid `llama-ascend` command line (the image's ENTRYPOINT is `llama-ascend`)."""
    from llama_ascend import cli

    parser = cli.build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for where, spec in pod_specs(render(value_set)):
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert c["args"][0] in subcommands, (
                f"{where}: {c['name']} runs `llama-ascend {c['args'][0]}`, no such command"
            )
            args = parser.parse_args(c["args"])
            if c["name"] == "exporter":
                assert (args.host, args.port, args.config) == ("0.0.0.0", 9101, "/etc/llama-ascend/config.yaml")
            elif c["args"][0] in ("serve", "fetch"):
                assert args.config == "/etc/llama-ascend/config.yaml", (where, c["name"])


def test_ingress_routes_to_the_api_port() -> None:
    ingress = one(render("ingress"), "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": FULLNAME, "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [{"secretName": "llama-tls", "hosts": ["llama.example.internal"]}]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "600"


def test_optional_objects_are_off_by_default() -> None:
    assert kinds(render()) == sorted(
        ["ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "Pod", "Service", "ServiceAccount"]
    )


def test_extra_objects_and_hooks_are_rendered(tmp_path: Path) -> None:
    extra = {
        "extraObjects": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "{{ .Release.Name }}-extra"}}],
        "extraEnv": [{"name": "FOO", "value": "bar"}],
        "extraArgs": ["--debug"],
        "extraVolumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
        "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        "sidecars": [{"name": "proxy", "image": "{{ .Values.image.repository }}-proxy:1"}],
    }
    path = tmp_path / "extra-values.yaml"
    path.write_text(yaml.safe_dump(extra))
    docs = render("default", "-f", str(path))
    one(docs, "ConfigMap", f"{RELEASE}-extra")
    spec = workload(docs)["spec"]["template"]["spec"]
    server = container(spec, "server")
    assert env_of(server)["FOO"]["value"] == "bar"
    assert server["args"][-1] == "--debug"
    assert {"name": "scratch", "mountPath": "/scratch"} in server["volumeMounts"]
    assert container(spec, "proxy")["image"] == "llama-ascend-proxy:1"


def test_notes_show_port_forward_and_curl() -> None:
    """NOTES.txt is rendered only by install; Helm 4 can do that with --dry-run=client and no cluster."""
    proc = helm(
        "helm4", "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client", "-f", str(values_file("ingress"))
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout[proc.stdout.index("NOTES:") :]
    assert f"kubectl -n {NAMESPACE} port-forward svc/{FULLNAME} 8000:8000" in notes
    assert "curl -s http://127.0.0.1:8000/v1/chat/completions" in notes
    assert "Authorization: Bearer $API_KEY" in notes and "test-key-not-a-secret" not in notes
    assert '"model": "Llama-3.1-8B-Instruct"' in notes
    assert f"helm test {RELEASE}" in notes


# Bad values fail with the schema's or the chart's message -----------------------------------------------------------

BAD_VALUES = [
    # (id, --set args, a regex both Helms' messages match)
    (
        "tp-3",
        ["config.server.tensor_parallel_size=3"],
        r"tensor_parallel_size.*(must be one of|value must be one of).*1, 2, 4, 8",
    ),
    (
        "string-port",
        ["config.server.port=abc"],
        r"config.server.port.*(Expected: integer, given: string)|/config/server/port.*got string, want integer",
    ),
    (
        "unknown-config-key",
        ["config.server.max_tokens=5"],
        r"config.server.*(Additional property max_tokens|additional properties 'max_tokens')",
    ),
    (
        "unknown-chart-key",
        ["replicas=2"],
        r"(Additional property replicas is not allowed|additional properties 'replicas' not allowed)",
    ),
    ("bad-dtype", ["config.server.dtype=int4"], r"dtype"),
    ("bad-workload-kind", ["workloadKind=DaemonSet"], r"workloadKind"),
    ("bad-access-mode", ["persistence.accessModes={RWX}"], r"accessModes"),
    (
        "loopback-host",
        ["config.server.host=127.0.0.1"],
        r"config.server.host=127.0.0.1: .*set config.server.host=0.0.0.0",
    ),
    (
        "path-off-volume",
        ["config.model.path=/opt/models"],
        r"config.model.path=/opt/models is not on the weights volume",
    ),
    ("rwo-two-replicas", ["replicaCount=2"], r"cannot be shared by several replicas of a Deployment"),
    ("rwo-autoscaled", ["autoscaling.hpa.enabled=true"], r"cannot be shared by several replicas of a Deployment"),
    (
        "hpa-and-keda",
        [
            "autoscaling.hpa.enabled=true",
            "autoscaling.keda.enabled=true",
            "persistence.accessModes={ReadWriteMany}",
            "autoscaling.keda.serverAddress=http://p:9090",
        ],
        r"both true",
    ),
    (
        "keda-no-prometheus",
        ["autoscaling.keda.enabled=true", "workloadKind=StatefulSet"],
        r"autoscaling.keda.serverAddress",
    ),
    ("grace-too-short", ["terminationGracePeriodSeconds=20"], r"terminationGracePeriodSeconds=20 is below .* = 40"),
    ("key-without-env", ["apiKey.value=abc"], r"config.server.api_key_env is null"),
    (
        "env-without-key",
        ["config.server.api_key_env=VLLM_API_KEY"],
        r"config.server.api_key_env=VLLM_API_KEY but no key is given",
    ),
    (
        "npu-listed-by-hand",
        ["resources.limits.huawei\\.com/Ascend910=2"],
        r"resources.limits\[huawei.com/Ascend910\]=2 disagrees",
    ),
    (
        "keyed-readiness-elsewhere-in-v1",
        ["apiKey.value=k", "config.server.api_key_env=VLLM_API_KEY", "readinessProbe.path=/v1/completions"],
        r"readinessProbe.path=/v1/completions needs the API key, and the keyed readiness check",
    ),
    (
        "recreate-statefulset",
        ["workloadKind=StatefulSet", "updateStrategy.type=Recreate"],
        r"not a StatefulSet strategy",
    ),
]


@pytest.mark.parametrize("tool", HELMS)
@pytest.mark.parametrize(("sets", "message"), [pytest.param(s, m, id=i) for i, s, m in BAD_VALUES])
def test_bad_values_fail_with_a_message(tool: str, sets: list[str], message: str) -> None:
    proc = template(tool, *[arg for s in sets for arg in ("--set", s)])
    assert proc.returncode != 0, f"{sets} rendered:\n{proc.stdout[:400]}"
    assert re.search(message, proc.stderr), proc.stderr


def test_all_problems_are_reported_at_once() -> None:
    proc = template(
        "helm4",
        "--set",
        "config.server.host=127.0.0.1",
        "--set",
        "replicaCount=3",
        "--set",
        "terminationGracePeriodSeconds=1",
    )
    assert proc.returncode != 0
    assert "VALUES VALIDATION (3 problems)" in proc.stderr
    assert proc.stderr.count("\n  - ") == 3


# Static checks: yamllint, checkov -------------------------------------------------------------------------------

YAMLLINT_CONFIG = """
extends: default
rules:
  line-length: {max: 120}
  document-start: disable
  comments: {min-spaces-from-content: 1}
  truthy: {check-keys: false}
"""


def test_yamllint_values_and_value_sets() -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(YAMLLINT_CONFIG)
    files = [CHART / "values.yaml", CHART / "Chart.yaml", *sorted((CHART / "ci").glob("*.yaml"))]
    problems = [
        f"{path.relative_to(ROOT)}:{p.line}:{p.column}: {p.desc} ({p.rule})"
        for path in files
        for p in linter.run(path.read_text(), config, str(path))
    ]
    assert not problems, "\n".join(problems)


def test_checkov_finds_nothing_unjustified(tmp_path: Path) -> None:
    """checkov over every rendered value set: every failed check is one of CHECKOV_SKIPS, and every skip still fails
    somewhere (no stale exceptions)."""
    checkov = need("checkov")
    for value_set in VALUE_SETS:
        (tmp_path / f"{value_set}.yaml").write_text(rendered_text("helm4", value_set))
    proc = subprocess.run(
        [str(checkov), "-d", str(tmp_path), "--framework", "kubernetes", "--output", "json", "--quiet", "--compact"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    reports = json.loads(proc.stdout or "[]")
    reports = reports if isinstance(reports, list) else [reports]
    failed = [c for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    unjustified = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).name})"
        for c in failed
        if c["check_id"] not in CHECKOV_SKIPS
    ]
    assert not unjustified, "checkov failed checks (fix them or justify in CHECKOV_SKIPS):\n" + "\n".join(unjustified)
    stale = set(CHECKOV_SKIPS) - {c["check_id"] for c in failed}
    assert not stale, f"CHECKOV_SKIPS that no longer fail anywhere: {sorted(stale)}"
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed > 100, f"checkov passed only {passed} checks: did it read the manifests?\n{proc.stderr[-2000:]}"
    inline = sum(r.get("summary", {}).get("skipped", 0) for r in reports)
    routed = sum(merged_values(v)["router"]["enabled"] for v in VALUE_SETS)
    # the test pod's three inline skips once per value set, the router pod's token once per value set with a router
    assert inline == 3 * len(VALUE_SETS) + routed


@pytest.mark.parametrize("tool", HELMS)
def test_helm_is_the_pinned_release(tool: str) -> None:
    if need(tool) != tools.helm_path(tools.HELM[tool], tools.tools_dir()):
        pytest.skip(f"{tools.OVERRIDE_ENV[tool]} points at a helm of your own")
    assert helm(tool, "version", "--short").stdout.startswith(tools.HELM[tool].version)


def documented_installs() -> list[tuple[str, list[str]]]:
    """Every `helm install` command in docs/helm.md and the chart README, as argument lists."""
    import shlex

    commands = []
    for doc in (ROOT / "docs" / "helm.md", CHART / "README.md"):
        text = doc.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if line.strip().startswith("helm install "):
                commands.append((f"{doc.name}: {line.strip()[:60]}", shlex.split(line.strip())))
    return commands


@pytest.mark.parametrize(("where", "argv"), documented_installs(), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("tool", HELMS)
def test_documented_installs_render(tool: str, where: str, argv: list[str]) -> None:
    """The install commands the docs show pass the schema and the chart's checks (as `helm template`)."""
    args = [a for a in argv[2:] if a != "--create-namespace"]
    assert args[:2] == ["llama", "helm/llama-ascend"], where
    proc = helm(tool, "template", "llama", str(CHART), "--kube-version", RENDER_KUBE_VERSION, *args[2:])
    assert proc.returncode == 0, f"{where}\n{proc.stderr}"


def test_docs_show_the_four_installs() -> None:
    installs = " ".join(" ".join(argv) for where, argv in documented_installs() if where.startswith("helm.md"))
    assert "tensor_parallel_size=4" in installs and "persistence.existingClaim=" in installs
    assert "autoscaling.hpa.enabled=true" in installs and "autoscaling.keda.enabled=true" in installs
