"""Can this node run the deployment? Every check runs and every failure is reported, with its likely cause and fix.

`serve` runs these before it execs vLLM (a failed start on an NPU costs minutes); `llama-ascend preflight` runs
them alone. `root` re-roots the filesystem checks (/dev, the driver, CANN, /proc/meminfo) for tests on fake trees;
the model directory, the cache dir, the volume and the port are always the real ones. Nothing here writes: the
write checks create and remove one probe file.
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from llama_ascend import ascend_env, devices, npu_smi
from llama_ascend.config import Config, expand_path
from llama_ascend.errors import ConfigError, PreflightFailed, file_in_the_way

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


# Llama-3.1-8B(-Instruct)'s config.json, the fields the sizing reads: 8,030,261,248 parameters, 16.06 GB in bf16,
# 128 KiB of KV cache per token. The deployment's model is sized from this before its config.json is fetched.
LLAMA_31_8B = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 128256,
    "torch_dtype": "bfloat16",
    "tie_word_embeddings": False,
}
# Hub ids (case-insensitive) whose architecture is known without their config.json.
KNOWN_MODELS = {
    model_id.lower(): ("Llama-3.1-8B", LLAMA_31_8B)
    for model_id in (
        "LLM-Research/Meta-Llama-3.1-8B-Instruct",
        "LLM-Research/Meta-Llama-3.1-8B",
        "meta-llama/Llama-3.1-8B-Instruct",
        "meta-llama/Meta-Llama-3.1-8B-Instruct",
        "meta-llama/Llama-3.1-8B",
        "meta-llama/Meta-Llama-3.1-8B",
    )
}
_SIZING_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


@dataclass(frozen=True)
class ModelFootprint:
    weight_bytes: int
    kv_bytes_per_token: int
    weights_from: str  # "safetensors files", "config.json", or how the model was sized without them
    # True when the size is an assumption (an unknown model without its config.json): shortfalls are warnings.
    assumed: bool = False

    def kv_bytes(self, tokens: int) -> int:
        return self.kv_bytes_per_token * tokens

    @property
    def note(self) -> str:
        """'' when measured (files, config.json); else how the size was arrived at, for the findings."""
        return "" if self.weights_from in ("safetensors files", "config.json") else f" ({self.weights_from})"


def _dtype_bytes(config: Config, model_config: Mapping[str, Any]) -> int:
    dtype: str = config.server.dtype
    if dtype == "auto":
        dtype = str(model_config.get("torch_dtype") or model_config.get("dtype") or "bfloat16")
    return DTYPE_BYTES.get(dtype, 2)


def _read_spec(model_dir: Path) -> tuple[dict[str, Any] | None, str]:
    """config.json's text config, or None and why not."""
    try:
        spec = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "config.json is not there yet"
    except (OSError, ValueError) as exc:
        return None, f"config.json is unreadable ({exc.__class__.__name__})"
    spec = spec.get("text_config", spec) if isinstance(spec, dict) else spec
    if not isinstance(spec, dict):
        return None, "config.json is not a mapping"
    missing = [name for name in _SIZING_FIELDS if not isinstance(spec.get(name), int)]
    if missing:
        return None, f"config.json lacks {', '.join(missing)}"
    return spec, ""


def _known_spec(config: Config, why: str) -> tuple[dict[str, Any], str, bool]:
    """The architecture to size by without a usable config.json: the configured model's when llama-ascend knows its
    id, else Llama-3.1-8B's as a stated assumption."""
    dtype = config.server.dtype if config.server.dtype != "auto" else "bfloat16"
    quantized = (
        f"; sized unquantized, a {config.server.quantization} checkpoint is smaller"
        if config.server.quantization
        else ""
    )
    known = KNOWN_MODELS.get(config.model.id.lower()) if config.model.source != "local" else None
    if known:
        name, spec = known
        return spec, f"sized as {name} in {dtype} from its known architecture: {why}{quantized}", False
    what = (
        "model.path is a local dir"
        if config.model.source == "local"
        else f"model.id {config.model.id} is not one llama-ascend knows"
    )
    return LLAMA_31_8B, f"assumed to be Llama-3.1-8B in {dtype}: {why} and {what}{quantized}", True


