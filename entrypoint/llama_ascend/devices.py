"""Which NPUs this container was given, and the ASCEND_RT_VISIBLE_DEVICES that makes the runtime use all of them.

Three numbering schemes meet here:
- physical ids: /dev/davinci<N> on the host, `NPU` in the host's npu-smi, what Kubernetes' Ascend device plugin
  allocates (pod annotation `huawei.com/AscendReal: "Ascend910-2,Ascend910-3"`) and what the Ascend Docker Runtime
  mounts for `ASCEND_VISIBLE_DEVICES=2,3`;
- logical ids: what the CANN runtime (ACL, torch-npu, vLLM-Ascend) numbers the cards it can open, from 0, in the
  order of the /dev/davinci<N> nodes present in the container;
- `ASCEND_RT_VISIBLE_DEVICES`: a list of logical ids that restricts the runtime further.

A container given cards 2 and 3 sees them as logical 0 and 1; `ASCEND_RT_VISIBLE_DEVICES=2,3` there names cards
that do not exist, and an unset variable with TP=2 works only when both nodes are mounted. `runtime_device_env`
derives the right value from the allocation so `serve` can pass it to vLLM.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

ANNOTATION_KEY = "huawei.com/AscendReal"
ANNOTATIONS_ENV = "LLAMA_ASCEND_POD_ANNOTATIONS"
# Where the chart mounts the pod's annotations with the downward API (`fieldRef: metadata.annotations`).
DEFAULT_ANNOTATIONS_PATH = "/etc/podinfo/annotations"
MANAGEMENT_DEVICES = ("davinci_manager", "devmm_svm", "hisi_hdc")
VISIBLE_ENV = "ASCEND_VISIBLE_DEVICES"  # physical ids, read by the Ascend Docker Runtime / set by the device plugin
RT_VISIBLE_ENV = "ASCEND_RT_VISIBLE_DEVICES"  # logical ids, read by the CANN runtime

_DEVICE_NODE = re.compile(r"^davinci(\d+)$")
# A vNPU (a hardware partition of a card, made with `npu-smi set -t create-vnpu`) is /dev/vdavinci<id> on the host,
# with ids from 100 (Ascend/mind-cluster docs/zh/scheduling/usage/virtual_instance/virtual_instance_with_hdk/
# 06_mounting_vnpu.md: `ASCEND_VISIBLE_DEVICES=100` mounts vNPU 100; physical cards are numbered below it). The Ascend
# Docker Runtime (ASCEND_RUNTIME_OPTIONS=VIRTUAL) and the Ascend device plugin mount it in the container as
# /dev/davinci<id> (Ascend/ascend-device-plugin src/plugin/pkg/npu/huawei/ascendcommon.go, GetDevPath); a plain
# `docker run --device /dev/vdavinci<id>` keeps the host's name.
_VIRTUAL_DEVICE_NODE = re.compile(r"^vdavinci(\d+)$")
VNPU_FIRST_ID = 100


def parse_ids(value: str) -> list[int]:
    """'0,1' / '0-3,6' / 'Ascend910-0,Ascend910-1' / 'Ascend910-14 Ascend910-15' -> sorted unique ids.

    Raises ValueError for anything else (the caller names the variable or annotation in its message).
    """
    ids: set[int] = set()
    for item in re.split(r"[,\s]+", value.strip()):
        if not item:
            continue
        named = re.fullmatch(r"Ascend\w*?-(\d+)", item)
        if named:
            ids.add(int(named[1]))
            continue
        span = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not span:
            raise ValueError(f"{item!r} is not a device id, a range like 0-3, or a name like Ascend910-0")
        low, high = int(span[1]), int(span[2] or span[1])
        if high < low:
            raise ValueError(f"{item!r}: the range is reversed")
        ids.update(range(low, high + 1))
    return sorted(ids)


def read_annotation(path: str | os.PathLike[str], key: str = ANNOTATION_KEY) -> str | None:
    """The value of one annotation from a downward-API annotations file (`key="value"` lines), or None."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, raw = line.partition("=")
        if sep and name.strip() == key:
            raw = raw.strip()
            if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                raw = raw[1:-1].encode().decode("unicode_escape")
            return raw
    return None


def _device_ids(root: str | os.PathLike[str], pattern: re.Pattern[str]) -> list[int]:
    try:
        names = os.listdir(Path(root) / "dev")
    except OSError:
        return []
    return sorted(int(m[1]) for m in map(pattern.match, names) if m)


def present_devices(root: str | os.PathLike[str] = "/") -> list[int]:
    """Physical ids of the /dev/davinci<N> nodes visible under `root` (vNPU ids, >= VNPU_FIRST_ID, included)."""
    return _device_ids(root, _DEVICE_NODE)


def virtual_device_nodes(root: str | os.PathLike[str] = "/") -> list[int]:
    """Ids of the /dev/vdavinci<N> nodes under `root`: vNPUs mounted under the host's name."""
    return _device_ids(root, _VIRTUAL_DEVICE_NODE)


def allocation(
    environ: Mapping[str, str],
    annotations_path: str | os.PathLike[str] | None = None,
) -> tuple[list[int], str] | None:
    """The physical cards this container was given and where that came from, or None when nothing says.

    The device plugin's annotation wins over ASCEND_VISIBLE_DEVICES (the plugin sets both; a hand-written manifest
    may carry a stale variable). Raises ValueError when the value is malformed.
    """
    path = annotations_path or environ.get(ANNOTATIONS_ENV) or DEFAULT_ANNOTATIONS_PATH
    value = read_annotation(path)
    if value:
        try:
            return parse_ids(value), f"pod annotation {ANNOTATION_KEY}={value!r} ({path})"
        except ValueError as exc:
            raise ValueError(f"pod annotation {ANNOTATION_KEY}={value!r} in {path}: {exc}") from None
    value = environ.get(VISIBLE_ENV, "").strip()
    if value:
        try:
            return parse_ids(value), f"{VISIBLE_ENV}={value}"
        except ValueError as exc:
            raise ValueError(f"{VISIBLE_ENV}={value!r}: {exc}") from None
    return None


def logical_ids(physical: list[int], present: list[int]) -> list[int] | None:
    """Logical ids of `physical` cards given the nodes `present` in the container; None if one is not mounted."""
    if not present:
        # No /dev to look at (a check run elsewhere): the runtime numbers the mounted cards from 0.
        return list(range(len(physical)))
    if not set(physical) <= set(present):
        return None
    return [present.index(card) for card in physical]


def runtime_device_env(
    environ: Mapping[str, str],
    annotations_path: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] = "/",
) -> dict[str, str]:
    """{"ASCEND_RT_VISIBLE_DEVICES": "0,1"} for the cards this container was allocated, or {} to leave it alone.

    Empty when the user set ASCEND_RT_VISIBLE_DEVICES (preflight checks it), when nothing says which cards were
    allocated, or when an allocated card is not mounted (preflight reports that). Pure apart from reading the
    annotations file and listing <root>/dev.
    """
    if environ.get(RT_VISIBLE_ENV, "").strip():
        return {}
    try:
        found = allocation(environ, annotations_path)
    except ValueError:
        return {}
    if not found:
        return {}
    ids = logical_ids(found[0], present_devices(root))
    if not ids:
        return {}
    return {RT_VISIBLE_ENV: ",".join(map(str, ids))}
