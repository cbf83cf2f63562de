"""Checks of the ascend image from inside it: one line per check, PASS or FAIL, exit 1 on any FAIL.

    python3 /opt/llama-ascend/image_check.py --build --record /opt/llama-ascend/image-build.json   # in the build
    python3 /opt/llama-ascend/image_check.py                                                    # in the image

The ascend target ships this file (docker/Dockerfile). `--build` runs what must hold before the image is committed
(pip check, no CUDA, the torch build, triton-ascend's files) and records the build's kind from its build args.
Without it, the built image is checked as a whole, as its user: those again, plus the vLLM-Ascend platform plugin,
`import vllm`, vLLM 0.18.0's own argument parser over the rendered command of every ascend profile in
/opt/llama-ascend/config, `llama-ascend render` and `preflight`, the user, the server's environment (jemalloc, vLLM-Ascend's variables) and
`import torch_npu`. `scripts/image_run.py --check` (`make image-ascend-standin`) runs it with buildah; on an Ascend
host, `docker run --rm --entrypoint python3 IMAGE /opt/llama-ascend/image_check.py`. Standard library only, except
where a check is about the venv's packages.
"""

from __future__ import annotations

import argparse
import base64
import grp
import hashlib
import json
import os
import platform
import pwd
import re
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

CONFIG_DIR = Path("/opt/llama-ascend/config")
RECORD = Path("/opt/llama-ascend/image-build.json")
PLUGIN_GROUP = "vllm.platform_plugins"
VLLM_MODULE = ["-m", "vllm.entrypoints.openai.api_server"]
# What preflight cannot find in a container without an NPU, its driver, npu-smi or weights; `cann` too on a stand-in.
PREFLIGHT_ABSENT = {"model-files", "weights", "device-nodes", "driver", "npu-smi"}
# Libraries of CANN (toolkit, runtime, HCCL, ATB) and of the driver it loads: what `import torch_npu` may miss.
CANN_LIBRARY = re.compile(
    r"lib(ascend\w*|acl\w*|hccl\w*|ge_\w+|graph\w*|register|runtime\w*|tsdclient|c_sec|mmpa|opapi|nnopbase|"
    r"error_manager|platform|msprofiler\w*|aicpu\w*|atb\w*|lcal\w*|asc\w*|ops\w*|op_\w+|dcmi|drvdsmi\w*|"
    r"profapi|hybrid\w*|fmk_\w+|awatchdog|alog|slog|unified_dlog|cce\w*|tiling\w*|exe_graph|tbe\w*)"
    r"\.so(\.\d+)*"
)
TIMEOUT = 900  # a hang guard for one subprocess: a cold `import vllm` on a loaded 2-core machine takes a minute


class Table:
    def __init__(self) -> None:
        self.failed = 0

    def line(self, name: str, ok: bool, detail: str) -> None:
        self.failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {name:<34} {detail}", flush=True)

    def run(self, name: str, check: Callable[[], tuple[bool, str]]) -> None:
        try:
            ok, detail = check()
        except Exception as exc:  # a check that breaks is a failed check, and the others still run
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        self.line(name, ok, " ".join(detail.split()))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _words(value: str) -> list[str]:
    return [canonical(w) for w in value.replace(",", " ").split()]


def build_record(environ: dict[str, str]) -> dict[str, Any]:
    """The build's kind, from its build args (the ascend stage's RUN environment)."""
    return {
        "cann_standin": environ.get("CANN_STANDIN") == "1",
        "standin_cuda_torch": environ.get("STANDIN_CUDA_TORCH") == "1",
        "accepted_conflicts": _words(environ.get("ACCEPTED_CONFLICTS", "")),
        "standin_accepted_conflicts": _words(environ.get("STANDIN_ACCEPTED_CONFLICTS", "")),
        "torch": {
            "torch": environ.get("TORCH_VERSION", ""),
            "torchvision": environ.get("TORCHVISION_VERSION", ""),
            "torchaudio": environ.get("TORCHAUDIO_VERSION", ""),
        },
        "triton_ascend": environ.get("TRITON_ASCEND_VERSION", ""),
        "arch": platform.machine(),
    }


def torch_local(record: dict[str, Any]) -> str:
    return "+cpu" if record["arch"] == "x86_64" and not record["standin_cuda_torch"] else ""


# ---------------------------------------------------------------------------------------------------------------------
# The build's checks


