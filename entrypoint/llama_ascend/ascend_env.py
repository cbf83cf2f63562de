"""The CANN environment: source the toolkit's set_env.sh scripts that exist and return the merged environment.

The CANN base image establishes this environment in its own ENTRYPOINT (`bash -c 'source ... && exec "$@"'`). Our
ENTRYPOINT (`llama-ascend`) and a Kubernetes `command:` bypass it, so `serve` calls `load()` before it execs vLLM, and
the image's shell hook (`python -m llama_ascend.ascend_env profile`, written to /etc/profile.d at build time) gives
`docker exec` shells the same environment.
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from llama_ascend.errors import PreflightFailed

ROOTS_ENV = "LLAMA_ASCEND_CANN_ROOTS"  # colon-separated install roots, default /usr/local/Ascend
DEFAULT_ROOT = "/usr/local/Ascend"
LOADED_ENV = "LLAMA_ASCEND_CANN_ENV"  # set to the scripts that were sourced, for `env` and debugging

# Relative to an install root, in the order the CANN base image sources them: the toolkit first (the others read
# its variables), then the AscendNPU IR compiler (bisheng, under the versioned cann-X.Y.Z dir), then NNAL/ATB.
# `preflight` checks the install against the same list: what serve does not source does not count as CANN.
TOOLKIT_SCRIPT = "ascend-toolkit/set_env.sh"
ATB_SCRIPT = "nnal/atb/set_env.sh"
SCRIPTS = (
    TOOLKIT_SCRIPT,
    "cann-*/share/info/ascendnpu-ir/bin/set_env.sh",
    ATB_SCRIPT,
)
# Variables bash sets for itself; they are not part of the CANN environment.
_SHELL_NOISE = {"_", "SHLVL", "PWD", "OLDPWD"}
TIMEOUT_S = 120  # nnal/atb/set_env.sh imports torch to detect the C++ ABI: seconds on a cold page cache


def roots_from(environ: Mapping[str, str]) -> list[Path]:
    """The install roots: $LLAMA_ASCEND_CANN_ROOTS (colon-separated) or /usr/local/Ascend."""
    value = environ.get(ROOTS_ENV) or DEFAULT_ROOT
    return [Path(part) for part in value.split(":") if part]


def scripts(roots: Iterable[Path]) -> list[Path]:
    """The set_env.sh scripts that exist under the roots, in sourcing order (newest cann-* dir if several)."""
    found: list[Path] = []
    for root in roots:
        for pattern in SCRIPTS:
            matches = sorted(glob.glob(str(Path(root) / pattern)), key=_version_key)
            if matches:
                found.append(Path(matches[-1]))
    return found


def _version_key(path: str) -> list[tuple[int, object]]:
    # "cann-8.5.1" sorts after "cann-8.5.0" and "cann-8.10.0" after "cann-8.9.0".
    parts: list[tuple[int, object]] = []
    for token in path.replace("-", ".").split("."):
        parts.append((0, int(token)) if token.isdigit() else (1, token))
    return parts


def load(environ: Mapping[str, str] | None = None, roots: Sequence[Path] | None = None) -> dict[str, str]:
    """`environ` plus what the existing CANN set_env.sh scripts export; `environ` itself when there are none.

    All scripts are sourced in one bash, in order, exactly as the CANN image's ENTRYPOINT does. Path-like variables
    are de-duplicated so that loading twice (a shell that already sourced them, then `serve`) changes nothing.
    """
    environ = dict(os.environ if environ is None else environ)
    found = scripts(roots_from(environ) if roots is None else roots)
    if not found:
        return environ
    command = " && ".join(f"source {shlex.quote(str(s))}" for s in found) + " && env -0"
    # BASH_ENV (the image's shell hook) would source the same scripts once more before the command.
    shell_env = {k: v for k, v in environ.items() if k != "BASH_ENV"}
    try:
        result = subprocess.run(
            ["bash", "-c", command], env=shell_env, capture_output=True, timeout=TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise PreflightFailed("bash is missing, so the CANN set_env.sh scripts cannot run: install bash") from exc
    except subprocess.TimeoutExpired as exc:
        raise PreflightFailed(f"sourcing {found[-1]} did not finish in {TIMEOUT_S} s: check the CANN install") from exc
    if result.returncode != 0:
        tail = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise PreflightFailed(
            f"sourcing the CANN environment failed (exit {result.returncode}): {tail[0]}\n"
            f"scripts: {' '.join(map(str, found))}; fix the CANN install or set {ROOTS_ENV} to its root"
        )
    merged = _parse_env0(result.stdout)
    for name in _SHELL_NOISE | {"BASH_ENV"} | {k for k in merged if k.startswith("BASH_FUNC_")}:
        if name not in environ:
            merged.pop(name, None)
        else:
            merged[name] = environ[name]
    for name, value in merged.items():
        if ":" in value and ("PATH" in name or name.endswith("_DIRS")):
            merged[name] = _dedupe(value)
    merged[LOADED_ENV] = ":".join(map(str, found))
    return merged


def _parse_env0(raw: bytes) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in raw.decode(errors="surrogateescape").split("\0"):
        name, sep, value = entry.partition("=")
        if sep and name:
            env[name] = value
    return env


def _dedupe(value: str) -> str:
    seen: set[str] = set()
    kept = []
    for part in value.split(":"):
        if part not in seen:
            seen.add(part)
            kept.append(part)
    return ":".join(kept)


def profile_script(roots: Sequence[Path] | None = None) -> str:
    """A shell hook for /etc/profile.d, /etc/bash.bashrc and BASH_ENV that sources the same scripts as `load()`.

    Patterns are resolved when the shell starts (the last match of a glob wins). The scripts are bash, so other
    shells skip the hook; it runs once per environment (a shell started by `serve`'s server sees it done).
    """
    roots = roots_from(os.environ) if roots is None else roots
    lines = [
        "# Generated by `python -m llama_ascend.ascend_env profile`: the CANN environment for shells in this image.",
        "# `llama-ascend serve` sources the same scripts itself (llama_ascend/ascend_env.py).",
        f'if [ -n "${{BASH_VERSION:-}}" ] && [ -z "${{{LOADED_ENV}:-}}" ]; then',
    ]
    for root in roots:
        for pattern in SCRIPTS:
            lines += [
                "  _la_last=",
                f"  for _la_f in {shlex.quote(str(root))}/{pattern}; do _la_last=$_la_f; done",
                '  if [ -f "$_la_last" ] && . "$_la_last"; then',
                f'    {LOADED_ENV}="${{{LOADED_ENV}:+${{{LOADED_ENV}}}:}}$_la_last"',
                "  fi",
            ]
    lines += [f"  export {LOADED_ENV}", "  unset _la_f _la_last", "fi", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llama_ascend.ascend_env", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("profile", help="print the shell hook for /etc/profile.d")
    sub.add_parser("show", help="print the variables the CANN scripts add or change")
    args = parser.parse_args(argv)
    if args.action == "profile":
        sys.stdout.write(profile_script())
        return 0
    before = dict(os.environ)
    try:
        after = load(before)
    except PreflightFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    for name in sorted(after):
        if before.get(name) != after[name]:
            print(f"{name}={after[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
