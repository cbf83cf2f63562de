"""The Ascend driver (its HAL library, and its HDK version against graph capture) and the CANN toolkit's environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from llama_ascend import ascend_env
from llama_ascend.combinations import captures_graphs, graph_setting
from llama_ascend.config import Config
from llama_ascend.preflight.findings import Finding, fail, ok

DRIVER_DIR = "usr/local/Ascend/driver"
HAL_LIBRARY_DIRS = ("lib64/driver", "lib64", "lib64/common")


# The oldest Ascend HDK (driver + firmware) that captures ACL graphs: older stacks fail at capture with "alloc sq cq
# fail". From vllm-project/vllm-ascend PR #10555 ("[BugFix] Improve ACL graph stream resource error guidance": it
# detects the old stack by that signature, `_OLD_HDK_CAPTURE_ERROR_MARKERS` in vllm_ascend/compilation/acl_graph.py,
# and advises "upgrading Ascend HDK to 25.5.1 or later"). The PR came after 0.18.0: 0.18.0 fails the same way, without
# the advice.
MIN_GRAPH_HDK = "25.5.1"
_HDK_VERSION = re.compile(r"(\d+)\.(\d+)\.(?:(\d+)|rc(\d+))(?:[.\-_+].*)?", re.IGNORECASE)


def hdk_version_key(version: str) -> tuple[int, int, int, int, int] | None:
    """A sortable key for an HDK version as version.info writes it, or None when it is not one.

    Accepts `25.5.1`, `23.0.6`, `24.1.rc2`, `25.5.RC1` and a suffix after them (`24.1.rc2.1`, `23.0.3-b060`, ignored).
    A release candidate comes before the release of the same major.minor: 25.5.RC1 < 25.5.0 < 25.5.1."""
    match = _HDK_VERSION.fullmatch(version.strip())
    if not match:
        return None
    major, minor, patch, rc = match.groups()
    if rc is not None:
        return int(major), int(minor), 0, 0, int(rc)
    return int(major), int(minor), int(patch), 1, 0


def driver_version(version_file: Path) -> str:
    """The `Version=` line of the driver's version.info ("unknown" without one); OSError when it cannot be read."""
    for line in version_file.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "Version":
            return value.strip().strip("\"'") or "unknown"
    return "unknown"


def check_driver(root: Path, config: Config) -> list[Finding]:
    driver = root / DRIVER_DIR
    findings = []
    hal = next(
        (driver / d / "libascend_hal.so" for d in HAL_LIBRARY_DIRS if (driver / d / "libascend_hal.so").exists()), None
    )
    if hal is None:
        findings.append(
            fail(
                "driver",
                f"libascend_hal.so is missing (looked in {', '.join(str(driver / d) for d in HAL_LIBRARY_DIRS)})",
                cause="the driver's lib64 is not mounted into the container",
                fix="mount the host's driver: -v /usr/local/Ascend/driver:/usr/local/Ascend/driver:ro "
                "(Kubernetes: a hostPath volume at the same path)",
            )
        )
    else:
        findings.append(ok("driver", f"{hal.relative_to(root)} present"))
    version_file = driver / "version.info"
    try:
        version = driver_version(version_file)
    except OSError:
        findings.append(
            fail(
                "driver",
                f"{version_file} is missing",
                cause="the driver's version.info is not mounted (CANN reads it to check compatibility)",
                fix="-v /usr/local/Ascend/driver/version.info:/usr/local/Ascend/driver/version.info:ro "
                "(or mount the whole driver dir)",
            )
        )
        return findings
    findings.append(check_hdk_for_graphs(version, inside(version_file, root), config))
    return findings


def check_hdk_for_graphs(version: str, where: str, config: Config) -> Finding:
    """The driver (HDK) version against graph capture: older than MIN_GRAPH_HDK fails when the config captures."""
    found = f"driver (HDK) {version} ({where})"
    setting = graph_setting(config)
    if not captures_graphs(config):
        return ok("driver", f"{found}; {setting} captures no ACL graphs, so any HDK version serves")
    key = hdk_version_key(version)
    if key is None:
        return fail(
            "driver",
            f"{found}: cannot tell whether it is older than HDK {MIN_GRAPH_HDK}, which ACL graph capture "
            f"({setting}) needs",
            cause="version.info's Version line is not a version llama-ascend can read (like 25.5.1 or 24.1.rc2)",
            fix=f"check `npu-smi info` on the host: HDK {MIN_GRAPH_HDK} or later, or --set server.enforce_eager=true",
            severity="warning",
        )
    minimum = hdk_version_key(MIN_GRAPH_HDK)
    assert minimum is not None
    if key < minimum:
        return fail(
            "driver",
            f"{found} is older than {MIN_GRAPH_HDK}, and {setting} captures ACL graphs",
            cause='ACL graph capture on an older HDK/CANN stack fails at start-up with "alloc sq cq fail" '
            f"(vllm-project/vllm-ascend PR #10555 adds this guidance: upgrade the Ascend HDK to {MIN_GRAPH_HDK} "
            "or later)",
            fix=f"upgrade the host's NPU driver and firmware to HDK {MIN_GRAPH_HDK} or later, or --set "
            "server.enforce_eager=true (no graph capture: it starts, but decodes slower)",
        )
    return ok("driver", f"{found} >= {MIN_GRAPH_HDK}: ACL graph capture ({setting}) is supported")


