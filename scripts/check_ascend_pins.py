"""Fidelity check for the ascend image, run in CI: the pins exist and resolve, and the rendered vLLM command is one
that vLLM 0.18.0 and vLLM-Ascend 0.18.0 accept. So a wrong pin or flag fails here, not on a user's NPU host.

1. Releases: the vLLM source release the Dockerfile builds (VLLM_SDIST_URL, verified against VLLM_SDIST_SHA256) and
   vLLM-Ascend's release files on PyPI (wheel per architecture, source release).
2. Resolution, per architecture (x86_64, aarch64), for CPython 3.11 on the CANN base's glibc, binary wheels only,
   with `pip install --dry-run --report` - in the Dockerfile's order: vLLM's own requirements (from its source
   release; the `empty` target installs requirements/common.txt + the `audio` extra), then vLLM-Ascend's requirements
   with our pins. A pinned dependency published only as a source release (arctic-inference) is checked to exist and
   its declared requirements join the resolve. Then every requirement of both is checked against the final versions:
   a conflict fails unless it is named in the Dockerfile's ACCEPTED_CONFLICTS.
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
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_build import ROOT, dockerfile_args

ARCHES = ("x86_64", "aarch64")
PYTHON = "3.11"
GLIBC = (2, 35)  # Ubuntu 22.04, the CANN 8.5.1 base
PYPI_SIMPLE = "https://pypi.org/simple"
REFERENCE_CONFIG = ROOT / "config" / "llama-3.1-8b-instruct.yaml"
SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def cache_dir() -> Path:
    root = os.environ.get("LLAMA_ASCEND_CACHE") or Path.home() / ".cache" / "llama-ascend"
    path = Path(root).expanduser() / "upstream"
    path.mkdir(parents=True, exist_ok=True)
    return path


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


def _client() -> httpx.Client:
    verify: str | bool = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or True
    return httpx.Client(timeout=120, follow_redirects=True, verify=verify)


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


def download(client: httpx.Client, url: str, sha256: str) -> Path:
    """A release file, cached by name and verified by hash."""
    dest = cache_dir() / url.rsplit("/", 1)[-1].split("#")[0]
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    tmp = dest.with_suffix(dest.suffix + ".part")
    with client.stream("GET", url) as response:
        response.raise_for_status()
        with tmp.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
    actual = sha256_file(tmp)
    if actual != sha256:
        tmp.unlink()
        raise ValueError(f"{url}: sha256 {actual}, expected {sha256}")
    tmp.replace(dest)
    return dest


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Sdist:
    """Read files of a source release without unpacking it."""

    def __init__(self, path: Path):
        self.path = path
        self._tar = tarfile.open(path)  # noqa: SIM115 - read for as long as the Sdist lives
        self._prefix = self._tar.getnames()[0].split("/")[0]

    def read(self, member: str) -> str:
        extracted = self._tar.extractfile(f"{self._prefix}/{member}")
        if extracted is None:
            raise FileNotFoundError(member)
        return extracted.read().decode()

    def names(self, prefix: str) -> list[str]:
        start = f"{self._prefix}/{prefix}"
        return [n[len(self._prefix) + 1 :] for n in self._tar.getnames() if n.startswith(start)]


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


def resolve(
    requirements: list[Requirement],
    arch: str,
    constraints: dict[str, Version] | None = None,
    extra_index: str | None = None,
) -> dict[str, Version]:
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
    return {canonicalize_name(i["metadata"]["name"]): Version(i["metadata"]["version"]) for i in installed}


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
) -> dict[str, Version]:
    """Resolve; a `name==version` with no wheel but a source release on the index is taken out of the binary
    resolve (pip builds it in the image) and its own declared requirements go in instead."""
    requirements = list(requirements)
    source_builds: dict[str, Version] = {}
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
            path = download(client, sdist["url"], sdist["hashes"]["sha256"])
            report.note(f"{arch}: {name}=={version} has no cp311 wheel; pip builds it from its source release")
            requirements.remove(req)
            requirements += applicable(sdist_requires(path), arch)
            source_builds[name] = Version(version)
    raise Unresolvable("too many source-only pins")


def _resolve_keeping(
    client: httpx.Client,
    requirements: list[Requirement],
    arch: str,
    report: Report,
    keep: dict[str, Version],
    extra_index: str | None,
) -> dict[str, Version]:
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
                report.note(f"{arch}: the vllm-ascend step moves {name} from the vLLM step's {keep.pop(name)}")
    return resolve_with_source_builds(client, requirements, arch, report, None, extra_index)


def _reachable(client: httpx.Client, url: str) -> bool:
    try:
        client.get(url.rstrip("/") + "/torch/", timeout=10)
        return True
    except httpx.HTTPError:
        return False


def _without_local_torch(
    client: httpx.Client, requirements: list[Requirement], arch: str, pins: dict[str, str], report: Report
) -> tuple[list[Requirement], dict[str, Version]]:
    """torch-npu's x86_64 wheels require `torch==X+cpu`, which only the PyTorch CPU index has. Without that index:
    check the wheel exists and that X is the TORCH_VERSION pin, then resolve with PyPI's torch X in its place."""
    out: list[Requirement] = []
    substituted: dict[str, Version] = {}
    for req in requirements:
        pinned = [s.version for s in req.specifier if s.operator == "=="]
        if canonicalize_name(req.name) != "torch-npu" or not pinned:
            out.append(req)
            continue
        wheel = cp311_wheel(project_files(client, "torch-npu"), "torch-npu", pinned[0], arch)
        if wheel is None:
            out.append(req)  # the resolve reports it missing
            continue
        torch_reqs = [Requirement(r) for r in wheel_requires(download(client, wheel["url"], wheel["hashes"]["sha256"]))]
        local = [r for r in torch_reqs if r.name == "torch" and "+" in str(r.specifier)]
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
        substituted[canonicalize_name(req.name)] = Version(pinned[0])
    return out, substituted


