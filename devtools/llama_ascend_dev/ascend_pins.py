"""Fidelity check for the ascend image, run in CI: the pins exist and resolve, and the rendered vLLM command is one
that vLLM 0.18.0 and vLLM-Ascend 0.18.0 accept. So a wrong pin or flag fails here, not on a user's NPU host.

1. Releases: the vLLM source release the Dockerfile builds (VLLM_SDIST_URL, verified against VLLM_SDIST_SHA256) and
   vLLM-Ascend's release files on PyPI (wheel per architecture, source release).
2. Resolution, per architecture (x86_64, aarch64), for CPython 3.11 on the CANN base's glibc, binary wheels only,
   with `pip install --dry-run --report`, step by step as the Dockerfile's ascend stage installs: the torch step and
   the vLLM step (torch, vLLM's build requirements, vLLM's own requirements from its source release - the `empty`
   target installs requirements/common.txt + the `audio` extra - transformers and prometheus-fastapi-instrumentator
   by their *_SPEC args); the vllm-ascend step (vLLM-Ascend's and torch-npu's requirements without triton-ascend,
   torch, torchvision and torchaudio, numpy, transformers, prometheus-fastapi-instrumentator); our package's
   dependencies. Each later step keeps what the earlier ones installed where it satisfies, as pip does. Upstream
   triton is dropped after each step (drop_upstream_triton), triton-ascend goes in last without its dependencies,
   and on x86_64 the torch builds are the `+cpu` ones (torch_local). A pinned dependency published only as a source
   release (arctic-inference) is checked to exist and its declared requirements join the resolve. Then `pip check`
   is run on the model of the image (every requirement of every installed distribution, vLLM, vLLM-Ascend and
   triton-ascend included): a finding fails unless the package it is about is named in the Dockerfile's
   ACCEPTED_CONFLICTS, the list the image's own `pip check` gate (docker/image_check.py) reads too.
3. Arguments: `llama-ascend render --json` for the reference config and variants that reach every branch of render;
   each flag must be defined by vLLM 0.18.0's OpenAI server parser (read statically, with `ast`, from
   vllm/engine/arg_utils.py and vllm/entrypoints/openai/cli_args.py of the source release), JSON option keys must be
   fields of the config classes they fill, the graph mode must be one vLLM-Ascend 0.18.0's platform runs as it is
   (not one it replaces, as FULL_AND_PIECEWISE by PIECEWISE, or lets fall back to NONE), the quantization one its
   platform supports and its quantization registry registers, and every VLLM_* variable one that vllm/envs.py (or
   vllm_ascend/envs.py) reads.
4. Accepted values: every value the config's types accept for `server.compilation` and `server.quantization` (read
   from the pydantic models, so a newly accepted value is checked too) is rendered for the ascend backend; a value
   the config accepts must pass (3), a value it refuses (exit 2) must be one vLLM-Ascend 0.18.0 does not run.

Downloads are cached under ~/.cache/llama-ascend/upstream ($LLAMA_ASCEND_CACHE). Needs PyPI (or a mirror set with
PIP_INDEX_URL); no CANN, NPU or vLLM install.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.parser import Parser
from pathlib import Path

import httpx
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from llama_ascend_dev import ROOT
from llama_ascend_dev.downloads import DownloadError, Sdist, cached_download, http_client
from llama_ascend_dev.image_build import dockerfile_args, project_dependencies
from llama_ascend_dev.pypi_cache import PYPI_SIMPLE
from llama_ascend_dev.vllm_sources import (
    AscendArgs,
    VllmArgs,
    graph_mode_problem,
    parse_vllm,
    parse_vllm_ascend,
    quantization_problem,
)

ARCHES = ("x86_64", "aarch64")
PYTHON = "3.11"
GLIBC = (2, 35)  # Ubuntu 22.04, the CANN 8.5.1 base
REFERENCE_CONFIG = ROOT / "config" / "llama-3.1-8b-instruct.yaml"
SERVER_MODULE = "vllm.entrypoints.openai.api_server"


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def ok(self, message: str) -> None:
        print(f"  ok    {message}", flush=True)

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)
            print(f"  note  {message}", flush=True)

    def fail(self, message: str) -> None:
        self.failures.append(message)
        print(f"  FAIL  {message}", flush=True)


# ---------------------------------------------------------------------------------------------------------------------
# Releases


def _index_url() -> str:
    return (os.environ.get("PIP_INDEX_URL") or PYPI_SIMPLE).rstrip("/")


def project_files(client: httpx.Client, name: str) -> list[dict]:
    """The files of a project on the index (PEP 691 JSON): filename, url, hashes."""
    response = client.get(
        f"{_index_url()}/{canonicalize_name(name)}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    response.raise_for_status()
    files = response.json()["files"]
    for item in files:
        item["url"] = str(httpx.URL(str(response.url)).join(item["url"]))
    return files


def release_file(files: list[dict], filename: str) -> dict | None:
    return next((f for f in files if f["filename"] == filename and not f.get("yanked")), None)


def cp311_wheel(files: list[dict], name: str, version: str, arch: str) -> dict | None:
    stem = f"{name.replace('-', '_')}-{version}-cp311-cp311-"
    for f in files:
        fn = f["filename"]
        if fn.startswith(stem) and fn.endswith(".whl") and arch in fn and not f.get("yanked") and _glibc_ok(fn):
            return f
    return None


def _glibc_ok(filename: str) -> bool:
    for major, minor in re.findall(r"manylinux_(\d+)_(\d+)_", filename):
        if (int(major), int(minor)) <= GLIBC:
            return True
    return "manylinux2014" in filename or "manylinux1" in filename or "manylinux2010" in filename


# ---------------------------------------------------------------------------------------------------------------------
# Requirements and resolution


def vllm_requirements(sdist: Sdist) -> list[str]:
    """What `VLLM_TARGET_DEVICE=empty pip install vllm[audio]` asks for: requirements/common.txt + the audio extra."""
    requirements = _requirements_file(sdist, "requirements/common.txt")
    tree = ast.parse(sdist.read("setup.py"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extras_require" and isinstance(node.value, ast.Dict):
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "audio":
                    requirements += [ast.literal_eval(v) for v in value.elts]  # type: ignore[attr-defined]
    return requirements


def _requirements_file(sdist: Sdist, member: str) -> list[str]:
    out = []
    for line in sdist.read(member).splitlines():
        line = line.split(" #")[0].strip()
        if line.startswith("-r "):
            out += _requirements_file(sdist, str(Path(member).parent / line.split()[1]))
        elif line and not line.startswith(("#", "-")):
            out.append(line)
    return out


def wheel_requires(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(whl.read(meta).decode()).get_all("Requires-Dist") or []


def sdist_requires(path: Path) -> list[str]:
    sdist = Sdist(path)
    return Parser().parsestr(sdist.read("PKG-INFO")).get_all("Requires-Dist") or []


def marker_env(arch: str) -> dict[str, str]:
    env = {key: str(value) for key, value in default_environment().items()}
    env.update(
        python_version=PYTHON,
        python_full_version=f"{PYTHON}.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        platform_system="Linux",
        platform_machine=arch,
        os_name="posix",
    )
    return env


def applicable(requirements: Iterable[str], arch: str, extras: Iterable[str] = ()) -> list[Requirement]:
    env = marker_env(arch)
    out = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is None:
            out.append(req)
            continue
        if any(req.marker.evaluate({**env, "extra": extra}) for extra in ("", *extras)):
            req.marker = None
            out.append(req)
    return out


def platform_flags(arch: str) -> list[str]:
    tags = [f"manylinux_{GLIBC[0]}_{minor}_{arch}" for minor in range(GLIBC[1], 16, -1)]
    tags += [f"manylinux2014_{arch}"]
    flags = []
    for tag in tags:
        flags += ["--platform", tag]
    return flags


class Unresolvable(Exception):
    def __init__(self, output: str):
        super().__init__(output)
        self.output = output


@dataclass(frozen=True)
class Installed:
    """A distribution as `pip check` sees it in the image: its version and its Requires-Dist (markers kept)."""

    version: Version
    requires: tuple[str, ...] = ()


# What the ascend target's RUN steps do besides installing what they resolve (docker/Dockerfile, docker/ascend-build.sh).
UPSTREAM_TRITON = "triton"  # drop_upstream_triton removes it after every step: triton-ascend owns triton/
INSTALLED_LAST = "triton-ascend"  # `pip install --no-deps` once upstream triton is gone (ascend-requires.py's LAST)
TORCH_BUILDS = {"torch": "TORCH_VERSION", "torchvision": "TORCHVISION_VERSION", "torchaudio": "TORCHAUDIO_VERSION"}


def vllm_step_requirements(pins: dict[str, str], vllm_sdist: Sdist) -> list[str]:
    """The torch step and the vLLM step: torch and vLLM's build requirements (the build is --no-build-isolation, they
    stay in the venv), then vLLM's own requirements with torch, transformers and prometheus-fastapi-instrumentator.
    One resolve: pip keeps what the torch step installed wherever it satisfies the vLLM step."""
    return [
        f"torch=={pins['TORCH_VERSION']}",
        *pins["VLLM_BUILD_REQUIRES"].split(),
        *vllm_requirements(vllm_sdist),
        f"transformers{pins['TRANSFORMERS_SPEC']}",
        f"prometheus-fastapi-instrumentator{pins['PROMETHEUS_FASTAPI_INSTRUMENTATOR_SPEC']}",
    ]


def ascend_step_requirements(pins: dict[str, str], ascend_requires: Iterable[str]) -> list[str]:
    """The vllm-ascend step: vLLM-Ascend's and torch-npu's requirements (torch-npu's come with `torch-npu==X`), less
    triton-ascend, with torch, torchvision and torchaudio, numpy, transformers and prometheus-fastapi-instrumentator."""
    own = [r for r in ascend_requires if canonicalize_name(Requirement(r).name) != INSTALLED_LAST]
    return [
        *own,
        f"torch-npu=={pins['TORCH_NPU_VERSION']}",
        *(f"{name}=={pins[pin]}" for name, pin in TORCH_BUILDS.items()),
        f"numpy{pins['NUMPY_SPEC']}",
        f"transformers{pins['TRANSFORMERS_SPEC']}",
        f"prometheus-fastapi-instrumentator{pins['PROMETHEUS_FASTAPI_INSTRUMENTATOR_SPEC']}",
    ]


def torch_local(arch: str) -> str:
    """The local version of the torch builds the product image takes (ascend-build.sh's torch_local)."""
    return "+cpu" if arch == "x86_64" else ""


def resolve(
    requirements: list[Requirement],
    arch: str,
    constraints: dict[str, Version] | None = None,
    extra_index: str | None = None,
) -> dict[str, Installed]:
    """`pip install --dry-run --report` for cp311 on `arch`, binary wheels only, against PyPI (or $PIP_INDEX_URL).
    `constraints` pin what an earlier install step left (pip keeps installed versions that satisfy)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in ("PIP_CERT", "PIP_INDEX_URL")}
    env["PIP_CONFIG_FILE"] = os.devnull  # this machine's find-links / local indexes / constraints don't apply
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    with tempfile.TemporaryDirectory(prefix="check-pins-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--target",
            str(Path(tmp) / "target"),
            "--report",
            str(report),
            "--only-binary",
            ":all:",
            "--python-version",
            PYTHON,
            "--implementation",
            "cp",
            "--abi",
            "cp311",
            *platform_flags(arch),
        ]
        if constraints:
            (Path(tmp) / "constraints.txt").write_text("".join(f"{n}=={v}\n" for n, v in constraints.items()))
            cmd += ["--constraint", str(Path(tmp) / "constraints.txt")]
        if extra_index:
            cmd += ["--extra-index-url", extra_index]
        result = subprocess.run([*cmd, *map(str, requirements)], capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise Unresolvable((result.stdout + result.stderr).strip())
        installed = json.loads(report.read_text())["install"]
    return {
        canonicalize_name(i["metadata"]["name"]): Installed(
            Version(i["metadata"]["version"]), tuple(i["metadata"].get("requires_dist") or ())
        )
        for i in installed
    }


def _missing_pin(output: str) -> str | None:
    match = re.search(r"No matching distribution found for (\S+)", output)
    return match[1] if match else None


def resolve_with_source_builds(
    client: httpx.Client,
    requirements: list[Requirement],
    arch: str,
    report: Report,
    constraints: dict[str, Version] | None = None,
    extra_index: str | None = None,
) -> dict[str, Installed]:
    """Resolve; a `name==version` with no wheel but a source release on the index is taken out of the binary
    resolve (pip builds it in the image) and its own declared requirements go in instead."""
    requirements = list(requirements)
    source_builds: dict[str, Installed] = {}
    for _ in range(5):
        try:
            resolved = resolve(requirements, arch, constraints, extra_index)
            resolved.update(source_builds)
            return resolved
        except Unresolvable as exc:
            missing = _missing_pin(exc.output)
            req = next((r for r in requirements if missing and str(r) == missing), None)
            pinned = [s.version for s in req.specifier if s.operator == "=="] if req else []
            if not req or not pinned:
                raise
            name, version = canonicalize_name(req.name), pinned[0]
            sdist = release_file(project_files(client, name), f"{name.replace('-', '_')}-{version}.tar.gz")
            if sdist is None:
                raise
            requires = sdist_requires(cached_download(client, sdist["url"], sdist["hashes"]["sha256"]))
            report.note(f"{arch}: {name}=={version} has no cp311 wheel; pip builds it from its source release")
            requirements.remove(req)
            requirements += applicable(requires, arch)
            source_builds[name] = Installed(Version(version), tuple(requires))
    raise Unresolvable("too many source-only pins")


def _resolve_keeping(
    client: httpx.Client,
    step: str,
    requirements: list[Requirement],
    arch: str,
    report: Report,
    keep: dict[str, Version],
    extra_index: str | None,
) -> dict[str, Installed]:
    """Resolve with `keep` as constraints; a kept version that blocks the resolve is released (pip would move it too),
    one round per conflict pip names."""
    keep = dict(keep)
    for _ in range(12):
        try:
            return resolve_with_source_builds(client, requirements, arch, report, keep, extra_index)
        except Unresolvable as exc:
            blocking = {
                canonicalize_name(m)
                for m in re.findall(r"The user requested \(constraint\) ([A-Za-z0-9_.\-]+)==", exc.output)
            }
            if not blocking & set(keep):
                raise
            for name in blocking & set(keep):
                report.note(f"{arch}: the {step} moves {name} from {keep.pop(name)}")
    return resolve_with_source_builds(client, requirements, arch, report, None, extra_index)


def _kept(installed: dict[str, Installed], requirements: list[Requirement], direct_only: bool) -> dict[str, Version]:
    """What a later `pip install` keeps of the installed packages where they satisfy its requirements (pip's
    only-if-needed strategy): the constraints of its resolve. `direct_only`: only those it asks for by name."""
    direct = {canonicalize_name(r.name) for r in requirements}
    return {
        name: package.version
        for name, package in installed.items()
        if (name in direct or not direct_only)
        and all(
            r.specifier.contains(package.version, prereleases=True)
            for r in requirements
            if canonicalize_name(r.name) == name
        )
    }


def _reachable(client: httpx.Client, url: str) -> bool:
    try:
        client.get(url.rstrip("/") + "/torch/", timeout=10)
        return True
    except httpx.HTTPError:
        return False


def _without_local_torch(
    client: httpx.Client, requirements: list[Requirement], arch: str, pins: dict[str, str], report: Report
) -> tuple[list[Requirement], dict[str, Installed]]:
    """torch-npu's x86_64 wheels require `torch==X+cpu`, which only the PyTorch CPU index has. Without that index:
    check the wheel exists and that X is the TORCH_VERSION pin, then resolve with PyPI's torch X in its place."""
    out: list[Requirement] = []
    substituted: dict[str, Installed] = {}
    for req in requirements:
        pinned = [s.version for s in req.specifier if s.operator == "=="]
        if canonicalize_name(req.name) != "torch-npu" or not pinned:
            out.append(req)
            continue
        wheel = cp311_wheel(project_files(client, "torch-npu"), "torch-npu", pinned[0], arch)
        if wheel is None:
            out.append(req)  # the resolve reports it missing
            continue
        requires = wheel_requires(cached_download(client, wheel["url"], wheel["hashes"]["sha256"]))
        local = [r for r in map(Requirement, requires) if r.name == "torch" and "+" in str(r.specifier)]
        if not local:
            out.append(req)
            continue
        public = str(local[0].specifier).split("==")[-1].split("+")[0]
        if public != pins["TORCH_VERSION"]:
            pin = pins["TORCH_VERSION"]
            report.fail(f"{arch}: torch-npu {pinned[0]} requires `{local[0]}`, the TORCH_VERSION pin is {pin}")
        report.note(
            f"{arch}: torch-npu {pinned[0]} requires `{local[0]}` (PyTorch CPU index); resolved with PyPI's torch {public}"
        )
        substituted[canonicalize_name(req.name)] = Installed(Version(pinned[0]), tuple(requires))
    return out, substituted


def with_local_torch(installed: dict[str, Installed], arch: str) -> dict[str, Installed]:
    """The torch builds as the image has them: `X+cpu` on x86_64 where the resolve (PyPI only) found X."""
    local = torch_local(arch)
    return {
        name: Installed(Version(f"{p.version}{local}"), p.requires)
        if name in TORCH_BUILDS and local and not p.version.local
        else p
        for name, p in installed.items()
    }


def pip_check(installed: dict[str, Installed], arch: str) -> list[tuple[str, str]]:
    """What `pip check` reports on `installed`: (the required package, the finding) per requirement of an installed
    distribution that is missing or not met. Markers are evaluated for `arch` and without extras, as pip check does."""
    env = {**marker_env(arch), "extra": ""}
    findings: list[tuple[str, str]] = []
    for name, package in sorted(installed.items()):
        for text in package.requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            required = canonicalize_name(req.name)
            have = installed.get(required)
            if have is None:
                findings.append((required, f"{name} {package.version} requires {req}, which is not installed"))
            elif not req.specifier.contains(have.version, prereleases=True):
                findings.append(
                    (
                        required,
                        f"{name} {package.version} has requirement {req}, but you have {required} {have.version}",
                    )
                )
    return findings


def check_resolution(client: httpx.Client, pins: dict[str, str], vllm_sdist: Sdist, report: Report) -> None:
    version = pins["VLLM_ASCEND_VERSION"]
    files = project_files(client, "vllm-ascend")
    source = release_file(files, f"vllm_ascend-{version}.tar.gz")
    if source:
        report.ok(f"vllm-ascend {version} source release on the index ({source['filename']})")
    else:
        report.fail(f"vllm-ascend {version} has no source release on the index: VLLM_ASCEND_VERSION")
    torch_index = pins.get("TORCH_INDEX_URL") or None
    if torch_index and not _reachable(client, torch_index):
        report.note(f"the PyTorch CPU index {torch_index} (TORCH_INDEX_URL) is not reachable from here: PyPI only")
        torch_index = None
    triton_files = project_files(client, INSTALLED_LAST)
    for arch in ARCHES:
        wheel = cp311_wheel(files, "vllm-ascend", version, arch)
        if wheel:
            requires = wheel_requires(cached_download(client, wheel["url"], wheel["hashes"]["sha256"]))
            report.ok(f"{arch}: vllm-ascend {version} wheel {wheel['filename']}")
        elif source:
            requires = sdist_requires(cached_download(client, source["url"], source["hashes"]["sha256"]))
            report.note(f"{arch}: no vllm-ascend {version} cp311 wheel; the image builds it from the source release")
        else:
            report.fail(f"{arch}: vllm-ascend {version} has neither a cp311 wheel nor a source release")
            continue
        triton_version = pins["TRITON_ASCEND_VERSION"]
        triton_wheel = cp311_wheel(triton_files, INSTALLED_LAST, triton_version, arch)
        if triton_wheel is None:
            report.fail(f"{arch}: triton-ascend {triton_version} has no cp311 wheel: TRITON_ASCEND_VERSION")
            continue
        triton_requires = wheel_requires(cached_download(client, triton_wheel["url"], triton_wheel["hashes"]["sha256"]))
        installed_apart = {
            "vllm": Installed(Version(pins["VLLM_VERSION"]), tuple(vllm_requirements(vllm_sdist))),
            "vllm-ascend": Installed(Version(version), tuple(requires)),
            INSTALLED_LAST: Installed(Version(triton_version), tuple(triton_requires)),
        }
        _check_arch(client, pins, arch, vllm_sdist, requires, installed_apart, torch_index, report)


def _check_arch(
    client: httpx.Client,
    pins: dict[str, str],
    arch: str,
    vllm_sdist: Sdist,
    ascend_requires: list[str],
    installed_apart: dict[str, Installed],
    torch_index: str | None,
    report: Report,
) -> None:
    """The ascend target's install steps on `arch`, then `pip check` over what the image ends with."""
    vllm_reqs = applicable(vllm_step_requirements(pins, vllm_sdist), arch)
    ascend_reqs = applicable(ascend_step_requirements(pins, ascend_requires), arch)
    project_reqs = applicable(project_dependencies(), arch)
    substituted: dict[str, Installed] = {}
    if not torch_index:
        ascend_reqs, substituted = _without_local_torch(client, ascend_reqs, arch, pins, report)
    try:
        step1 = resolve_with_source_builds(client, vllm_reqs, arch, report)
        step1.pop(UPSTREAM_TRITON, None)
        report.ok(f"{arch}: the torch and vLLM {pins['VLLM_VERSION']} steps resolve ({len(step1)} packages)")
        keep = _kept(step1, ascend_reqs, direct_only=True)
        step2 = _resolve_keeping(client, "vllm-ascend step", ascend_reqs, arch, report, keep, torch_index)
        step2.pop(UPSTREAM_TRITON, None)
        report.ok(f"{arch}: the vllm-ascend {pins['VLLM_ASCEND_VERSION']} step resolves on top ({len(step2)} packages)")
        keep = _kept({**step1, **step2}, project_reqs, direct_only=False)
        step3 = _resolve_keeping(client, "project step", project_reqs, arch, report, keep, torch_index)
        report.ok(f"{arch}: our package's dependencies resolve on top ({len(step3)} packages)")
    except Unresolvable as exc:
        lines = [line for line in exc.output.splitlines() if line.startswith("ERROR")]
        report.fail(f"{arch}: the pins do not resolve: {' | '.join(lines[-2:]) or exc.output[-400:]}")
        return
    image = with_local_torch({**step1, **step2, **step3, **substituted, **installed_apart}, arch)
    if UPSTREAM_TRITON in image:
        report.fail(f"{arch}: our package's dependencies bring upstream triton back after drop_upstream_triton")
    pinned = {**TORCH_BUILDS, "torch-npu": "TORCH_NPU_VERSION", INSTALLED_LAST: "TRITON_ASCEND_VERSION"}
    for name, pin in pinned.items():
        found = image[name].version.public if name in image else None
        if found != pins[pin]:
            report.fail(f"{arch}: the image ends with {name} {found}, the pin {pin} is {pins[pin]}")
    accepted = {canonicalize_name(n) for n in pins["ACCEPTED_CONFLICTS"].replace(",", " ").split()}
    for required, finding in pip_check(image, arch):
        if required in accepted:
            report.note(f"{arch}: accepted by ACCEPTED_CONFLICTS: {finding}")
        else:
            report.fail(
                f"{arch}: pip check: {finding} - fix the pins, or add {required} to ACCEPTED_CONFLICTS if upstream "
                "ships it"
            )


# ---------------------------------------------------------------------------------------------------------------------
# Arguments: the rendered commands against what vllm_sources reads from the source releases


class RenderRefused(RuntimeError):
    """`llama-ascend render` refused the config (exit 2); the message is its stderr."""


@functools.cache
def _render(sets: tuple[str, ...], config: Path) -> tuple[int, str, str]:
    cmd = [sys.executable, "-m", "llama_ascend", "render", "--json", "--config", str(config)]
    for item in sets:
        cmd += ["--set", item]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    return result.returncode, result.stdout, result.stderr.strip()


def ascend_profiles() -> list[Path]:
    """Every profile under config/ that runs the ascend backend (the reference first)."""
    import yaml

    found = [
        p
        for p in sorted((ROOT / "config").glob("*.yaml"))
        if (yaml.safe_load(p.read_text()) or {}).get("backend", "ascend") == "ascend"
    ]
    return sorted(found, key=lambda p: p != REFERENCE_CONFIG)


def render_variants() -> list[tuple[Path, tuple[str, ...]]]:
    """Every ascend profile as it is, then the reference with each managed flag it leaves out switched on (the flag
    table's examples), so every row of the table is rendered and checked at least once."""
    from llama_ascend.flags import FLAGS

    examples = [(REFERENCE_CONFIG, (row.example,)) for row in FLAGS if row.example]
    return [*((profile, ()) for profile in ascend_profiles()), *examples]


def render_launch(sets: tuple[str, ...], config: Path = REFERENCE_CONFIG) -> dict:
    returncode, stdout, stderr = _render(tuple(sets), config)
    if returncode == 2:
        raise RenderRefused(stderr)
    if returncode != 0:
        raise RuntimeError(f"llama-ascend render {' '.join(sets)} exited {returncode}: {stderr}")
    return json.loads(stdout)


def options(argv: list[str]) -> Iterator[tuple[str, str | None]]:
    """(flag, value) pairs of a server argv (after `python -m module`)."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("-"):
            raise ValueError(f"positional argument {token!r} where a flag was expected")
        if "=" in token:
            name, value = token.split("=", 1)
            yield name, value
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            yield token, argv[i + 1]
            i += 2
        else:
            yield token, None
            i += 1


def check_launch(launch: dict, vllm: VllmArgs, ascend: AscendArgs, vllm_sdist: Sdist) -> list[str]:
    problems = []
    argv = launch["argv"]
    if argv[1:3] != ["-m", SERVER_MODULE]:
        return [f"argv must start `python -m {SERVER_MODULE}`, got {argv[:3]}"]
    if 'if __name__ == "__main__"' not in vllm_sdist.read(SERVER_MODULE.replace(".", "/") + ".py"):
        problems.append(f"{SERVER_MODULE} has no __main__ in vLLM's source release")
    for flag, value in options(argv[3:]):
        normalized = flag[:2] + flag[2:].replace("_", "-") if flag.startswith("--") else flag
        if normalized not in vllm.flags:
            problems.append(f"{flag}: not an argument of vLLM's OpenAI server")
            continue
        if normalized in vllm.bool_flags and value is not None:
            problems.append(f"{flag} {value}: a boolean flag takes no value")
        if normalized == "--compilation-config" and value is not None:
            config = json.loads(value)
            for key in set(config) - vllm.compilation_fields:
                problems.append(f"--compilation-config: `{key}` is not a CompilationConfig field")
            mode = config.get("cudagraph_mode")
            if mode is not None and mode not in vllm.graph_modes:
                problems.append(f"--compilation-config: cudagraph_mode {mode} is not a CUDAGraphMode")
            elif mode is not None and (problem := graph_mode_problem(mode, ascend)):
                problems.append(f"--compilation-config: {problem}")
        if normalized == "--additional-config" and value is not None:
            for key in set(json.loads(value)) - ascend.additional_config_keys:
                problems.append(f"--additional-config: vLLM-Ascend reads no `{key}`")
        if normalized == "--dtype" and value not in vllm.dtypes:
            problems.append(f"--dtype {value}: not one of {sorted(vllm.dtypes)}")
        if normalized == "--quantization" and (problem := quantization_problem(str(value), ascend)):
            problems.append(f"--quantization {value}: {problem}")
    known_env = vllm.env_vars | ascend.env_vars
    for name in [*launch.get("env", {}), *launch.get("secret_env", {})]:
        if name.startswith("VLLM_") and name not in known_env:
            problems.append(f"environment {name}: vLLM 0.18.0 / vLLM-Ascend 0.18.0 read no such variable")
    return problems


def check_arguments(vllm_sdist: Sdist, ascend_sdist: Sdist, report: Report) -> None:
    vllm = parse_vllm(vllm_sdist)
    ascend = parse_vllm_ascend(ascend_sdist)
    report.ok(
        f"read {len(vllm.flags)} server flags, {len(vllm.compilation_fields)} CompilationConfig fields and "
        f"{len(vllm.env_vars)} VLLM_* variables from vLLM; graph modes {sorted(ascend.graph_modes)} (rewritten: "
        f"{ascend.graph_mode_rewrites or 'none'}), quantizations {sorted(ascend.quantizations)} (registered: "
        f"{sorted(ascend.registered_quantizations)}) from vLLM-Ascend"
    )
    for config, sets in render_variants():
        label = " ".join([config.name, *(f"--set {s}" for s in sets)])
        problems = check_launch(render_launch(sets, config), vllm, ascend, vllm_sdist)
        for problem in problems:
            report.fail(f"render ({label}): {problem}")
        if not problems:
            report.ok(f"render ({label}): every flag, option key and VLLM_* variable is known to 0.18.0")
    check_accepted_values(vllm, ascend, vllm_sdist, report)
    check_combination_sources(ascend_sdist, report)


def check_combination_sources(ascend_sdist: Sdist, report: Report) -> None:
    """The refusals of llama_ascend.combinations still rest on vLLM-Ascend 0.18.0's source: each quoted text is in its
    file, and no removed additional_config key is read anywhere in the package."""
    from llama_ascend.combinations import REMOVED_ADDITIONAL_CONFIG, UPSTREAM_TEXTS

    for member, texts in UPSTREAM_TEXTS.items():
        source = ascend_sdist.read(member)
        for text in texts:
            if text in source:
                report.ok(f"combinations: {member} has {text!r}")
            else:
                report.fail(f"combinations: {member} no longer has {text!r}: review the rule in combinations.py")
    package = "\n".join(ascend_sdist.read(n) for n in ascend_sdist.names("vllm_ascend/") if n.endswith(".py"))
    for key in REMOVED_ADDITIONAL_CONFIG:
        if f'"{key}"' in package or f"'{key}'" in package:
            report.fail(f"combinations: vLLM-Ascend reads additional_config `{key}` again: do not refuse it")
        else:
            report.ok(f"combinations: additional_config `{key}` is read nowhere in vllm_ascend/ (refused)")


# The server keys whose values vLLM-Ascend interprets: every value the config accepts for them is checked.
CHECKED_KEYS = ("compilation", "quantization")


def config_choices() -> dict[str, list[str]]:
    """What the config's types accept for the server keys whose values reach vLLM-Ascend (null aside)."""
    from llama_ascend.config import ServerConfig, literal_values

    return {
        key: [v for v in literal_values(ServerConfig.model_fields[key].annotation) if v is not None]
        for key in CHECKED_KEYS
    }


def _upstream_problem(key: str, value: str, ascend: AscendArgs) -> str | None:
    return graph_mode_problem(value, ascend) if key == "compilation" else quantization_problem(value, ascend)


def check_accepted_values(vllm: VllmArgs, ascend: AscendArgs, vllm_sdist: Sdist, report: Report) -> None:
    """Every value the config accepts for a checked key, rendered for the ascend backend: accepted ones must be what
    vLLM-Ascend 0.18.0 runs; refused ones (exit 2) should be what it does not."""
    from llama_ascend.config import ASCEND_GRAPH_MODE_REWRITES

    if ascend.graph_mode_rewrites != ASCEND_GRAPH_MODE_REWRITES:  # what the refusal message tells the user
        report.fail(
            f"config.ASCEND_GRAPH_MODE_REWRITES is {ASCEND_GRAPH_MODE_REWRITES}, vLLM-Ascend's platform.py rewrites "
            f"{ascend.graph_mode_rewrites}"
        )
    for key, values in config_choices().items():
        for value in values:
            label = f"server.{key}={value}"
            upstream = _upstream_problem(key, value, ascend)
            try:
                launch = render_launch(("backend=ascend", label))
            except RenderRefused as refused:
                if upstream:
                    report.ok(f"{label}: refused by the config (exit 2), rightly: {upstream}")
                else:
                    report.note(f"{label}: refused by the config, but vLLM-Ascend 0.18.0 runs it: {refused}")
                continue
            except RuntimeError as exc:
                report.fail(f"{label}: {exc}")
                continue
            problems = check_launch(launch, vllm, ascend, vllm_sdist)
            for problem in problems:
                report.fail(f"{label}: the config accepts it for the ascend backend, but {problem}")
            if not problems:
                report.ok(f"{label}: accepted by the config, and vLLM-Ascend 0.18.0 runs it")


# ---------------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-resolve", action="store_true", help="only releases and arguments (no pip resolve)")
    args = parser.parse_args(argv)
    pins = dockerfile_args()
    report = Report()
    with http_client() as client:
        print("releases", flush=True)
        url, sha = pins["VLLM_SDIST_URL"], pins["VLLM_SDIST_SHA256"]
        expected = f"vllm-{pins['VLLM_VERSION']}.tar.gz"
        if not url.endswith("/" + expected):
            report.fail(f"VLLM_SDIST_URL names {url.rsplit('/', 1)[-1]}, VLLM_VERSION wants {expected}")
        try:
            vllm_sdist = Sdist(cached_download(client, url, sha))
            report.ok(f"vLLM {pins['VLLM_VERSION']} source release: {expected}, sha256 {sha[:12]}…")
        except DownloadError as exc:
            report.fail(f"vLLM source release (VLLM_SDIST_URL / VLLM_SDIST_SHA256): {exc}")
            return _finish(report)
        ascend_files = project_files(client, "vllm-ascend")
        ascend_source = release_file(ascend_files, f"vllm_ascend-{pins['VLLM_ASCEND_VERSION']}.tar.gz")
        if ascend_source is None:
            report.fail(f"vllm-ascend {pins['VLLM_ASCEND_VERSION']}: no source release on the index")
            return _finish(report)
        ascend_sdist = Sdist(cached_download(client, ascend_source["url"], ascend_source["hashes"]["sha256"]))
        if not args.skip_resolve:
            print("resolution (cp311, binary wheels, per architecture)", flush=True)
            check_resolution(client, pins, vllm_sdist, report)
        print("arguments", flush=True)
        check_arguments(vllm_sdist, ascend_sdist, report)
    return _finish(report)


def _finish(report: Report) -> int:
    if report.failures:
        print(f"check-pins: {len(report.failures)} problem(s)", file=sys.stderr)
        return 1
    print("check-pins: ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
