"""Can this node run the deployment? Every check runs and every failure is reported, with its likely cause and fix.

`serve` runs these before it execs vLLM (a failed start on an NPU costs minutes); `llama-ascend preflight` runs
them alone. `root` re-roots the filesystem checks (/dev, the driver, CANN, /proc/meminfo) for tests on fake trees;
the model directory and the port are always the real ones.
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from llama_ascend import ascend_env, devices, npu_smi
from llama_ascend.config import Config
from llama_ascend.errors import PreflightFailed

GiB = 1024**3
MiB = 1024**2

DRIVER_DIR = "usr/local/Ascend/driver"
HAL_LIBRARY_DIRS = ("lib64/driver", "lib64", "lib64/common")
# Activations, ACL graph pools, HCCL buffers and the torch-npu context per card, on top of weights and KV cache.
# vLLM measures the real peak in its profile run; this is the margin the estimate keeps for it.
ASCEND_RUNTIME_OVERHEAD = 2 * GiB
# Python, torch and vLLM's own processes on the cpu backend.
CPU_RUNTIME_OVERHEAD = 1 * GiB
# Without a process table, HBM used beyond this share of the card is taken to be held by someone else
# (an idle 910B shows ~3.1-3.4 GB of 64 GB used by firmware).
IDLE_RESERVE_SHARE = 0.08
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One check's outcome. `message` says what was found; a failure also says the likely cause and the fix."""

    check: str
    ok: bool
    message: str
    cause: str = ""
    fix: str = ""
    severity: Severity = "error"

    @property
    def failed(self) -> bool:
        return not self.ok and self.severity == "error"

    @property
    def status(self) -> str:
        return "ok" if self.ok else ("FAIL" if self.severity == "error" else "warn")

    def describe(self) -> str:
        text = f"{self.check}: {self.message}"
        if not self.ok and self.cause:
            text += f"; likely cause: {self.cause}"
        if not self.ok and self.fix:
            text += f"; fix: {self.fix}"
        return text


def _ok(check: str, message: str) -> Finding:
    return Finding(check, True, message)


def _fail(check: str, message: str, cause: str = "", fix: str = "", severity: Severity = "error") -> Finding:
    return Finding(check, False, message, cause, fix, severity)


def _gib(value: float) -> str:
    return f"{value / GiB:.1f} GiB"


# --------------------------------------------------------------------------------------------------- model size


@dataclass(frozen=True)
class ModelFootprint:
    weight_bytes: int
    kv_bytes_per_token: int
    weights_from: str  # "safetensors files" or "config.json"

    def kv_bytes(self, tokens: int) -> int:
        return self.kv_bytes_per_token * tokens


def _dtype_bytes(config: Config, model_config: Mapping[str, Any]) -> int:
    dtype: str = config.server.dtype
    if dtype == "auto":
        dtype = str(model_config.get("torch_dtype") or model_config.get("dtype") or "bfloat16")
    return DTYPE_BYTES.get(dtype, 2)


