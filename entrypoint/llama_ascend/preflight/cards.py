"""Which NPUs the server will use: the device nodes, the allocation (device plugin / Ascend Docker Runtime), the
runtime's logical ids, enough of them for tensor_parallel_size, and whether they are whole cards (vNPUs and soft
partitions do not run PIECEWISE capture)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from llama_ascend import devices
from llama_ascend.combinations import captures_graphs, graph_setting
from llama_ascend.config import Config
from llama_ascend.preflight.findings import Finding, fail, ok


def check_management_devices(root: Path) -> list[Finding]:
    findings = []
    for name in devices.MANAGEMENT_DEVICES:
        node = root / "dev" / name
        if node.exists():
            findings.append(ok("device-nodes", f"/dev/{name} present"))
        else:
            findings.append(
                fail(
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
    """The physical cards the server will use, and the findings about how they were chosen and mounted.

    The cards come from the allocation (the device plugin's annotation or ASCEND_VISIBLE_DEVICES) when there is one,
    else the first `tensor_parallel_size` mounted ones; ASCEND_RT_VISIBLE_DEVICES, when set, picks among the mounted
    cards by logical id (what the runtime does); unset, serve derives it from the allocation."""
    tp = config.server.tensor_parallel_size
    present = devices.present_devices(root)
    try:
        allocated = devices.allocation(environ, annotations_path)
    except ValueError as exc:
        return [], [fail("visible-devices", str(exc), fix="use a comma-separated list of card ids, e.g. 0,1")]
    if not present:
        virtual = devices.virtual_device_nodes(root)
        if virtual:
            return virtual[:tp], [_virtual_nodes_only(virtual)]
        return [], [
            fail(
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
        chosen = [card for card in cards if card in present]
        findings = [_allocation_mounted(cards, source, present)]
        expected = devices.logical_ids(chosen, present) or []
    else:
        source = ""
        chosen = present[:tp]
        findings = []
        expected = list(range(min(tp, len(present))))
    rt_value = environ.get(devices.RT_VISIBLE_ENV, "").strip()
    if rt_value:
        picked, finding = _runtime_visible(rt_value, present, expected, source)
        return (picked if picked is not None else chosen), [*findings, finding]
    if not allocated:
        message = f"cards {', '.join(map(str, chosen))} visible (no allocation given: the runtime uses the first {tp})"
        return chosen, [ok("device-nodes", message)]
    env = devices.runtime_device_env(environ, annotations_path, root)
    if env:
        ids = env[devices.RT_VISIBLE_ENV]
        findings.append(
            ok("visible-devices", f"serve sets {devices.RT_VISIBLE_ENV}={ids} for cards {', '.join(map(str, chosen))}")
        )
    return chosen, findings


def _virtual_nodes_only(virtual: list[int]) -> Finding:
    """Only /dev/vdavinci<N> nodes: vNPUs passed under the host's name (a plain `docker run --device`)."""
    nodes = ", ".join(f"/dev/vdavinci{v}" for v in virtual)
    first = virtual[0]
    return fail(
        "device-nodes",
        f"no /dev/davinciN, but {nodes}: vNPU(s) mounted under the host's name",
        cause="the vNPU was passed with --device /dev/vdavinci<N>, which keeps the host's name; the Ascend Docker "
        "Runtime and the Ascend device plugin mount a vNPU as /dev/davinci<N> instead",
        fix=f"mount it as they do: --device /dev/vdavinci{first}:/dev/davinci{first}, or with the Ascend Docker "
        f"Runtime -e ASCEND_VISIBLE_DEVICES={first} -e ASCEND_RUNTIME_OPTIONS=VIRTUAL",
        severity="warning",
    )


def _allocation_mounted(cards: list[int], source: str, present: list[int]) -> Finding:
    missing = [card for card in cards if card not in present]
    if not missing:
        return ok("device-nodes", f"cards {', '.join(map(str, cards))} from {source} are mounted")
    return fail(
        "device-nodes",
        f"{source} allocates card(s) {', '.join(map(str, missing))}, but "
        f"{', '.join(f'/dev/davinci{c}' for c in missing)} is not in the container "
        f"(present: {', '.join(f'davinci{c}' for c in present)})",
        cause="devices visible to the allocation but not mounted: the container was started without "
        "the Ascend Docker Runtime, or with --device for other cards",
        fix=f"mount the allocated cards (--device /dev/davinci{missing[0]} ...) or run the pod with the "
        "Ascend Docker Runtime so ASCEND_VISIBLE_DEVICES mounts them",
    )


def _runtime_visible(
    value: str, present: list[int], expected: list[int], source: str
) -> tuple[list[int] | None, Finding]:
    """The cards ASCEND_RT_VISIBLE_DEVICES picks (logical ids into the mounted cards), or None when it names ids the
    runtime does not have; `expected` is what it should say, `source` the allocation, if any."""
    try:
        logical = devices.parse_ids(value)
    except ValueError as exc:
        return None, fail("visible-devices", f"{devices.RT_VISIBLE_ENV}={value!r}: {exc}")
    beyond = [i for i in logical if i >= len(present)]
    if beyond:
        return None, fail(
            "visible-devices",
            f"{devices.RT_VISIBLE_ENV}={value} names logical id(s) {', '.join(map(str, beyond))}, "
            f"but the runtime numbers the {len(present)} mounted card(s) "
            f"({', '.join(f'davinci{c}' for c in present)}) from 0",
            cause="physical card ids used where the runtime expects logical ones (inside a container the first "
            "mounted card is 0" + (f"; the allocation is {source})" if source else ")"),
            fix=f"set {devices.RT_VISIBLE_ENV}={','.join(map(str, expected))} or unset it"
            + (" (serve derives it from the allocation)" if source else ""),
        )
    chosen = [present[i] for i in logical]
    return chosen, ok("visible-devices", f"{devices.RT_VISIBLE_ENV}={value} -> cards {chosen}")


def check_tp(config: Config, cards: list[int], root: Path) -> Finding:
    tp = config.server.tensor_parallel_size
    if len(cards) >= tp:
        return ok("tensor-parallel", f"tensor_parallel_size={tp} <= {len(cards)} usable card(s)")
    present = devices.present_devices(root)
    return fail(
        "tensor-parallel",
        f"tensor_parallel_size={tp} needs {tp} card(s), the runtime can use {len(cards)} "
        f"({', '.join(f'davinci{c}' for c in cards) or 'none'}; mounted: "
        f"{', '.join(f'davinci{c}' for c in present) or 'none'})",
        cause=f"the pod requested fewer cards than TP, or {devices.RT_VISIBLE_ENV} hides some",
        fix=f"request {tp} card(s) (huawei.com/Ascend910: {tp}), mount them all, and leave "
        f"{devices.RT_VISIBLE_ENV} unset; or lower server.tensor_parallel_size",
    )


# vCANN-RT, the library behind NPU soft partitioning (mind-cluster "virtual instance with vCANN RT"): the whole card is
# mounted into several containers and /etc/ld.so.preload loads libvruntime.so into every process, which holds each
# container to its share of the card (Ascend/mind-cluster docs/zh/scheduling/usage/virtual_instance/
# virtual_instance_with_vcann_rt/01_soft_allocation_virtualization.md).
LD_SO_PRELOAD = "etc/ld.so.preload"
VCANN_RT_LIBRARY = "libvruntime.so"


def soft_partition_library(root: Path) -> str | None:
    """The libvruntime.so entry of <root>/etc/ld.so.preload, or None when vCANN-RT is not preloaded."""
    try:
        text = (root / LD_SO_PRELOAD).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return next((entry for entry in text.split() if VCANN_RT_LIBRARY in entry), None)


def check_vnpu(config: Config, root: Path, cards: list[int]) -> Finding:
    """Whole cards, or a partition of one: vLLM-Ascend 0.18.0 does not run PIECEWISE capture on a soft-partitioned NPU
    (vllm-project/vllm-ascend issue #8585; "Common Limitations and Caveats" in its docs/source/user_guide/
    feature_guide/graph_mode.md); a hardware vNPU gets a warning, as the same stream budget applies to it unverified."""
    setting = graph_setting(config)
    piecewise = captures_graphs(config) and config.server.compilation == "PIECEWISE"
    fix = (
        "--set server.compilation=FULL_DECODE_ONLY (one graph per batch size instead of num_hidden_layers + 1 "
        "pieces) or --set server.enforce_eager=true; or run on a whole card"
    )
    # vllm_ascend/utils.py update_aclgraph_sizes: "we can only capture 1800 graphs at most" (MAX_CAPTURE_SIZE),
    # "bounded by the number of streams, which is 2048"; ACL_Graph.md: piecewise capture needs a stream per graph.
    budget = (
        "sizes ACL graph capture for a whole device's 2048 streams (update_aclgraph_sizes in vllm_ascend/utils.py: at "
        "most 1800 graphs), and PIECEWISE needs one stream per graph, num_hidden_layers + 1 of them per batch size"
    )
    library = soft_partition_library(root)
    if library:
        found = f"soft-partitioned NPU (vCANN-RT: /{LD_SO_PRELOAD} loads {library})"
        if not piecewise:
            return ok("vnpu", f"{found} with {setting}: not PIECEWISE, which soft partitions do not run")
        return fail(
            "vnpu",
            f"{found} with {setting}",
            cause=f"vLLM-Ascend 0.18.0 does not support NPU soft partitioning with PIECEWISE (issue #8585, its "
            f"graph_mode.md): it {budget}, while a soft partition gets only its share of the streams",
            fix=fix,
        )
    vnpus = sorted({c for c in cards if c >= devices.VNPU_FIRST_ID} | set(devices.virtual_device_nodes(root)))
    if vnpus:
        found = f"vNPU(s) {', '.join(map(str, vnpus))} (hardware partitions: ids from {devices.VNPU_FIRST_ID})"
        if not piecewise:
            return ok("vnpu", f"{found} with {setting}: not PIECEWISE")
        return fail(
            "vnpu",
            f"{found} with {setting}",
            cause=f"vLLM-Ascend {budget}; that fails on soft partitions, which get a share of the streams (issue "
            "#8585); a vNPU gets its template's share of AICore and HBM, and whether it keeps all of the card's "
            "streams is not documented",
            fix=fix,
            severity="warning",
        )
    return ok("vnpu", f"card(s) {', '.join(map(str, cards))}: whole cards (no vNPU, no vCANN-RT soft partition)")
