"""The cpu backend: RAM for the weights, the KV cache and the runtime."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from llama_ascend.config import Config
from llama_ascend.preflight.findings import Finding, Severity, fail, ok
from llama_ascend.preflight.sizing import CPU_RUNTIME_OVERHEAD, GiB, footprint, gib


def meminfo(root: Path) -> dict[str, int]:
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
    available = meminfo(root).get("MemAvailable")
    findings = []
    if available is None:
        findings.append(fail("ram", f"cannot read {root / 'proc/meminfo'}", severity="warning"))
    elif available < need:
        findings.append(
            fail(
                "ram",
                f"{gib(available)} RAM available, the server needs ~{gib(need)} "
                f"(weights {gib(fp.weight_bytes)} + KV cache {gib(kv_space)} + runtime {gib(CPU_RUNTIME_OVERHEAD)})"
                f"{fp.note}",
                cause="other processes hold the memory, or the container's memory limit is too low",
                fix="free memory or raise the limit; or lower server.cpu_kvcache_space",
                severity=short,
            )
        )
    else:
        findings.append(
            ok(
                "ram",
                f"{gib(available)} RAM available >= ~{gib(need)} needed "
                f"(weights {gib(fp.weight_bytes)} + KV cache {gib(kv_space)} + runtime {gib(CPU_RUNTIME_OVERHEAD)})"
                f"{fp.note}",
            )
        )
    one_sequence = fp.kv_bytes(config.server.max_model_len)
    all_sequences = fp.kv_bytes(config.server.max_model_len * config.server.max_num_seqs)
    if one_sequence > kv_space:
        findings.append(
            fail(
                "kv-cache",
                f"one {config.server.max_model_len}-token sequence needs {gib(one_sequence)} of KV cache, "
                f"server.cpu_kvcache_space gives {gib(kv_space)}{fp.note}",
                cause="vLLM refuses to start when a single max-length sequence does not fit",
                fix="raise server.cpu_kvcache_space or lower server.max_model_len",
                severity=short,
            )
        )
    elif all_sequences > kv_space:
        findings.append(
            fail(
                "kv-cache",
                f"{config.server.max_num_seqs} sequences of {config.server.max_model_len} tokens need "
                f"{gib(all_sequences)} of KV cache, {gib(kv_space)} configured: fewer run at once at full length",
                fix="raise server.cpu_kvcache_space if RAM allows",
                severity="warning",
            )
        )
    else:
        findings.append(
            ok(
                "kv-cache",
                f"KV cache {gib(kv_space)} holds {config.server.max_num_seqs} x "
                f"{config.server.max_model_len} tokens ({gib(all_sequences)})",
            )
        )
    return findings