def footprint(config: Config) -> ModelFootprint | None:
    """Weights (the safetensors on disk, else counted from config.json) and KV bytes per token; None without config.json."""
    model_dir = config.model_dir
    try:
        spec = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    spec = spec.get("text_config", spec)
    width = _dtype_bytes(config, spec)
    hidden = int(spec["hidden_size"])
    layers = int(spec["num_hidden_layers"])
    heads = int(spec["num_attention_heads"])
    kv_heads = int(spec.get("num_key_value_heads") or heads)
    head_dim = int(spec.get("head_dim") or hidden // heads)
    kv_per_token = 2 * layers * kv_heads * head_dim * width

    files = sorted(model_dir.glob("*.safetensors"))
    if files:
        return ModelFootprint(sum(f.stat().st_size for f in files), kv_per_token, "safetensors files")
    vocab = int(spec["vocab_size"])
    inter = int(spec.get("intermediate_size") or 4 * hidden)
    per_layer = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2 + 3 * hidden * inter + 2 * hidden
    embeddings = vocab * hidden * (1 if spec.get("tie_word_embeddings") else 2)
    params = layers * per_layer + embeddings + hidden
    return ModelFootprint(params * width, kv_per_token, "config.json")


# ----------------------------------------------------------------------------------------------- common checks


def check_port(config: Config) -> Finding:
    host, port = config.server.host, config.server.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # uvicorn binds with SO_REUSEADDR too, so a port in TIME_WAIT is not a conflict.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return _fail(
                    "port",
                    f"{host}:{port} is already in use",
                    cause="another server (an earlier vLLM that did not exit, or a second replica) listens there",
                    fix=f"stop it (`ss -ltnp | grep :{port}`) or choose another port: --set server.port=<free port>",
                )
            if exc.errno == errno.EADDRNOTAVAIL:
                return _fail(
                    "port",
                    f"server.host {host} is not an address of this machine",
                    fix="use 0.0.0.0 (all interfaces) or 127.0.0.1 (this machine only)",
                )
            return _fail("port", f"cannot bind {host}:{port}: {exc.strerror}", fix="choose another server.port")
    return _ok("port", f"{host}:{port} is free")


def _fetch_fix(config: Config) -> str:
    if config.model.source == "local":
        return "point model.path at a HuggingFace-format model dir (the CPU stand-in: run `llama-ascend standin`)"
    return "run `llama-ascend fetch` with the same config (it resumes and verifies the download)"


def check_model_files(config: Config) -> Finding:
    """The served model dir has config.json and a tokenizer."""
    model_dir = config.model_dir
    if not model_dir.is_dir():
        return _fail(
            "model-files",
            f"model dir {model_dir} does not exist",
            cause="the weights were never downloaded to this volume, or model.path points elsewhere",
            fix=_fetch_fix(config),
        )
    missing = []
    if not (model_dir / "config.json").is_file():
        missing.append("config.json")
    tokenizer = [n for n in ("tokenizer.json", "tokenizer.model") if (model_dir / n).is_file()]
    if not tokenizer:
        missing.append("a tokenizer (tokenizer.json or tokenizer.model)")
    if missing:
        return _fail(
            "model-files",
            f"{model_dir} lacks {' and '.join(missing)}",
            cause="the download is incomplete, or allow_patterns leave these files out",
            fix=_fetch_fix(config),
        )
    return _ok("model-files", f"{model_dir} has config.json and {tokenizer[0]}")


def check_weights(config: Config) -> Finding:
    """Complete as `fetch` defines it: its marker matches (hub sources), or every shard is whole (local)."""
    from llama_ascend import fetch

    model_dir = config.model_dir
    shards = sorted(model_dir.glob("*.safetensors")) if model_dir.is_dir() else []
    if fetch.is_complete(config):
        total = sum(p.stat().st_size for p in shards)
        how = "every shard whole" if config.model.source == "local" else "the fetch marker matches"
        return _ok("weights", f"{len(shards)} safetensors shard(s), {_gib(total)}, complete ({how})")
    if not model_dir.is_dir():
        return _fail(
            "weights",
            f"no weights: {model_dir} does not exist",
            cause="the weights were never downloaded to this volume, or model.path points elsewhere",
            fix=_fetch_fix(config),
        )
    problems = fetch.local_problems(model_dir)  # what is wrong with the files themselves
    if config.model.source != "local":
        problems.insert(
            0,
            "no matching completion marker from `llama-ascend fetch` (not fetched for this "
            "id/revision/patterns, or files changed since)",
        )
    shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
    return _fail(
        "weights",
        f"{model_dir}: {shown}",
        cause="the download was interrupted or the files were changed after it",
        fix=_fetch_fix(config),
    )


# ------------------------------------------------------------------------------------------------- cpu backend