def footprint(config: Config) -> ModelFootprint:
    """Weights (the safetensors on disk, else counted from config.json, else from the known architecture of the
    configured model or, stated, Llama-3.1-8B's) and KV bytes per token."""
    model_dir = config.model_dir
    spec, why = _read_spec(model_dir)
    sized_from, assumed = "config.json", False
    if spec is None:
        spec, sized_from, assumed = _known_spec(config, why)
    width = _dtype_bytes(config, spec)
    hidden = int(spec["hidden_size"])
    layers = int(spec["num_hidden_layers"])
    heads = int(spec["num_attention_heads"])
    kv_heads = int(spec.get("num_key_value_heads") or heads)
    head_dim = int(spec.get("head_dim") or hidden // heads)
    kv_per_token = 2 * layers * kv_heads * head_dim * width

    files = sorted(model_dir.glob("*.safetensors")) if sized_from == "config.json" else []
    if files:
        return ModelFootprint(sum(f.stat().st_size for f in files), kv_per_token, "safetensors files")
    vocab = int(spec["vocab_size"])
    inter = int(spec.get("intermediate_size") or 4 * hidden)
    per_layer = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2 + 3 * hidden * inter + 2 * hidden
    embeddings = vocab * hidden * (1 if spec.get("tie_word_embeddings") else 2)
    params = layers * per_layer + embeddings + hidden
    return ModelFootprint(params * width, kv_per_token, sized_from, assumed)


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


# ------------------------------------------------------------------------------------------------ write checks

WRITE_PROBE_PREFIX = ".llama-ascend-write-probe-"


@dataclass(frozen=True)
class WriteProblem:
    """Why a directory cannot be created or written. `message` is a predicate of the path ("is on a read-only
    filesystem"), so callers put the key or flag and the path before it; `fix` names the key or flag `label`."""

    message: str
    fix: str
    cause: str = ""


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    try:
        stats = os.statvfs(_nearest_existing(Path(path).absolute()))
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def write_problem(path: str | os.PathLike[str], label: str, instead: str = "a directory") -> WriteProblem | None:
    """Can `path` be created (when missing) and written as a directory? None when it can.

    Finds a regular file in the way, a read-only filesystem, a directory this user may not write and a full
    filesystem, by creating and removing one small file in the nearest existing directory: nothing is left behind
    and nothing is created on the way (`serve --dry-run` runs this too).
    """
    target = Path(path).absolute()
    blocker = file_in_the_way(target)
    if blocker is not None:
        what = f"{blocker} is a regular file, not a directory"
        return WriteProblem(
            "is a regular file, not a directory" if blocker == target else f"cannot be created: {what}",
            f"move {blocker} away, or point {label} at {instead}",
            cause="a file sits where the directory (or one of its parents) should be",
        )
    existing = _nearest_existing(target)
    where = "is" if existing == target else f"would be created under {existing}, which is"
    try:
        handle, probe = tempfile.mkstemp(prefix=WRITE_PROBE_PREFIX, dir=existing)
        try:
            os.write(handle, b"probe")
        finally:
            os.close(handle)
            os.unlink(probe)
    except OSError as exc:
        code = exc.errno
        if code == errno.EROFS:
            return WriteProblem(
                f"{where} on a read-only filesystem",
                f"mount the volume read-write (docker -v SRC:DST:rw; Kubernetes: readOnly: false), or point {label} "
                f"at {instead} on a writable filesystem",
                cause="the volume is mounted read-only",
            )
        if code in (errno.EACCES, errno.EPERM):
            return WriteProblem(
                f"{where} not writable by uid {os.getuid()}",
                f"give this user write access (chown/chmod; Kubernetes: the pod's securityContext.fsGroup), or point "
                f"{label} at {instead} it may write",
                cause="the directory belongs to another user",
            )
        if code in (errno.ENOSPC, errno.EDQUOT):
            return WriteProblem(
                f"{where} on a full filesystem ({exc.strerror})",
                f"free space or enlarge the volume, or point {label} at {instead} on another filesystem",
            )
        return WriteProblem(
            f"{where} not writable ({exc.strerror or exc})", f"point {label} at {instead} that is writable"
        )
    return None


def _writable_message(path: Path) -> str:
    """'is writable, N GiB free' or 'can be created (under D, N GiB free)'."""
    existing = _nearest_existing(path.absolute())
    free = free_bytes(path)
    room = f", {_gib(free)} free" if free is not None else ""
    if existing == path.absolute():
        return f"is writable{room}"
    return f"can be created (under {existing}{room})"


def check_cache_dir(config: Config) -> Finding:
    """server.cache_dir (compile caches, TMPDIR, the preflight report) can be created and written."""
    path = config.cache_dir
    label = "server.cache_dir"
    if config.server.cache_dir:
        name = f"{label} {path}"
    else:
        default = "$LLAMA_ASCEND_CACHE/compile-cache" if config.model.source == "local" else "<model.path>/cache"
        name = f"{label} (unset: {default}) {path}"
    problem = write_problem(path, label)
    if problem:
        return _fail("cache-dir", f"{name} {problem.message}", cause=problem.cause, fix=problem.fix)
    return _ok("cache-dir", f"{name} {_writable_message(path)}")


def check_volume(config: Config) -> Finding | None:
    """model.path, where `fetch` writes the weights (hub sources), can be created and written; None for `local`
    (the model dir is only read)."""
    if config.model.source == "local":
        return None
    from llama_ascend import fetch

    root = expand_path(config.model.path)
    if fetch.is_complete(config):
        return _ok("volume", f"model.path {root}: the weights are complete, fetch writes nothing there")
    problem = write_problem(root, "model.path")
    if problem:
        return _fail(
            "volume",
            f"model.path {root} {problem.message}: fetch cannot download the weights there",
            cause=problem.cause,
            fix=problem.fix,
        )
    fp = footprint(config)
    free = free_bytes(root)
    if free is not None and free < fp.weight_bytes:
        return _fail(
            "volume",
            f"model.path {root}: {_gib(free)} free, the weights need ~{_gib(fp.weight_bytes)}{fp.note}",
            fix="free space or enlarge the volume (fetch checks the exact size before it downloads)",
            severity="warning",
        )
    return _ok("volume", f"model.path {root} {_writable_message(root)}: fetch downloads the weights there")


def check_writes(config: Config, skip: Collection[str] = ()) -> list[Finding]:
    """What serve will write: the cache dir, and the volume when the weights are still to be fetched."""
    findings = []
    if "cache-dir" not in skip:
        findings.append(check_cache_dir(config))
    if "volume" not in skip:
        volume = check_volume(config)
        if volume is not None:
            findings.append(volume)
    return findings


def require_writable_dir(label: str, path: str | os.PathLike[str]) -> None:
    """Raise ConfigError (exit 2) naming `label` when the directory cannot be created or written; creates nothing."""
    problem = write_problem(path, label)
    if problem:
        raise ConfigError(f"{label} {path} {problem.message}; fix: {problem.fix}")


def require_writable_file(label: str, path: str | os.PathLike[str]) -> None:
    """Raise ConfigError (exit 2) naming `label` when the file cannot be written (a directory there, or its
    directory cannot be created or written); creates nothing."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{label} {path}: is a directory; fix: name a file, e.g. {target / 'preflight.json'}")
    directory = target.absolute().parent
    problem = write_problem(directory, label, instead="a file elsewhere")
    if problem:
        raise ConfigError(
            f"{label} {path}: cannot write it: its directory {directory} {problem.message}; fix: {problem.fix}"
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
    short: Severity = "warning" if fp.assumed else "error"  # an assumed size cannot fail the node
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
                f"(weights {_gib(fp.weight_bytes)} + KV cache {_gib(kv_space)} + runtime {_gib(CPU_RUNTIME_OVERHEAD)})"
                f"{fp.note}",
                cause="other processes hold the memory, or the container's memory limit is too low",
                fix="free memory or raise the limit; or lower server.cpu_kvcache_space",
                severity=short,
            )
        )
    else:
        findings.append(
            _ok(
                "ram",
                f"{_gib(available)} RAM available >= ~{_gib(need)} needed "
                f"(weights {_gib(fp.weight_bytes)} + KV cache {_gib(kv_space)} + runtime {_gib(CPU_RUNTIME_OVERHEAD)})"
                f"{fp.note}",
            )
        )
    one_sequence = fp.kv_bytes(config.server.max_model_len)
    all_sequences = fp.kv_bytes(config.server.max_model_len * config.server.max_num_seqs)
    if one_sequence > kv_space:
        findings.append(
            _fail(
                "kv-cache",
                f"one {config.server.max_model_len}-token sequence needs {_gib(one_sequence)} of KV cache, "
                f"server.cpu_kvcache_space gives {_gib(kv_space)}{fp.note}",
                cause="vLLM refuses to start when a single max-length sequence does not fit",
                fix="raise server.cpu_kvcache_space or lower server.max_model_len",
                severity=short,
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


def check_cards(config: Config, cards: list[int], info: npu_smi.NpuSmiInfo, fp: ModelFootprint) -> list[Finding]:
    findings: list[Finding] = []
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
        findings += _check_hbm(config, label, chip, processes, fp)
    return findings


def _util_up(fraction: float) -> float:
    return math.ceil(fraction * 100 - 1e-9) / 100


def _smallest_tp(fp: ModelFootprint, tokens: int, room: float, above: int) -> int | None:
    """The smallest tensor_parallel_size over `above` whose per-card weights + KV for `tokens` + runtime fit `room`."""
    for tp in (1, 2, 4, 8):
        if tp > above and (fp.weight_bytes + fp.kv_bytes(tokens)) / tp + ASCEND_RUNTIME_OVERHEAD <= room:
            return tp
    return None


def _check_hbm(
    config: Config, label: str, chip: npu_smi.Chip, processes: list[npu_smi.Process] | None, fp: ModelFootprint
) -> list[Finding]:
    """HBM against the model: vLLM stops at start when free HBM is below its gpu_memory_utilization share, or when
    that share cannot hold the weights plus one max_model_len sequence of KV cache (plus the runtime's margin).
    Advice never proposes a utilization below what holds the weights; when none can, it says what else would."""
    tp, util = config.server.tensor_parallel_size, config.server.gpu_memory_utilization
    length, seqs = config.server.max_model_len, config.server.max_num_seqs
    total = (chip.hbm_total_mb or 0) * MiB
    reserve_mb, held_mb = _reserved_mb(chip, processes)
    usable = total - reserve_mb * MiB  # what torch-npu reports as the card's total
    budget = usable * util  # what vLLM may take
    free = total - (chip.hbm_used_mb or 0) * MiB
    weights = fp.weight_bytes / tp
    per_token = fp.kv_bytes_per_token / tp
    least = weights + per_token * length + ASCEND_RUNTIME_OVERHEAD  # below this vLLM refuses to start
    need = weights + per_token * length * seqs + ASCEND_RUNTIME_OVERHEAD  # every sequence at full length
    per_card = f", per card at TP={tp}" if tp > 1 else ""
    least_text = (
        f"~{_gib(least)} (weights {_gib(weights)} + one {length}-token sequence's KV cache {_gib(per_token * length)} "
        f"+ runtime {_gib(ASCEND_RUNTIME_OVERHEAD)}{per_card})"
    )
    breakdown = (
        f"weights {_gib(weights)} + KV cache for {seqs} x {length} tokens {_gib(per_token * length * seqs)} + runtime "
        f"{_gib(ASCEND_RUNTIME_OVERHEAD)}{per_card}"
    )
    summary = (
        f"{label}: {chip.hbm_total_mb} MB on the label, {reserve_mb} MB kept by the firmware at idle, so "
        f"torch sees {_gib(usable)}; gpu_memory_utilization={util} lets vLLM take {_gib(budget)}"
    )
    short: Severity = "warning" if fp.assumed else "error"  # an assumed size cannot fail the node
    findings = []

    if free < budget:
        most = math.floor(free / usable * 100) / 100 - 0.01  # the largest share the free HBM gives, with a margin
        lowest = _util_up(least / usable)
        if most >= lowest:
            room = int((most * usable - weights - ASCEND_RUNTIME_OVERHEAD) / per_token)
            fix = (
                f"free the card, or lower server.gpu_memory_utilization to {most:.2f}: that still holds the weights "
                f"and ~{room} tokens of KV cache ({room // length} sequence(s) of {length} tokens at once)"
            )
        else:
            fix = (
                f"free the card (stop the workload that holds it) or schedule on a free card; no "
                f"gpu_memory_utilization fits: the {_gib(free)} free cannot hold {least_text}"
            )
            wider = _smallest_tp(fp, length, free, tp)
            if wider:
                fix += (
                    f"; or tensor_parallel_size={wider} on {wider} cards with this much free each "
                    f"(~{_gib(fp.weight_bytes / wider + fp.kv_bytes(length) / wider + ASCEND_RUNTIME_OVERHEAD)} "
                    "per card)"
                )
        findings.append(
            _fail(
                "hbm",
                f"{summary}, but only {_gib(free)} is free ({held_mb} MB held by other processes){fp.note}",
                cause="another workload holds HBM on this card; vLLM stops at start when free memory is below "
                "its gpu_memory_utilization share",
                fix=fix,
            )
        )

    if least > budget:
        if least <= usable:
            fix = f"raise server.gpu_memory_utilization to {_util_up(least / usable):.2f} or more" + (
                f" ({_util_up(need / usable):.2f} holds all {seqs} sequences at full length)" if need <= usable else ""
            )
            fix += ", or lower server.max_model_len, or raise server.tensor_parallel_size"
        else:
            options = []
            wider = _smallest_tp(fp, length, budget, tp)
            if wider:
                per = fp.weight_bytes / wider + fp.kv_bytes(length) / wider + ASCEND_RUNTIME_OVERHEAD
                options.append(f"raise server.tensor_parallel_size to {wider} (~{_gib(per)} per card)")
            shorter = int((budget - weights - ASCEND_RUNTIME_OVERHEAD) / per_token) // 256 * 256
            if shorter > 0:
                options.append(f"lower server.max_model_len to {shorter} or less")
            fix = "even gpu_memory_utilization=1.0 cannot hold that: " + (
                " or ".join(options) if options else "use a card with more HBM or a smaller model"
            )
        findings.append(
            _fail(
                "hbm",
                f"{summary}; the model needs at least {least_text}{fp.note}",
                cause="vLLM refuses to start when its share cannot hold the weights and one max_model_len sequence "
                "(a '64 GB' 910B gives torch ~61 GiB)",
                fix=fix,
                severity=short,
            )
        )
    elif need > budget:
        fit = int((budget - weights - ASCEND_RUNTIME_OVERHEAD) / (per_token * length))
        raise_to = _util_up(need / usable)
        findings.append(
            _fail(
                "hbm",
                f"{summary}; {seqs} sequences of {length} tokens need ~{_gib(need)} ({breakdown}){fp.note}: vLLM "
                f"starts, but only {fit} of them fit at full length at once",
                fix=(f"raise server.gpu_memory_utilization to {raise_to:.2f}, or " if raise_to <= 1 else "")
                + "lower server.max_num_seqs or server.max_model_len, or raise server.tensor_parallel_size",
                severity="warning",
            )
        )
    elif free >= budget:
        findings.append(_ok("hbm", f"{summary} >= ~{_gib(need)} needed ({breakdown}){fp.note}"))
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
    findings += check_writes(config, skip)

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
