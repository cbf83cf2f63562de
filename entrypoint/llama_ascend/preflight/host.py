"""What the host gives the container besides the cards: CPUs for vLLM-Ascend's CPU binding, and /dev/shm for vLLM's
tensor-parallel message queues."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llama_ascend.config import Config
from llama_ascend.preflight.findings import Finding, fail, ok
from llama_ascend.preflight.sizing import GiB, MiB, gib

# vLLM-Ascend 0.18.0 pins each NPU worker's threads to a set of CPUs of its own (vllm_ascend/cpu_binding.py, on by
# default: `enable_cpu_binding` in vllm_ascend/ascend_config.py): `MIN_CPUS_PER_NPU = 5  # 2(IRQ) + 1(main, at least
# 1 CPU) + 1(acl) + 1(release)`. With fewer it raises "Insufficient CPUs for binding ...", which the worker logs as
# "Bind cpus failed in rank<N> ... Skip binding cpu." (vllm_ascend/worker/worker.py) and runs unbound.
MIN_CPUS_PER_NPU = 5


def binds_cpus(machine: str) -> bool:
    """Whether vLLM-Ascend binds CPUs on this architecture: `is_arm_cpu` in vllm_ascend/cpu_binding.py (aarch64,
    arm64, arm*; x86 and anything unknown are skipped)."""
    arch = machine.lower()
    return arch in {"aarch64", "arm64"} or arch.startswith("arm")


def cpu_list_size(text: str) -> int:
    """The number of CPUs in a list like `0-3,8,10-11` (Cpus_allowed_list); ValueError for anything else."""
    count = 0
    for item in text.strip().split(","):
        low, _, high = item.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def allowed_cpus(root: Path) -> tuple[int, str]:
    """The CPUs this container may run on and where that was read: Cpus_allowed_list of <root>/proc/self/status,
    which vLLM-Ascend's binder reads too (ALLOWED_CPUS_PATH), else this process's CPU affinity."""
    status = root / "proc/self/status"
    try:
        for line in status.read_text(encoding="utf-8", errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "Cpus_allowed_list":
                return cpu_list_size(value), f"Cpus_allowed_list {value.strip()} in /proc/self/status"
    except (OSError, ValueError):
        pass
    return len(os.sched_getaffinity(0)), "this process's CPU affinity"


def cpu_quota(root: Path) -> tuple[float, str] | None:
    """The CPUs' worth of time cgroup v2 allows (<root>/sys/fs/cgroup/cpu.max, `quota period`), or None: no limit
    (`max`), no cgroup v2, or a file that is not `quota period`."""
    try:
        raw = (root / "sys/fs/cgroup/cpu.max").read_text(encoding="utf-8").strip()
        quota, period = raw.split()
        if quota == "max":
            return None
        return int(quota) / int(period), f"cgroup cpu.max {raw}"
    except (OSError, ValueError, ZeroDivisionError):
        return None


def cpus_text(value: float) -> str:
    return f"{value:g}"


def check_cpu_binding(config: Config, root: Path, machine: str) -> Finding:
    """At least MIN_CPUS_PER_NPU CPUs per NPU (server.tensor_parallel_size) on an ARM host, where vLLM-Ascend binds
    them: fewer in the cpuset and the binding fails; a quota below it throttles the bound threads. A warning: the
    server still starts."""
    if not binds_cpus(machine):
        return ok("cpu-binding", f"{machine} host: vLLM-Ascend binds CPUs to NPUs only on ARM, nothing to check")
    if not config.server.additional_config.get("enable_cpu_binding", True):
        return ok("cpu-binding", "server.additional_config.enable_cpu_binding is off: vLLM-Ascend binds no CPUs")
    tp = config.server.tensor_parallel_size
    need = MIN_CPUS_PER_NPU * tp
    allowed, allowed_source = allowed_cpus(root)
    quota = cpu_quota(root)
    counted = f"{allowed} CPUs ({allowed_source})" + (f", {cpus_text(quota[0])} by {quota[1]}" if quota else "")
    npus = f"tensor_parallel_size={tp} NPU(s)"
    fix = (
        f"give the container at least {need} CPUs (docker run --cpus / --cpuset-cpus; Kubernetes: the pod's "
        f"resources.requests.cpu and any CPU limit at {need} or more), or lower server.tensor_parallel_size"
    )
    reserved = (
        f"vLLM-Ascend binds {MIN_CPUS_PER_NPU} CPUs to each NPU's worker on ARM hosts (2 for the NPU's interrupts, "
        "1 or more for the main thread, 1 for ACL, 1 for releases: MIN_CPUS_PER_NPU in vllm_ascend/cpu_binding.py)"
    )
    if allowed < need:
        return fail(
            "cpu-binding",
            f"{counted} for {npus}: fewer than {MIN_CPUS_PER_NPU} per NPU ({need} needed)",
            cause=f'{reserved}; with fewer the binding fails ("Insufficient CPUs for binding"), the worker logs "Bind '
            'cpus failed ... Skip binding cpu." and runs unbound, with cross-NUMA traffic and less steady latency',
            fix=f"{fix}; to run unbound without the attempt: --set server.additional_config.enable_cpu_binding=false",
            severity="warning",
        )
    if quota and quota[0] < need:
        return fail(
            "cpu-binding",
            f"{counted} for {npus}: the quota is fewer than {MIN_CPUS_PER_NPU} CPUs per NPU ({need} needed)",
            cause=f"{reserved}; the binding succeeds on the cpuset, but the cgroup quota gives those threads only "
            f"{cpus_text(quota[0])} CPUs' time, so they are throttled and a host-bound decode slows down",
            fix=fix,
            severity="warning",
        )
    return ok("cpu-binding", f"{counted} for {npus}: at least {MIN_CPUS_PER_NPU} per NPU ({need} needed)")


# What vLLM 0.18.0 keeps in /dev/shm: its message queues. A ShmRingBuffer (vllm/distributed/device_communicators/
# shm_broadcast.py) is one shared-memory segment of `max_chunks x (max_chunk_bytes + 1 + n_reader)` bytes, and tmpfs
# fills it as messages are written. Only the multiprocessing executor creates them, which vLLM picks for
# tensor_parallel_size > 1 (vllm/config/parallel.py: a world size of 1 gets "uni", the worker in-process); vLLM-Ascend's
# AscendMultiprocExecutor (vllm_ascend/patch/platform/patch_multiproc_executor.py) creates the same ones:
# - the scheduler output broadcast to every worker: VLLM_MQ_MAX_CHUNK_BYTES_MB (vllm/envs.py, default 16) MiB x 10
#   chunks (MessageQueue's default max_chunks), vllm/v1/executor/multiproc_executor.py MultiprocExecutor._init_executor;
# - one output queue per worker, `MessageQueue(1, 1)` with the defaults, 24 MiB x 10 (WorkerProc._init_message_queues);
# - the tensor-parallel group's broadcaster, `1 << 22` bytes x 6 (vllm/distributed/parallel_state.py, GroupCoordinator
#   with use_message_queue_broadcaster, which init_model_parallel sets for the "tp" group).
MQ_CHUNK_MIB_ENV = "VLLM_MQ_MAX_CHUNK_BYTES_MB"
MQ_BROADCAST_CHUNK_MIB = 16
MQ_CHUNKS = 10
MQ_OUTPUT_CHUNK_BYTES = 24 * MiB
TP_BROADCAST_CHUNK_BYTES = 1 << 22
TP_BROADCAST_CHUNKS = 6
# For what else lives there (Python's multiprocessing semaphores, torch tensors shared between processes): a server
# with tensor_parallel_size 1 needs only this, which the runtimes' 64 MiB default holds.
SHM_MARGIN = 64 * MiB


@dataclass(frozen=True)
class ShmNeed:
    total: int
    breakdown: str


def ring_buffer_bytes(chunk_bytes: int, chunks: int, readers: int) -> int:
    return chunks * (chunk_bytes + 1 + readers)


def mib(size: float) -> str:
    return gib(size) if size >= GiB else f"{size / MiB:.0f} MiB"


def shm_need(tp: int, environ: Mapping[str, str]) -> ShmNeed:
    """/dev/shm the server needs at `tp`: vLLM's message queues plus SHM_MARGIN."""
    if tp == 1:
        return ShmNeed(SHM_MARGIN, f"TP 1 runs its worker in-process, without message queues; margin {mib(SHM_MARGIN)}")
    try:
        chunk_mib = int(environ.get(MQ_CHUNK_MIB_ENV) or MQ_BROADCAST_CHUNK_MIB)
    except ValueError:
        chunk_mib = MQ_BROADCAST_CHUNK_MIB
    broadcast = ring_buffer_bytes(chunk_mib * MiB, MQ_CHUNKS, tp)
    output = ring_buffer_bytes(MQ_OUTPUT_CHUNK_BYTES, MQ_CHUNKS, 1)
    group = ring_buffer_bytes(TP_BROADCAST_CHUNK_BYTES, TP_BROADCAST_CHUNKS, tp - 1)
    total = broadcast + tp * output + group + SHM_MARGIN
    breakdown = (
        f"vLLM's message queues: scheduler broadcast {mib(broadcast)} + {tp} worker outputs of {mib(output)} + TP "
        f"broadcaster {mib(group)}; margin {mib(SHM_MARGIN)}"
    )
    return ShmNeed(total, breakdown)


