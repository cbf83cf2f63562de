"""Which NPUs the server will use: the device nodes, the allocation (device plugin / Ascend Docker Runtime), the
runtime's logical ids, and enough of them for tensor_parallel_size."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from llama_ascend import devices
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