PIP_CHECK_LINE = [
    re.compile(r"^(?P<dist>\S+) (?P<version>\S+) requires (?P<req>.+?), which is not installed\.$"),
    re.compile(r"^(?P<dist>\S+) (?P<version>\S+) has requirement (?P<req>.+), but you have \S+ \S+\.$"),
]


def parse_pip_check(output: str) -> list[tuple[str, str, str]]:
    """(requiring dist, required name, line) per finding of `pip check`; unparsed lines name no package ("")."""
    findings = []
    for line in output.splitlines():
        line = line.strip()
        if not line or line == "No broken requirements found.":
            continue
        for pattern in PIP_CHECK_LINE:
            match = pattern.match(line)
            if match:
                name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", match["req"])
                findings.append((canonical(match["dist"]), canonical(name[0]) if name else "", line))
                break
        else:
            findings.append(("", "", line))
    return findings


def check_pip(record: dict[str, Any]) -> tuple[bool, str]:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    accepted = set(record["accepted_conflicts"])
    standin = set(record["standin_accepted_conflicts"]) if record["standin_cuda_torch"] else set()
    findings = parse_pip_check(result.stdout + result.stderr)
    if result.returncode != 0 and not findings:
        return False, f"pip check exited {result.returncode}: {result.stderr.strip()[-300:]}"
    bad = [line for _, name, line in findings if name not in accepted | standin]
    if bad:
        return False, f"{len(bad)} unaccepted: " + " | ".join(bad)
    if not findings:
        return True, "no broken requirements"
    seen = [
        f"{dist}->{name}{' (stand-in)' if name in standin and name not in accepted else ''}"
        for dist, name, _ in findings
    ]
    return True, f"{len(findings)} findings, all accepted: " + ", ".join(seen)


def _size(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def check_no_cuda(record: dict[str, Any]) -> tuple[bool, str]:
    nvidia = sorted(
        {
            canonical(d.metadata["Name"]): d
            for d in metadata.distributions()
            if canonical(d.metadata["Name"]).startswith("nvidia-")
        }.items()
    )
    if not nvidia:
        return True, "no nvidia-* package"
    size = sum(_size(d) for _, d in nvidia) / 1e9
    names = ", ".join(name for name, _ in nvidia)
    if record["standin_cuda_torch"]:
        return True, (
            f"stand-in build (STANDIN_CUDA_TORCH=1): {len(nvidia)} nvidia-* packages, {size:.2f} GB, accepted only "
            f"here; any other build fails on them ({names})"
        )
    return False, f"{len(nvidia)} nvidia-* packages ({size:.2f} GB) in an NPU image: {names}"


def check_torch_build(record: dict[str, Any]) -> tuple[bool, str]:
    local = torch_local(record)
    found, wrong = [], []
    for name, version in record["torch"].items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} missing")
            continue
        found.append(f"{name} {have}")
        if have != version + local:
            wrong.append(f"{name} {have}, expected {version}{local}")
    if wrong:
        return False, "; ".join(wrong)
    kind = (
        "PyPI's CUDA builds (stand-in only)"
        if record["standin_cuda_torch"] and record["arch"] == "x86_64"
        else "CPU builds"
    )
    return True, f"{', '.join(found)}: {kind}"