def cann_roots(root: Path, environ: Mapping[str, str]) -> list[Path]:
    """The CANN install roots serve sources from ($LLAMA_ASCEND_CANN_ROOTS or /usr/local/Ascend), under `root`."""
    return [root / str(r).lstrip("/") for r in ascend_env.roots_from(environ)]


def inside(path: Path, root: Path) -> str:
    """A path as the container sees it (`root` is / outside the tests)."""
    return "/" + str(path.relative_to(root))


def check_cann(root: Path, environ: Mapping[str, str]) -> list[Finding]:
    """CANN as `serve` will load it: the scripts of ascend_env.SCRIPTS under the install roots, nothing else."""
    findings = []
    roots = cann_roots(root, environ)
    home = environ.get("ASCEND_TOOLKIT_HOME") or environ.get("ASCEND_HOME_PATH")
    toolkit = next((r / ascend_env.TOOLKIT_SCRIPT for r in roots if (r / ascend_env.TOOLKIT_SCRIPT).is_file()), None)
    expected = ", ".join(inside(r / ascend_env.TOOLKIT_SCRIPT, root) for r in roots)
    if home:
        located = root / home.lstrip("/")
        if located.is_dir():
            findings.append(ok("cann", f"CANN toolkit at {home}"))
        else:
            findings.append(
                fail(
                    "cann",
                    f"ASCEND_TOOLKIT_HOME={home} does not exist",
                    cause="the image's CANN is elsewhere, or the variable came from another machine",
                    fix=f"source the set_env.sh of the installed toolkit ({expected})",
                )
            )
    elif toolkit:
        findings.append(
            fail(
                "cann",
                f"CANN is installed ({inside(toolkit, root)}) but its environment is not set "
                "(ASCEND_TOOLKIT_HOME / ASCEND_HOME_PATH unset)",
                cause="set_env.sh was not sourced: a server started from a non-login shell never reads ~/.bashrc "
                "(`llama-ascend serve` sources it itself; a hand-written command does not)",
                fix=f"start the server with `llama-ascend serve`, or `source {inside(toolkit, root)}` first",
            )
        )
    else:
        known = {r / pattern for r in roots for pattern in ascend_env.SCRIPTS}
        others = sorted({p for r in roots for p in r.glob("*/set_env.sh")} - known)
        message = f"CANN toolkit not found (no ASCEND_TOOLKIT_HOME, no {expected})"
        if others:
            listed = ", ".join(inside(p, root) for p in others)
            findings.append(
                fail(
                    "cann",
                    f"{message}; {listed} exists, but `llama-ascend serve` does not source it "
                    f"(it sources {', '.join(ascend_env.SCRIPTS)} under {', '.join(inside(r, root) for r in roots)})",
                    cause="CANN is installed in a layout other than the CANN base image's",
                    fix=f"`source {inside(others[0], root)}` before `llama-ascend serve` (it keeps the environment "
                    f"it is given), or install the toolkit so that {expected} exists",
                )
            )
        else:
            findings.append(
                fail(
                    "cann",
                    message,
                    cause="this is not the vLLM-Ascend image",
                    fix="run the llama-ascend image (based on vllm-ascend with CANN 8.5.1)",
                )
            )
    atb = next((r / ascend_env.ATB_SCRIPT for r in roots if (r / ascend_env.ATB_SCRIPT).is_file()), None)
    if atb and not environ.get("ATB_HOME_PATH"):
        findings.append(
            fail(
                "cann",
                "the ATB library is installed but its environment is not set (ATB_HOME_PATH unset)",
                cause="nnal/atb/set_env.sh was not sourced",
                fix=f"source {inside(atb, root)} too",
                severity="warning",
            )
        )
    return findings
