"""The Ascend driver (its HAL library and version) and the CANN toolkit's environment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from llama_ascend import ascend_env
from llama_ascend.preflight.findings import Finding, fail, ok

DRIVER_DIR = "usr/local/Ascend/driver"
HAL_LIBRARY_DIRS = ("lib64/driver", "lib64", "lib64/common")


def check_driver(root: Path) -> list[Finding]:
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
        version = next(
            (
                line.split("=", 1)[1].strip()
                for line in version_file.read_text().splitlines()
                if line.startswith("Version=")
            ),
            "unknown",
        )
        findings.append(ok("driver", f"driver version {version} ({version_file.relative_to(root)})"))
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