def _meminfo(root: Path) -> dict[str, int]:
    values = {}
    try:
        for line in (root / "proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[name] = int(parts[0]) * 1024
    except OSError:
        pass
    return values


def check_ram(config: Config, root: Path, environ: Mapping[str, str]) -> list[Finding]:
    fp = footprint(config)
    if fp is None:
        return [
            _fail("ram", "cannot size the model: no readable config.json", fix=_fetch_fix(config), severity="warning")
        ]
    kv_space = int(environ.get("VLLM_CPU_KVCACHE_SPACE") or config.server.cpu_kvcache_space) * GiB
    need = fp.weight_bytes + kv_space + CPU_RUNTIME_OVERHEAD
    available = _meminfo(root).get("MemAvailable")
    findings = []
    if available is None:
        findings.append(_fail("ram", f"cannot read {root / 'proc/meminfo'}", severity="warning"))
    elif available < need:
        findings.append(
            _fail(
                "ram",
                f"{_gib(available)} RAM available, the server needs ~{_gib(need)} "
                f"(weights {_gib(fp.weight_bytes)} + KV cache {_gib(kv_space)} + runtime {_gib(CPU_RUNTIME_OVERHEAD)})",
                cause="other processes hold the memory, or the container's memory limit is too low",
                fix="free memory or raise the limit; or lower server.cpu_kvcache_space",
            )
        )
    else:
        findings.append(
            _ok(
                "ram",
                f"{_gib(available)} RAM available >= ~{_gib(need)} needed "
                f"(weights {_gib(fp.weight_bytes)} + KV cache {_gib(kv_space)} + runtime {_gib(CPU_RUNTIME_OVERHEAD)})",
            )
        )
    one_sequence = fp.kv_bytes(config.server.max_model_len)
    all_sequences = fp.kv_bytes(config.server.max_model_len * config.server.max_num_seqs)
    if one_sequence > kv_space:
        findings.append(
            _fail(
                "kv-cache",
                f"one {config.server.max_model_len}-token sequence needs {_gib(one_sequence)} of KV cache, "
                f"server.cpu_kvcache_space gives {_gib(kv_space)}",
                cause="vLLM refuses to start when a single max-length sequence does not fit",
                fix="raise server.cpu_kvcache_space or lower server.max_model_len",
            )
        )
    elif all_sequences > kv_space:
        findings.append(
            _fail(
                "kv-cache",
                f"{config.server.max_num_seqs} sequences of {config.server.max_model_len} tokens need "
                f"{_gib(all_sequences)} of KV cache, {_gib(kv_space)} configured: fewer run at once at full length",
                fix="raise server.cpu_kvcache_space if RAM allows",
                severity="warning",
            )
        )
    else:
        findings.append(
            _ok(
                "kv-cache",
                f"KV cache {_gib(kv_space)} holds {config.server.max_num_seqs} x "
                f"{config.server.max_model_len} tokens ({_gib(all_sequences)})",
            )
        )
    return findings


# ---------------------------------------------------------------------------------------------- ascend backend


def check_management_devices(root: Path) -> list[Finding]:
    findings = []
    for name in devices.MANAGEMENT_DEVICES:
        node = root / "dev" / name
        if node.exists():
            findings.append(_ok("device-nodes", f"/dev/{name} present"))
        else:
            findings.append(
                _fail(
                    "device-nodes",
                    f"/dev/{name} is missing",
                    cause=f"container started without --device /dev/{name} (Kubernetes: the Ascend device plugin or "
                    "the Ascend Docker Runtime is not installed on the node)",
                    fix=f"docker run --device /dev/{name} (all of /dev/davinci_manager, /dev/devmm_svm, /dev/hisi_hdc); "
                    "on Kubernetes install the Ascend device plugin and request huawei.com/Ascend910",
                )
            )
    return findings


def select_cards(
    config: Config, root: Path, environ: Mapping[str, str], annotations_path: str | os.PathLike[str] | None
) -> tuple[list[int], list[Finding]]:
    """The physical cards the server will use, and the findings about how they were chosen and mounted."""
    tp = config.server.tensor_parallel_size
    present = devices.present_devices(root)
    findings: list[Finding] = []
    try:
        allocated = devices.allocation(environ, annotations_path)
    except ValueError as exc:
        return [], [_fail("visible-devices", str(exc), fix="use a comma-separated list of card ids, e.g. 0,1")]
    rt_value = environ.get(devices.RT_VISIBLE_ENV, "").strip()

    if not present:
        return [], [
            _fail(
                "device-nodes",
                "no /dev/davinciN card is visible",
                cause="container started without --device /dev/davinciN (Kubernetes: no huawei.com/Ascend910 "
                "resource requested, or the Ascend device plugin is not running)",
                fix=f"docker run --device /dev/davinci0 (one per card, {tp} for tensor_parallel_size={tp}); "
                f"on Kubernetes request huawei.com/Ascend910: {tp}",
            )
        ]

    if allocated:
        cards, source = allocated
        mounted = [card for card in cards if card in present]
        missing = [card for card in cards if card not in present]
        if missing:
            findings.append(
                _fail(
                    "device-nodes",
                    f"{source} allocates card(s) {', '.join(map(str, missing))}, but "
                    f"{', '.join(f'/dev/davinci{c}' for c in missing)} is not in the container "
                    f"(present: {', '.join(f'davinci{c}' for c in present)})",
                    cause="devices visible to the allocation but not mounted: the container was started without "
                    "the Ascend Docker Runtime, or with --device for other cards",
                    fix=f"mount the allocated cards (--device /dev/davinci{missing[0]} ...) or run the pod with the "
                    "Ascend Docker Runtime so ASCEND_VISIBLE_DEVICES mounts them",
                )
            )
        else:
            findings.append(_ok("device-nodes", f"cards {', '.join(map(str, cards))} from {source} are mounted"))
        if rt_value:
            try:
                logical = devices.parse_ids(rt_value)
            except ValueError as exc:
                return mounted, [*findings, _fail("visible-devices", f"{devices.RT_VISIBLE_ENV}={rt_value!r}: {exc}")]
            expected = devices.logical_ids(mounted, present) or []
            if not set(logical) <= set(range(len(present))):
                findings.append(
                    _fail(
                        "visible-devices",
                        f"{devices.RT_VISIBLE_ENV}={rt_value} names logical ids the runtime does not have: "
                        f"{len(present)} card(s) are mounted, numbered 0-{len(present) - 1}",
                        cause=f"physical ids were used where the runtime expects logical ones ({source})",
                        fix=f"set {devices.RT_VISIBLE_ENV}={','.join(map(str, expected))} or unset it "
                        "(serve derives it from the allocation)",
                    )
                )
            else:
                chosen = [present[i] for i in logical]
                findings.append(_ok("visible-devices", f"{devices.RT_VISIBLE_ENV}={rt_value} -> cards {chosen}"))
                return chosen, findings
        else:
            env = devices.runtime_device_env(environ, annotations_path, root)
            if env:
                findings.append(
                    _ok(
                        "visible-devices",
                        f"serve sets {devices.RT_VISIBLE_ENV}={env[devices.RT_VISIBLE_ENV]} "
                        f"for cards {', '.join(map(str, mounted))}",
                    )
                )
        return mounted, findings

    if rt_value:
        try:
            logical = devices.parse_ids(rt_value)
        except ValueError as exc:
            return [], [_fail("visible-devices", f"{devices.RT_VISIBLE_ENV}={rt_value!r}: {exc}")]
        beyond = [i for i in logical if i >= len(present)]
        if beyond:
            return [], [
                _fail(
                    "visible-devices",
                    f"{devices.RT_VISIBLE_ENV}={rt_value} names logical id(s) {', '.join(map(str, beyond))}, "
                    f"but the runtime numbers the {len(present)} mounted card(s) "
                    f"({', '.join(f'davinci{c}' for c in present)}) from 0",
                    cause="physical card ids used where the runtime expects logical ones (inside a container the "
                    "first mounted card is 0)",
                    fix=f"set {devices.RT_VISIBLE_ENV}={','.join(map(str, range(min(tp, len(present)))))} or unset it",
                )
            ]
        chosen = [present[i] for i in logical]
        return chosen, [_ok("visible-devices", f"{devices.RT_VISIBLE_ENV}={rt_value} -> cards {chosen}")]

    chosen = present[:tp]
    return chosen, [
        _ok(
            "device-nodes",
            f"cards {', '.join(map(str, chosen))} visible (no allocation given: the runtime uses the first {tp})",
        )
    ]


def check_tp(config: Config, cards: list[int], root: Path) -> Finding:
    tp = config.server.tensor_parallel_size
    if len(cards) >= tp:
        return _ok("tensor-parallel", f"tensor_parallel_size={tp} <= {len(cards)} usable card(s)")
    present = devices.present_devices(root)
    return _fail(
        "tensor-parallel",
        f"tensor_parallel_size={tp} needs {tp} card(s), the runtime can use {len(cards)} "
        f"({', '.join(f'davinci{c}' for c in cards) or 'none'}; mounted: "
        f"{', '.join(f'davinci{c}' for c in present) or 'none'})",
        cause=f"the pod requested fewer cards than TP, or {devices.RT_VISIBLE_ENV} hides some",
        fix=f"request {tp} card(s) (huawei.com/Ascend910: {tp}), mount them all, and leave "
        f"{devices.RT_VISIBLE_ENV} unset; or lower server.tensor_parallel_size",
    )


def check_driver(root: Path) -> list[Finding]:
    driver = root / DRIVER_DIR
    findings = []
    hal = next(
        (driver / d / "libascend_hal.so" for d in HAL_LIBRARY_DIRS if (driver / d / "libascend_hal.so").exists()), None
    )
    if hal is None:
        findings.append(
            _fail(
                "driver",
                f"libascend_hal.so is missing (looked in {', '.join(str(driver / d) for d in HAL_LIBRARY_DIRS)})",
                cause="the driver's lib64 is not mounted into the container",
                fix="mount the host's driver: -v /usr/local/Ascend/driver:/usr/local/Ascend/driver:ro "
                "(Kubernetes: a hostPath volume at the same path)",
            )
        )
    else:
        findings.append(_ok("driver", f"{hal.relative_to(root)} present"))
    version_file = driver / "version.info"
    try:
        version = next(
            (
                line.split("=", 1)[1].strip()
                for line in version_file.read_text().splitlines()
                if line.startswith("Version=")
            ),
            "unknown",
        )
        findings.append(_ok("driver", f"driver version {version} ({version_file.relative_to(root)})"))
    except OSError:
        findings.append(
            _fail(
                "driver",
                f"{version_file} is missing",
                cause="the driver's version.info is not mounted (CANN reads it to check compatibility)",
                fix="-v /usr/local/Ascend/driver/version.info:/usr/local/Ascend/driver/version.info:ro "
                "(or mount the whole driver dir)",
            )
        )
    return findings


def _cann_roots(root: Path, environ: Mapping[str, str]) -> list[Path]:
    """The CANN install roots serve sources from ($LLAMA_ASCEND_CANN_ROOTS or /usr/local/Ascend), under `root`."""
    return [root / str(r).lstrip("/") for r in ascend_env.roots_from(environ)]


def _inside(path: Path, root: Path) -> str:
    """A path as the container sees it (`root` is / outside the tests)."""
    return "/" + str(path.relative_to(root))


def check_cann(root: Path, environ: Mapping[str, str]) -> list[Finding]:
    """CANN as `serve` will load it: the scripts of ascend_env.SCRIPTS under the install roots, nothing else."""
    findings = []
    roots = _cann_roots(root, environ)
    home = environ.get("ASCEND_TOOLKIT_HOME") or environ.get("ASCEND_HOME_PATH")
    toolkit = next((r / ascend_env.TOOLKIT_SCRIPT for r in roots if (r / ascend_env.TOOLKIT_SCRIPT).is_file()), None)
    expected = ", ".join(_inside(r / ascend_env.TOOLKIT_SCRIPT, root) for r in roots)
    if home:
        located = root / home.lstrip("/")
        if located.is_dir():
            findings.append(_ok("cann", f"CANN toolkit at {home}"))
        else:
            findings.append(
                _fail(
                    "cann",
                    f"ASCEND_TOOLKIT_HOME={home} does not exist",
                    cause="the image's CANN is elsewhere, or the variable came from another machine",
                    fix=f"source the set_env.sh of the installed toolkit ({expected})",
                )
            )
    elif toolkit:
        findings.append(
            _fail(
                "cann",
                f"CANN is installed ({_inside(toolkit, root)}) but its environment is not set "
                "(ASCEND_TOOLKIT_HOME / ASCEND_HOME_PATH unset)",
                cause="set_env.sh was not sourced: a server started from a non-login shell never reads ~/.bashrc "
                "(`llama-ascend serve` sources it itself; a hand-written command does not)",
                fix=f"start the server with `llama-ascend serve`, or `source {_inside(toolkit, root)}` first",
            )
        )
    else:
        known = {r / pattern for r in roots for pattern in ascend_env.SCRIPTS}
        others = sorted({p for r in roots for p in r.glob("*/set_env.sh")} - known)
        message = f"CANN toolkit not found (no ASCEND_TOOLKIT_HOME, no {expected})"
        if others:
            listed = ", ".join(_inside(p, root) for p in others)
            findings.append(
                _fail(
                    "cann",
                    f"{message}; {listed} exists, but `llama-ascend serve` does not source it "
                    f"(it sources {', '.join(ascend_env.SCRIPTS)} under {', '.join(_inside(r, root) for r in roots)})",
                    cause="CANN is installed in a layout other than the CANN base image's",
                    fix=f"`source {_inside(others[0], root)}` before `llama-ascend serve` (it keeps the environment "
                    f"it is given), or install the toolkit so that {expected} exists",
                )
            )
        else:
            findings.append(
                _fail(
                    "cann",
                    message,
                    cause="this is not the vLLM-Ascend image",
                    fix="run the llama-ascend image (based on vllm-ascend with CANN 8.5.1)",
                )
            )
    atb = next((r / ascend_env.ATB_SCRIPT for r in roots if (r / ascend_env.ATB_SCRIPT).is_file()), None)
    if atb and not environ.get("ATB_HOME_PATH"):
        findings.append(
            _fail(
                "cann",
                "the ATB library is installed but its environment is not set (ATB_HOME_PATH unset)",
                cause="nnal/atb/set_env.sh was not sourced",
                fix=f"source {_inside(atb, root)} too",
                severity="warning",
            )
        )
    return findings


def _reserved_mb(chip: npu_smi.Chip, processes: list[npu_smi.Process] | None) -> tuple[int, int]:
    """(HBM the firmware keeps at idle, HBM held by processes) in MB."""
    used = chip.hbm_used_mb or 0
    if processes is None:
        reserve = min(used, int((chip.hbm_total_mb or 0) * IDLE_RESERVE_SHARE))
        return reserve, used - reserve
    held = sum(p.memory_mb or 0 for p in processes)
    return max(used - held, 0), held


def check_cards(config: Config, cards: list[int], info: npu_smi.NpuSmiInfo, fp: ModelFootprint | None) -> list[Finding]:
    findings: list[Finding] = []
    tp = config.server.tensor_parallel_size
    util = config.server.gpu_memory_utilization
    for index, card in enumerate(cards):
        chip = info.chip_by_phy_id(card)
        if chip is None and len(info.chips) == len(cards):
            chip = info.chips[index]  # npu-smi in a container may number the mounted cards itself
        if chip is None:
            findings.append(
                _fail(
                    "npu-smi",
                    f"npu-smi does not list card {card} (it shows {', '.join(str(c.phy_id) for c in info.chips)})",
                    cause="the card is mounted but the driver does not see it (reset, or a fault)",
                    fix=f"check `npu-smi info` and `dmesg` on the host for card {card}",
                )
            )
            continue
        label = f"card {card} ({chip.name})"
        if chip.healthy:
            findings.append(_ok("card-health", f"{label} health OK"))
        else:
            findings.append(
                _fail(
                    "card-health",
                    f"{label} health is {chip.health}",
                    cause="the card reports an alarm",
                    fix=f"`npu-smi info -t health -i {chip.npu_id} -c {chip.chip_id}` shows the error code; "
                    "reset the card or schedule on another node",
                )
            )
        processes = info.processes_on(chip)
        if processes:
            listed = ", ".join(f"pid {p.pid} ({p.name or 'unnamed'}, {p.memory_mb} MB)" for p in processes)
            findings.append(
                _fail(
                    "card-busy",
                    f"{label} is held by {listed}",
                    cause="another process or container is using the card (npu-smi's process table)",
                    fix="stop that workload (`npu-smi info` on the host names the pid; `kubectl get pods -o wide` "
                    "the pod) or schedule on a free card",
                )
            )
        elif processes is None:
            findings.append(
                _fail(
                    "card-busy",
                    f"{label}: npu-smi shows no process table; cannot tell if another workload holds the card",
                    severity="warning",
                )
            )
        else:
            findings.append(_ok("card-busy", f"{label} has no running process"))

        if chip.hbm_total_mb is None:
            findings.append(_fail("hbm", f"{label}: npu-smi shows no HBM reading", severity="warning"))
            continue
        total = chip.hbm_total_mb * MiB
        reserve_mb, held_mb = _reserved_mb(chip, processes)
        usable = total - reserve_mb * MiB  # what torch-npu reports as the card's total
        budget = usable * util  # what vLLM may take
        free = total - (chip.hbm_used_mb or 0) * MiB
        summary = (
            f"{label}: {chip.hbm_total_mb} MB on the label, {reserve_mb} MB kept by the firmware at idle, so "
            f"torch sees {_gib(usable)}; gpu_memory_utilization={util} lets vLLM take {_gib(budget)}"
        )
        if free < budget:
            findings.append(
                _fail(
                    "hbm",
                    f"{summary}, but only {_gib(free)} is free ({held_mb} MB held by other processes)",
                    cause="another workload holds HBM on this card; vLLM stops at start when free memory is below "
                    "its gpu_memory_utilization share",
                    fix="free the card, or lower server.gpu_memory_utilization to "
                    f"{max(math.floor(free / usable * 100) / 100 - 0.01, 0.05):.2f}",
                )
            )
        if fp is None:
            findings.append(
                _fail(
                    "hbm",
                    f"{summary}; cannot size the model (no config.json yet)",
                    fix=_fetch_fix(config),
                    severity="warning",
                )
            )
            continue
        kv = fp.kv_bytes(config.server.max_model_len * config.server.max_num_seqs)
        need = fp.weight_bytes / tp + kv / tp + ASCEND_RUNTIME_OVERHEAD
        breakdown = (
            f"weights {_gib(fp.weight_bytes / tp)} + KV cache for {config.server.max_num_seqs} x "
            f"{config.server.max_model_len} tokens {_gib(kv / tp)} + runtime {_gib(ASCEND_RUNTIME_OVERHEAD)}"
            + (f", per card at TP={tp}" if tp > 1 else "")
        )
        if need > budget:
            findings.append(
                _fail(
                    "hbm",
                    f"{summary}; the model needs ~{_gib(need)} ({breakdown})",
                    cause="the model and its KV cache do not fit the card's usable HBM (a '64 GB' 910B gives "
                    "torch ~61 GiB)",
                    fix="raise server.tensor_parallel_size, lower server.max_model_len or server.max_num_seqs, "
                    "or raise server.gpu_memory_utilization",
                )
            )
        elif free >= budget:
            findings.append(_ok("hbm", f"{summary} >= ~{_gib(need)} needed ({breakdown})"))
    return findings


# ------------------------------------------------------------------------------------------------------ driver


def run_checks(
    config: Config,
    root: str | os.PathLike[str] = "/",
    npu_smi_output: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    annotations_path: str | os.PathLike[str] | None = None,
    skip: Collection[str] = (),
) -> list[Finding]:
    """Run every check for `config.backend` and return all findings (passes, warnings and failures).

    `npu_smi_output`: a saved `npu-smi info` output instead of running npu-smi. `environ`: the environment the
    server will get (default: this process's, plus the config's `env`). `skip`: check names to leave out, e.g.
    {"weights"} when serve downloads them afterwards, or {"port"} when the server already runs.
    """
    rooted = Path(root)
    env = {**(os.environ if environ is None else environ), **config.env}
    findings: list[Finding] = []
    if "port" not in skip:
        findings.append(check_port(config))
    if "model-files" not in skip:
        findings.append(check_model_files(config))
    if "weights" not in skip:
        findings.append(check_weights(config))

    if config.backend == "cpu":
        if "ram" not in skip:
            findings += check_ram(config, rooted, env)
        return findings

    findings += check_management_devices(rooted)
    cards, card_findings = select_cards(config, rooted, env, annotations_path)
    findings += card_findings
    if devices.present_devices(rooted):  # with no card at all, device-nodes already says so
        findings.append(check_tp(config, cards, rooted))
    findings += check_driver(rooted)
    findings += check_cann(rooted, env)
    try:
        info = npu_smi.read(npu_smi_output)
    except npu_smi.NpuSmiError as exc:
        findings.append(_fail("npu-smi", str(exc), cause=exc.cause, fix=exc.fix))
        return findings
    source = f"{npu_smi_output}" if npu_smi_output else "npu-smi info"
    findings.append(
        _ok("npu-smi", f"{source}: {len(info.chips)} chip(s)" + (f", npu-smi {info.version}" if info.version else ""))
    )
    findings += check_cards(config, cards, info, footprint(config))
    return findings


def failures(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.failed]


def raise_on_failure(findings: Iterable[Finding]) -> None:
    """Raise PreflightFailed (exit 3) that lists every failure, each with its cause and fix."""
    failed = failures(findings)
    if failed:
        lines = [f"preflight: {len(failed)} check(s) failed"] + [f"  {f.describe()}" for f in failed]
        raise PreflightFailed("\n".join(lines))


def report(findings: Iterable[Finding]) -> dict[str, Any]:
    findings = list(findings)
    return {
        "time": time.time(),
        "ok": not failures(findings),
        "findings": [asdict(f) for f in findings],
    }


def report_path(config: Config) -> Path:
    """Where serve leaves the last preflight report for the exporter sidecar: on the volume, next to the caches."""
    return config.cache_dir / "preflight.json"


def save_report(findings: Iterable[Finding], path: str | os.PathLike[str]) -> None:
    """Write the findings as JSON (atomically); the exporter publishes them as metrics."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(target.suffix + ".tmp")
    temporary.write_text(json.dumps(report(findings), indent=2) + "\n", encoding="utf-8")
    temporary.replace(target)


def load_report(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("findings"), list) else None