def conflicts(final: dict[str, Version], requirements: Iterable[Requirement]) -> list[str]:
    out = []
    for req in requirements:
        name = canonicalize_name(req.name)
        if name in final and not req.specifier.contains(final[name], prereleases=True):
            out.append(f"{name} {final[name]} does not satisfy `{req}`")
    return out


def check_resolution(client: httpx.Client, pins: dict[str, str], vllm_sdist: Sdist, report: Report) -> None:
    accepted = {canonicalize_name(n) for n in pins.get("ACCEPTED_CONFLICTS", "").replace(",", " ").split()}
    version = pins["VLLM_ASCEND_VERSION"]
    files = project_files(client, "vllm-ascend")
    source = release_file(files, f"vllm_ascend-{version}.tar.gz")
    if source:
        report.ok(f"vllm-ascend {version} source release on the index ({source['filename']})")
    else:
        report.fail(f"vllm-ascend {version} has no source release on the index: VLLM_ASCEND_VERSION")
    pins_reqs = [
        f"torch=={pins['TORCH_VERSION']}",
        f"torch-npu=={pins['TORCH_NPU_VERSION']}",
        f"triton-ascend=={pins['TRITON_ASCEND_VERSION']}",
        f"transformers{pins['TRANSFORMERS_SPEC']}",
        f"numpy{pins['NUMPY_SPEC']}",
    ]
    torch_index = pins.get("TORCH_INDEX_URL") or None
    if torch_index and not _reachable(client, torch_index):
        report.note(f"the PyTorch CPU index {torch_index} (TORCH_INDEX_URL) is not reachable from here: PyPI only")
        torch_index = None
    for arch in ARCHES:
        wheel = cp311_wheel(files, "vllm-ascend", version, arch)
        if wheel:
            requires = wheel_requires(download(client, wheel["url"], wheel["hashes"]["sha256"]))
            report.ok(f"{arch}: vllm-ascend {version} wheel {wheel['filename']}")
        elif source:
            requires = sdist_requires(download(client, source["url"], source["hashes"]["sha256"]))
            report.note(f"{arch}: no vllm-ascend {version} cp311 wheel; the image builds it from the source release")
        else:
            report.fail(f"{arch}: vllm-ascend {version} has neither a cp311 wheel nor a source release")
            continue
        vllm_reqs = applicable(vllm_requirements(vllm_sdist), arch)
        ascend_reqs = applicable(requires, arch) + applicable(pins_reqs, arch)
        step2_reqs, substituted = list(ascend_reqs), dict[str, Version]()
        if not torch_index:
            step2_reqs, substituted = _without_local_torch(client, step2_reqs, arch, pins, report)
        try:
            step1 = resolve_with_source_builds(client, vllm_reqs, arch, report)
            report.ok(f"{arch}: vLLM {pins['VLLM_VERSION']} requirements resolve ({len(step1)} packages)")
            # The second `pip install` keeps an installed package it asks for directly when the installed version
            # satisfies (pip's only-if-needed strategy): those go in as constraints; everything else may move.
            direct = {canonicalize_name(r.name) for r in step2_reqs}
            keep = {
                name: v
                for name, v in step1.items()
                if name in direct
                and all(
                    r.specifier.contains(v, prereleases=True) for r in step2_reqs if canonicalize_name(r.name) == name
                )
            }
            step2 = _resolve_keeping(client, step2_reqs, arch, report, keep, torch_index)
            step2.update(substituted)
            report.ok(f"{arch}: vllm-ascend {version} + pins resolve on top ({len(step2)} packages)")
        except Unresolvable as exc:
            lines = [line for line in exc.output.splitlines() if line.startswith("ERROR")]
            report.fail(f"{arch}: the pins do not resolve: {' | '.join(lines[-2:]) or exc.output[-400:]}")
            continue
        final = {**step1, **step2}
        for name, pin in (("torch", "TORCH_VERSION"), ("torch-npu", "TORCH_NPU_VERSION")):
            if str(final.get(name)) != pins[pin]:
                report.fail(f"{arch}: {name} resolved to {final.get(name)}, the pin {pin} is {pins[pin]}")
        for problem in conflicts(final, vllm_reqs + ascend_reqs):
            name = problem.split()[0]
            if name in accepted:
                report.note(f"{arch}: accepted conflict (ACCEPTED_CONFLICTS): {problem}")
            else:
                report.fail(
                    f"{arch}: {problem} - fix the pins, or add {name} to ACCEPTED_CONFLICTS if upstream ships it"
                )