_SIZE_UNITS = {"": 1, "k": 1024, "m": MiB, "g": GiB, "t": 1024 * GiB}


def shm_size(root: Path) -> tuple[int, str] | None:
    """The size of /dev/shm and where it was read: the `size=` option of its mount in <root>/proc/mounts (the last
    one: a later mount hides an earlier), else statvfs of <root>/dev/shm; None when neither says."""
    options = None
    try:
        for line in (root / "proc/mounts").read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[1] == "/dev/shm":
                options = fields[3]
    except OSError:
        pass
    for option in (options or "").split(","):
        name, _, value = option.partition("=")
        unit = value[-1:].lower() if value[-1:].isalpha() else ""
        number = value[: len(value) - len(unit)]
        if name == "size" and number.isdigit() and unit in _SIZE_UNITS:
            return int(number) * _SIZE_UNITS[unit], f"{option} in /proc/mounts"
    try:
        stats = os.statvfs(root / "dev/shm")
    except OSError:
        return None
    return stats.f_blocks * stats.f_frsize, "statvfs of /dev/shm"


def check_shm(config: Config, root: Path, environ: Mapping[str, str]) -> Finding:
    tp = config.server.tensor_parallel_size
    need = shm_need(tp, environ)
    found = shm_size(root)
    if found is None:
        return fail(
            "shm",
            f"cannot tell the size of /dev/shm (no /dev/shm mount in /proc/mounts, no /dev/shm): "
            f"tensor_parallel_size={tp} needs ~{mib(need.total)} ({need.breakdown})",
            severity="warning",
        )
    size, source = found
    if size >= need.total:
        return ok(
            "shm",
            f"/dev/shm {mib(size)} ({source}) >= ~{mib(need.total)} for tensor_parallel_size={tp} ({need.breakdown})",
        )
    whole = math.ceil(need.total / GiB)
    cause = (
        "the container runtime's default /dev/shm: 64 MiB (Docker; Kubernetes likewise unless a memory-backed "
        "emptyDir is mounted at /dev/shm). The TP workers exchange every step through these queues, and a write "
        "past the tmpfs limit kills the process (SIGBUS)"
        if tp > 1
        else "a /dev/shm below even the container runtimes' 64 MiB default"
    )
    return fail(
        "shm",
        f"/dev/shm is {mib(size)} ({source}); tensor_parallel_size={tp} needs ~{mib(need.total)} ({need.breakdown})",
        cause=cause,
        fix=f"docker run --shm-size={whole}g (or --ipc=host); Kubernetes: the chart mounts a memory-backed emptyDir "
        f"at /dev/shm, size it with `helm ... --set shm.sizeLimit={whole}Gi` (it counts against the pod's memory "
        "limit)",
    )