def _record_hash(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def check_triton_ascend(record: dict[str, Any]) -> tuple[bool, str]:
    dist = metadata.distribution("triton-ascend")
    if record["triton_ascend"] and dist.version != record["triton_ascend"] and "dev" not in dist.version:
        return False, f"triton-ascend {dist.version}, the pin is {record['triton_ascend']}"
    files = list(dist.files or [])
    missing, changed, owned = [], [], set()
    for file in files:
        path = Path(str(dist.locate_file(file)))
        owned.add(path.resolve())
        if not path.exists():
            missing.append(str(file))
        elif file.hash and f"{file.hash.mode}={file.hash.value}" != _record_hash(path):
            changed.append(str(file))
    site = Path(sysconfig.get_paths()["purelib"])
    foreign = [
        str(p.relative_to(site))
        for p in (site / "triton").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.resolve() not in owned
    ]
    try:
        upstream = f"upstream triton {metadata.version('triton')} is installed"
    except metadata.PackageNotFoundError:
        upstream = ""
    problems = [
        f"{len(missing)} missing ({', '.join(missing[:3])})" if missing else "",
        f"{len(changed)} changed ({', '.join(changed[:3])})" if changed else "",
        f"{len(foreign)} files not triton-ascend's ({', '.join(foreign[:3])})" if foreign else "",
        upstream,
    ]
    problems = [p for p in problems if p]
    if problems:
        return False, f"triton-ascend {dist.version}, {len(files)} files in RECORD: " + "; ".join(problems)
    return (
        True,
        f"triton-ascend {dist.version}: all {len(files)} RECORD files present, hashes match; no upstream triton",
    )


def build_checks(table: Table, record: dict[str, Any]) -> None:
    table.run("pip-check", lambda: check_pip(record))
    table.run("no-cuda", lambda: check_no_cuda(record))
    table.run("torch-build", lambda: check_torch_build(record))
    table.run("triton-ascend-files", lambda: check_triton_ascend(record))


# ---------------------------------------------------------------------------------------------------------------------
# The built image's checks


def _python(
    code: str, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
        input=stdin,
        check=False,
    )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def ascend_profiles(config_dir: Path = CONFIG_DIR) -> list[Path]:
    """Every profile in the image whose `backend` is `ascend` (read with the venv's PyYAML)."""
    import yaml

    return [
        p for p in sorted(config_dir.glob("*.yaml")) if (yaml.safe_load(p.read_text()) or {}).get("backend") == "ascend"
    ]


def check_base(record: dict[str, Any]) -> tuple[bool, str]:
    toolkit = Path("/usr/local/Ascend/ascend-toolkit/set_env.sh")
    if record["cann_standin"]:
        return not toolkit.exists(), "stand-in base (CANN_STANDIN=1): no CANN; nothing here can drive an NPU"
    return toolkit.is_file(), f"CANN base: {toolkit} {'present' if toolkit.is_file() else 'MISSING'}"


def check_user() -> tuple[bool, str]:
    uid, gid = os.getuid(), os.getgid()
    user, group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
    detail = f"uid={uid}({user}) gid={gid}({group})"
    return uid == 1000 and group == "HwHiAiUser", detail


def check_entry_point() -> tuple[bool, str]:
    found = [ep for ep in metadata.entry_points(group=PLUGIN_GROUP) if ep.name == "ascend"]
    if not found:
        return False, f"no `ascend` entry point in {PLUGIN_GROUP}"
    dist = found[0].dist.metadata["Name"] if found[0].dist else "?"
    return found[0].value == "vllm_ascend:register", f"{PLUGIN_GROUP}: ascend = {found[0].value} ({dist})"


def check_import_vllm() -> tuple[bool, str]:
    started = time.monotonic()
    result = _python("import vllm; print('vllm', vllm.__version__)", env={"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"})
    if result.returncode != 0:
        return False, _last_line(result.stderr) or f"exit {result.returncode}"
    return True, f"{_last_line(result.stdout)} (TORCH_DEVICE_BACKEND_AUTOLOAD=0, {time.monotonic() - started:.0f} s)"


def render(profile: Path) -> list[str]:
    result = subprocess.run(
        ["llama-ascend", "render", "--config", str(profile), "--json"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"render exited {result.returncode}: {_last_line(result.stderr)}")
    argv: list[str] = json.loads(result.stdout)["argv"]
    return argv


def check_render(profile: Path, rendered: dict[str, list[str]]) -> tuple[bool, str]:
    argv = render(profile)
    rendered[profile.name] = argv
    if argv[1:3] != VLLM_MODULE or not Path(argv[0]).is_file():
        return False, f"not the vLLM server in this venv: {argv[:3]}"
    return True, f"{len(argv) - 3} vLLM args: {' '.join(argv[3:9])} ..."


# Run in a subprocess (TORCH_DEVICE_BACKEND_AUTOLOAD=0): the rendered argvs on stdin as JSON, the results on stdout.
VLLM_PARSE = r"""
import contextlib, io, json, sys
# Parsing needs neither torch_npu nor a card, and without CANN torch_npu cannot load: transformers imports it when
# it is installed (is_torch_npu_available, on importing modeling_utils), so it is hidden (find_spec finds nothing),
# and vllm-ascend's general plugins, which import it, are not loaded (VLLM_PLUGINS=""). import-torch-npu checks it.
sys.modules["torch_npu"] = None
import vllm.platforms
from vllm.platforms.cpu import CpuPlatform
# The CPU platform for parsing only: resolving the current platform loads vllm-ascend's NPUPlatform, which needs
# CANN and a card. Set before anything imports vllm.engine.arg_utils, which reads it at import time.
vllm.platforms._current_platform = CpuPlatform()
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = make_arg_parser(FlexibleArgumentParser(prog="vllm.entrypoints.openai.api_server"))
# What NPUPlatform.pre_register_and_update adds to the parser on an NPU: the `ascend` quantization method.
quantization = parser._option_string_actions.get("--quantization")
if quantization is not None and quantization.choices and "ascend" not in quantization.choices:
    quantization.choices.append("ascend")
results = {}
for name, argv in json.load(sys.stdin).items():
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
            validate_parsed_serve_args(args)
            engine = AsyncEngineArgs.from_cli_args(args)
        results[name] = [True, f"{len(argv)} args parsed; model={engine.model} tp={engine.tensor_parallel_size} compilation={engine.compilation_config.cudagraph_mode}"]
    except BaseException as exc:
        results[name] = [False, (err.getvalue().strip().splitlines() or [f"{type(exc).__name__}: {exc}"])[-1]]
print(json.dumps(results))
"""


def vllm_parse(rendered: dict[str, list[str]]) -> dict[str, tuple[bool, str]]:
    argvs = {name: argv[3:] for name, argv in rendered.items()}
    result = _python(
        VLLM_PARSE, env={"TORCH_DEVICE_BACKEND_AUTOLOAD": "0", "VLLM_PLUGINS": ""}, stdin=json.dumps(argvs)
    )
    if result.returncode != 0:
        raise RuntimeError(f"the parser did not run: {_last_line(result.stderr)}")
    version = metadata.version("vllm")
    where = "CPU platform, no general plugins: for parsing only"
    results = json.loads(_last_line(result.stdout))
    return {name: (ok, f"vLLM {version} ({where}): {detail}") for name, (ok, detail) in results.items()}


def check_preflight(profile: Path, record: dict[str, Any]) -> tuple[bool, str]:
    # `port` left out: buildah runs this on the host's network, where 8000 may be anyone's.
    result = subprocess.run(
        ["llama-ascend", "preflight", "--config", str(profile), "--json", "--skip", "port"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if result.returncode not in (0, 3) or "Traceback" in result.stderr:
        return False, f"exit {result.returncode}: {_last_line(result.stderr)}"
    findings = json.loads(result.stdout)["findings"]
    failed = sorted({f["check"] for f in findings if not f["ok"] and f.get("severity") == "error"})
    absent = PREFLIGHT_ABSENT | ({"cann"} if record["cann_standin"] else set())
    unexpected = [name for name in failed if name not in absent]
    detail = f"exit {result.returncode}, {len(findings)} findings; failed as expected without an NPU: {', '.join(failed) or 'none'}"
    if unexpected:
        return False, f"exit {result.returncode}; unexpected failures: {', '.join(unexpected)}"
    return True, detail


SERVER_ENV = r"""
import json, os, sys
from llama_ascend import ascend_env, serve
from llama_ascend.config import load_config
from llama_ascend.render import render
env = serve.server_environment(render(load_config(sys.argv[1]), python=sys.executable), ascend_env.load(dict(os.environ)))
print(json.dumps(env))
"""
# What the exec'd server must find in its environment besides jemalloc (vLLM-Ascend's image sets these with ENV).
SERVER_VARIABLES = {"TASK_QUEUE_ENABLE": "1", "OMP_NUM_THREADS": "1"}


def check_server_env(profile: Path) -> tuple[bool, str]:
    """The environment `serve` gives the server: jemalloc preloaded (mapped in a child started with it) and
    vLLM-Ascend's runtime variables."""
    result = _python(SERVER_ENV, str(profile))
    if result.returncode != 0:
        return False, f"the server environment did not render: {_last_line(result.stderr)}"
    env = json.loads(_last_line(result.stdout))
    wrong = [f"{k}={env.get(k)!r} (want {v})" for k, v in SERVER_VARIABLES.items() if env.get(k) != v]
    if wrong:
        return False, f"server env: {', '.join(wrong)}"
    preload = env.get("LD_PRELOAD", "")
    libraries = [p for p in preload.split(":") if "jemalloc" in p]
    if not libraries or not Path(libraries[0]).is_file():
        return False, f"LD_PRELOAD={preload!r}: no jemalloc library"
    maps = subprocess.run(
        [sys.executable, "-c", "print(open('/proc/self/maps').read())"],
        capture_output=True,
        text=True,
        env={**os.environ, "LD_PRELOAD": preload},
        timeout=TIMEOUT,
        check=False,
    ).stdout
    target = os.path.realpath(libraries[0])
    mapped = target in maps
    variables = " ".join(f"{k}={env[k]}" for k in SERVER_VARIABLES)
    return (
        mapped,
        f"server env {variables} LD_PRELOAD={preload} -> {target} {'mapped' if mapped else 'NOT mapped'} in a child",
    )


def check_torch_npu(record: dict[str, Any]) -> tuple[bool, str]:
    result = _python(
        "import torch_npu; print('torch_npu', torch_npu.__version__)", env={"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"}
    )
    if result.returncode == 0:
        return True, f"{_last_line(result.stdout)} imported"
    error = _last_line(result.stderr)
    match = CANN_LIBRARY.search(error)
    if match and "cannot open shared object file" in error:
        kind = "expected on the stand-in (no CANN)" if record["cann_standin"] else "a CANN/driver library is missing"
        return record["cann_standin"], f"{error} ({kind})"
    return False, f"fails for another reason than a missing CANN library: {error}"


CUDA_ONLY = re.compile(r"cuda|nvrtc|nvshmem|cudnn|cublas|nccl|cusparse|cufft|curand|cusolver|nvjitlink|cupti")


def size_note() -> str:
    """What the venv holds of CUDA: the nvidia-* packages and the CUDA-only libraries inside torch (the rest of a
    CUDA torch is what its `+cpu` build has too). The difference is the venv of a build without CUDA."""
    site = Path(sysconfig.get_paths()["purelib"])
    venv = sum(p.stat().st_size for p in Path(sys.prefix).rglob("*") if p.is_file() and not p.is_symlink())
    nvidia = sum(_size(d) for d in metadata.distributions() if canonical(d.metadata["Name"]).startswith("nvidia-"))
    torch_cuda = sum(
        p.stat().st_size for p in (site / "torch" / "lib").glob("*") if p.is_file() and CUDA_ONLY.search(p.name)
    )
    rest = venv - nvidia - torch_cuda
    return (
        f"note: venv {venv / 1e9:.2f} GB = nvidia-* {nvidia / 1e9:.2f} GB + torch's CUDA libraries "
        f"{torch_cuda / 1e9:.2f} GB + the rest {rest / 1e9:.2f} GB (the venv of a build without CUDA)"
    )


def image_checks(table: Table, record: dict[str, Any]) -> None:
    table.run("base", lambda: check_base(record))
    build_checks(table, record)
    table.run("user", check_user)
    table.run("vllm-platform-plugin", check_entry_point)
    table.run("import-vllm", check_import_vllm)
    profiles = ascend_profiles()
    table.line("ascend-profiles", bool(profiles), ", ".join(p.name for p in profiles) or f"none in {CONFIG_DIR}")
    rendered: dict[str, list[str]] = {}
    for profile in profiles:
        table.run(f"render:{profile.stem}", lambda p=profile: check_render(p, rendered))  # type: ignore[misc]
    if rendered:
        try:
            parsed = vllm_parse(rendered)
        except Exception as exc:
            parsed = {name: (False, str(exc)) for name in rendered}
        for name, (ok, detail) in parsed.items():
            table.line(f"vllm-parser:{Path(name).stem}", ok, detail)
    for profile in profiles:
        table.run(f"preflight:{profile.stem}", lambda p=profile: check_preflight(p, record))  # type: ignore[misc]
    if profiles:
        table.run("server-env", lambda: check_server_env(profiles[0]))
    table.run("import-torch-npu", lambda: check_torch_npu(record))
    print(size_note(), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="the build's checks, with the build args as environment")
    parser.add_argument("--record", type=Path, help="with --build: write the build's kind here")
    args = parser.parse_args(argv)
    table = Table()
    if args.build:
        record = build_record(dict(os.environ))
        build_checks(table, record)
        if args.record and not table.failed:
            args.record.parent.mkdir(parents=True, exist_ok=True)
            args.record.write_text(json.dumps(record, indent=2) + "\n")
    else:
        image_checks(table, json.loads(RECORD.read_text()))
    print(f"{table.failed} FAILED" if table.failed else "all checks passed", flush=True)
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