# ---------------------------------------------------------------------------------------------------------------------
# Arguments: vLLM 0.18.0's parser and vLLM-Ascend 0.18.0's platform, read statically from the source releases


@dataclass
class VllmArgs:
    flags: set[str]
    bool_flags: set[str]
    compilation_fields: set[str]
    graph_modes: set[str]
    dtypes: set[str]
    env_vars: set[str]


def _classes(sources: Iterable[str]) -> dict[str, ast.ClassDef]:
    found: dict[str, ast.ClassDef] = {}
    for text in sources:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, node)
    return found


def _fields(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> dict[str, str]:
    """Annotated class attributes (dataclass fields) with their annotation text, base classes first."""
    fields: dict[str, str] = {}
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            fields.update(_fields(classes[base.id], classes))
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            fields[node.target.id] = ast.unparse(node.annotation)
    return fields


def _is_bool(annotation: str) -> bool:
    return re.search(r"\bbool\b", annotation) is not None


def parse_vllm(sdist: Sdist) -> VllmArgs:
    config_sources = [sdist.read(n) for n in sdist.names("vllm/config/") if n.endswith(".py")]
    arg_utils = sdist.read("vllm/engine/arg_utils.py")
    cli_args = sdist.read("vllm/entrypoints/openai/cli_args.py")
    classes = _classes([*config_sources, arg_utils, cli_args])
    flags: set[str] = set()
    bool_flags: set[str] = set()

    # arg_utils.py / cli_args.py: add_argument("--x", "-y", **group_kwargs["field"]) where group_kwargs = get_kwargs(C)
    for text in (arg_utils, cli_args):
        tree = ast.parse(text)
        kwarg_sources: dict[str, str] = {}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Call)
                and ast.unparse(node.value.func).endswith("get_kwargs")
                and node.value.args
                and isinstance(node.value.args[0], ast.Name)
            ):
                kwarg_sources[node.targets[0].id] = node.value.args[0].id
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "add_argument":
                continue
            names = {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
            names = {n for n in names if n.startswith("-")}
            if not names:
                continue
            flags |= names
            is_bool = any(k.arg == "action" and "BooleanOptionalAction" in ast.unparse(k.value) for k in node.keywords)
            # **group_kwargs["field"], also inside a dict merge: **{**group_kwargs["field"], "default": None}
            spreads = [k.value for k in node.keywords if k.arg is None]
            spreads += [
                v
                for d in spreads
                if isinstance(d, ast.Dict)
                for key, v in zip(d.keys, d.values, strict=True)
                if key is None
            ]
            for spread in spreads:
                if isinstance(spread, ast.Subscript) and isinstance(spread.value, ast.Name):
                    cls_name = kwarg_sources.get(spread.value.id)
                    key = spread.slice
                    if cls_name in classes and isinstance(key, ast.Constant):
                        annotation = _fields(classes[cls_name], classes).get(str(key.value), "")
                        is_bool = is_bool or _is_bool(annotation)
            if is_bool:
                bool_flags |= {n for n in names if n.startswith("--")}

    # cli_args.py: FrontendArgs (and its bases) register `--field-name` for every field.
    for name, annotation in _fields(classes["FrontendArgs"], classes).items():
        flag = "--" + name.replace("_", "-")
        flags.add(flag)
        if _is_bool(annotation):
            bool_flags.add(flag)
    flags |= {"--no-" + f[2:] for f in bool_flags}

    compilation_fields = set(_fields(classes["CompilationConfig"], classes))
    graph_modes = {
        t.id
        for node in classes["CUDAGraphMode"].body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    dtypes: set[str] = set()
    for text in config_sources:
        for node in ast.walk(ast.parse(text)):
            targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
            if isinstance(node, ast.Assign) and "ModelDType" in targets:
                strings = [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)]
                dtypes |= {v for v in strings if isinstance(v, str)}
    return VllmArgs(flags, bool_flags, compilation_fields, graph_modes, dtypes, _env_keys(sdist.read("vllm/envs.py")))


def _env_keys(text: str) -> set[str]:
    """Keys of the `environment_variables` / `env_variables` dict literal of an envs.py."""
    keys: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        target: ast.expr
        value: ast.expr | None
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign):
            target, value = node.targets[0], node.value
        else:
            continue
        named = isinstance(target, ast.Name) and target.id in ("environment_variables", "env_variables")
        if named and isinstance(value, ast.Dict):
            keys |= {k.value for k in value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return keys


@dataclass
class AscendArgs:
    graph_modes: set[str]  # the cudagraph modes platform.py runs as they are
    quantizations: set[str]  # NPUPlatform.supported_quantization: vLLM refuses any other method at start
    additional_config_keys: set[str]
    env_vars: set[str]
    # modes platform.py replaces by another one before it runs them: {FULL_AND_PIECEWISE: PIECEWISE}
    graph_mode_rewrites: dict[str, str] = field(default_factory=dict)
    # methods vllm_ascend registers with vLLM (@register_quantization_config): the ones it can load
    registered_quantizations: set[str] = field(default_factory=set)


def _mode_compares(test: ast.expr) -> list[str]:
    """X of `<...>.cudagraph_mode == CUDAGraphMode.X`, also several joined by `or`."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        return [mode for value in test.values for mode in _mode_compares(value)]
    if (
        isinstance(test, ast.Compare)
        and ast.unparse(test.left).endswith("cudagraph_mode")
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.comparators[0], ast.Attribute)
        and ast.unparse(test.comparators[0].value) == "CUDAGraphMode"
    ):
        return [test.comparators[0].attr]
    return []


def _mode_assignments(body: list[ast.stmt]) -> list[str]:
    """Y of every `<...>.cudagraph_mode = CUDAGraphMode.Y` in a branch body, in order."""
    modes = []
    for statement in body:
        for node in ast.walk(statement):
            if (
                isinstance(node, ast.Assign)
                and any(ast.unparse(t).endswith(".cudagraph_mode") for t in node.targets)
                and isinstance(node.value, ast.Attribute)
                and ast.unparse(node.value.value) == "CUDAGraphMode"
            ):
                modes.append(node.value.attr)
    return modes


def graph_mode_handling(platform_source: str) -> tuple[set[str], dict[str, str]]:
    """(the modes platform.py runs as they are, {mode: the mode it replaces it with}).

    A branch `if cudagraph_mode == X:` whose body assigns another mode to cudagraph_mode rewrites X (vLLM-Ascend
    0.18.0: FULL_AND_PIECEWISE -> PIECEWISE); one that does not handles X. A mode no branch names falls through to
    the final `else`, which sets NONE.
    """
    handled: set[str] = set()
    rewrites: dict[str, str] = {}
    for node in ast.walk(ast.parse(platform_source)):
        if not isinstance(node, ast.If):
            continue
        assigned = _mode_assignments(node.body)
        for mode in _mode_compares(node.test):
            if assigned and assigned[-1] != mode:
                rewrites[mode] = assigned[-1]
            else:
                handled.add(mode)
    return handled - set(rewrites), rewrites


def _string_constants(tree: ast.AST) -> dict[str, str]:
    return {
        t.id: n.value.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
        for t in n.targets
        if isinstance(t, ast.Name)
    }


def _string_value(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return constants.get(node.id) if isinstance(node, ast.Name) else None


def registered_quantizations(sdist: Sdist, constants: dict[str, str]) -> set[str]:
    """The methods of every `@register_quantization_config(NAME)` under vllm_ascend/."""
    methods: set[str] = set()
    for name in sdist.names("vllm_ascend/"):
        if not name.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(sdist.read(name))):
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                for decorator in node.decorator_list:
                    if (
                        isinstance(decorator, ast.Call)
                        and ast.unparse(decorator.func).endswith("register_quantization_config")
                        and decorator.args
                    ):
                        value = _string_value(decorator.args[0], constants)
                        if value:
                            methods.add(value)
    return methods


def parse_vllm_ascend(sdist: Sdist) -> AscendArgs:
    platform = sdist.read("vllm_ascend/platform.py")
    constants = _string_constants(ast.parse(sdist.read("vllm_ascend/utils.py")))
    quantizations: set[str] = set()
    for node in ast.walk(ast.parse(platform)):
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "supported_quantization":
            for elt in getattr(node.value, "elts", []):
                value = _string_value(elt, constants)
                if value:
                    quantizations.add(value)
    graph_modes, rewrites = graph_mode_handling(platform)
    keys = set(re.findall(r"additional_config\.get\(\s*\"(\w+)\"", sdist.read("vllm_ascend/ascend_config.py")))
    return AscendArgs(
        graph_modes,
        quantizations,
        keys,
        _env_keys(sdist.read("vllm_ascend/envs.py")),
        rewrites,
        registered_quantizations(sdist, constants),
    )


def graph_mode_problem(mode: str, ascend: AscendArgs) -> str | None:
    """Why vLLM-Ascend 0.18.0 does not run cudagraph_mode `mode` as asked, or None when it does."""
    if mode in ascend.graph_mode_rewrites:
        return f"vLLM-Ascend's platform silently runs cudagraph_mode {mode} as {ascend.graph_mode_rewrites[mode]}"
    if mode not in ascend.graph_modes:
        return f"vLLM-Ascend's platform does not handle cudagraph_mode {mode} (it falls back to NONE)"
    return None


def quantization_problem(method: str, ascend: AscendArgs) -> str | None:
    """Why vLLM-Ascend 0.18.0 does not run quantization `method`, or None when it does."""
    if method not in ascend.quantizations:
        return f"vLLM-Ascend supports {sorted(ascend.quantizations)} (NPUPlatform.supported_quantization)"
    if ascend.registered_quantizations and method not in ascend.registered_quantizations:
        return f"vLLM-Ascend registers no `{method}` quantization config ({sorted(ascend.registered_quantizations)})"
    return None


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
    with _client() as client:
        print("releases", flush=True)
        url, sha = pins["VLLM_SDIST_URL"], pins["VLLM_SDIST_SHA256"]
        expected = f"vllm-{pins['VLLM_VERSION']}.tar.gz"
        if not url.endswith("/" + expected):
            report.fail(f"VLLM_SDIST_URL names {url.rsplit('/', 1)[-1]}, VLLM_VERSION wants {expected}")
        try:
            vllm_sdist = Sdist(download(client, url, sha))
            report.ok(f"vLLM {pins['VLLM_VERSION']} source release: {expected}, sha256 {sha[:12]}…")
        except (httpx.HTTPError, ValueError) as exc:
            report.fail(f"vLLM source release (VLLM_SDIST_URL / VLLM_SDIST_SHA256): {exc}")
            return _finish(report)
        ascend_files = project_files(client, "vllm-ascend")
        ascend_source = release_file(ascend_files, f"vllm_ascend-{pins['VLLM_ASCEND_VERSION']}.tar.gz")
        if ascend_source is None:
            report.fail(f"vllm-ascend {pins['VLLM_ASCEND_VERSION']}: no source release on the index")
            return _finish(report)
        ascend_sdist = Sdist(download(client, ascend_source["url"], ascend_source["hashes"]["sha256"]))
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
