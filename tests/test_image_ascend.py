"""The ascend target: its build helpers and checks, statically (always), and - with LLAMA_ASCEND_IMAGE_TESTS=1
(`make image-test`, `make test` where buildah, podman, runc and debootstrap are installed) - the target built with
buildah on the stand-in CANN base (`make image-ascend-standin`) and checked inside with docker/image_check.py.

The stand-in has no CANN and no NPU: what needs them is checked up to where it would load them (docs/image.md,
"What the stand-in does not verify")."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import image_build  # noqa: E402
import image_run  # noqa: E402

DOCKERFILE = ROOT / "docker" / "Dockerfile"
HELPERS = ROOT / "docker" / "ascend-build.sh"
TAG = "localhost/llama-ascend:image-test-ascend-standin"
TOOLS = ("buildah", "podman", "runc", "debootstrap")
ENABLED = os.environ.get("LLAMA_ASCEND_IMAGE_TESTS") == "1"
image_tier = pytest.mark.skipif(
    not ENABLED or not all(shutil.which(t) for t in TOOLS),
    reason="the image tier runs with `make image-test` (LLAMA_ASCEND_IMAGE_TESTS=1, buildah podman runc debootstrap)",
)


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


image_check = _load(ROOT / "docker" / "image_check.py", "image_check")
ascend_requires = _load(ROOT / "docker" / "ascend-requires.py", "ascend_requires")


def ascend_profiles() -> list[str]:
    """Every profile in config/ whose backend is ascend: what the in-image check must cover (others add profiles)."""
    return sorted(
        p.stem for p in (ROOT / "config").glob("*.yaml") if yaml.safe_load(p.read_text()).get("backend") == "ascend"
    )


# ---------------------------------------------------------------------------------------------------------------------
# docker/ascend-build.sh, run by bash as the Dockerfile's RUN steps do


def helpers(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`script` after sourcing build-env.sh and ascend-build.sh, with the CANN paths under tmp_path and `bin` (fake
    pip, uname) first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    prelude = (
        f". {ROOT / 'docker' / 'build-env.sh'} && . {HELPERS} && "
        f"_la_toolkit_env={tmp_path}/Ascend/ascend-toolkit/set_env.sh _la_atb_env={tmp_path}/Ascend/nnal/atb/set_env.sh "
        f"_la_wheels={tmp_path}/wheels && "
    )
    pins = image_build.dockerfile_args()
    base = {k: pins[k] for k in pins}
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", prelude + script],
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), **base, **env},
        timeout=60,
        check=False,
    )


def fake_tool(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def make_cann(tmp_path: Path) -> None:
    for script in ("ascend-toolkit/set_env.sh", "nnal/atb/set_env.sh"):
        path = tmp_path / "Ascend" / script
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("export ASCEND_TOOLKIT_HOME=/usr/local/Ascend/cann\n")


def test_a_base_without_cann_fails_unless_the_build_says_stand_in(tmp_path: Path) -> None:
    real = helpers("check_base", tmp_path, CANN_STANDIN="0")
    assert real.returncode != 0 and "is not a CANN" in real.stderr and "CANN_STANDIN=1" in real.stderr
    standin = helpers("check_base", tmp_path, CANN_STANDIN="1")
    assert standin.returncode == 0 and "stand-in base without CANN" in standin.stdout
    make_cann(tmp_path)
    assert helpers("check_base", tmp_path, CANN_STANDIN="0").returncode == 0
    on_cann = helpers("check_base", tmp_path, CANN_STANDIN="1")
    assert on_cann.returncode != 0 and "this base has CANN" in on_cann.stderr


def test_cuda_torch_only_in_a_stand_in_build(tmp_path: Path) -> None:
    make_cann(tmp_path)
    refused = helpers("check_base", tmp_path, CANN_STANDIN="0", STANDIN_CUDA_TORCH="1")
    assert refused.returncode != 0 and "needs CANN_STANDIN=1" in refused.stderr
    assert helpers("check_base", tmp_path, CANN_STANDIN="2").returncode != 0


@pytest.mark.parametrize(
    ("machine", "standin_cuda", "local"), [("x86_64", "0", "+cpu"), ("x86_64", "1", ""), ("aarch64", "0", "")]
)
def test_torch_pins(tmp_path: Path, machine: str, standin_cuda: str, local: str) -> None:
    fake_tool(tmp_path, "uname", f"echo {machine}")
    result = helpers("torch_pins", tmp_path, STANDIN_CUDA_TORCH=standin_cuda)
    pins = image_build.dockerfile_args()
    assert result.stdout.split() == [
        f"torch=={pins['TORCH_VERSION']}{local}",
        f"torchvision=={pins['TORCHVISION_VERSION']}{local}",
        f"torchaudio=={pins['TORCHAUDIO_VERSION']}{local}",
    ]


def test_pip_sources_and_the_local_vllm_release(tmp_path: Path) -> None:
    pins = image_build.dockerfile_args()
    assert helpers("pip_sources", tmp_path, TORCH_INDEX_URL="").stdout.split() == ["--find-links", f"{tmp_path}/wheels"]
    with_index = helpers("pip_sources", tmp_path, TORCH_INDEX_URL="https://mirror.example/whl/cpu").stdout.split()
    assert with_index[2:] == ["--extra-index-url", "https://mirror.example/whl/cpu"]
    url = pins["VLLM_SDIST_URL"]
    assert helpers("vllm_source", tmp_path).stdout.strip() == f"vllm[audio] @ {url}#sha256={pins['VLLM_SDIST_SHA256']}"
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / url.rsplit("/", 1)[1]).write_bytes(b"")
    local = helpers("vllm_source", tmp_path).stdout.strip()
    assert local == f"vllm[audio] @ file://{tmp_path}/wheels/{url.rsplit('/', 1)[1]}#sha256={pins['VLLM_SDIST_SHA256']}"


def test_dev_wheels_only_with_pinned_hashes(tmp_path: Path) -> None:
    log = tmp_path / "pip.log"
    fake_tool(tmp_path, "pip", f'echo "$@" >> {log}')
    fake_tool(tmp_path, "uname", "echo x86_64")
    default = helpers("dev_wheels", tmp_path)
    assert image_build.dockerfile_args()["ASCEND_DEV_WHEELS_URL"] == ""
    assert default.returncode == 0 and "from PyPI stay" in default.stdout and not log.exists()
    url = "https://mirror.example/vllm-ascend"
    no_hash = helpers("dev_wheels", tmp_path, ASCEND_DEV_WHEELS_URL=url, TORCH_NPU_DEV_SHA256_X86_64="a" * 64)
    assert no_hash.returncode != 0 and not log.exists()
    assert "TRITON_ASCEND_DEV_SHA256_X86_64" in no_hash.stderr and "pinned hashes" in no_hash.stderr
    pinned = helpers(
        "dev_wheels",
        tmp_path,
        ASCEND_DEV_WHEELS_URL=url + "/",
        TORCH_NPU_DEV_SHA256_X86_64="a" * 64,
        TRITON_ASCEND_DEV_SHA256_X86_64="b" * 64,
    )
    assert pinned.returncode == 0, pinned.stderr
    pins = image_build.dockerfile_args()
    calls = log.read_text().splitlines()
    assert calls[0].endswith(f"{url}/{pins['TRITON_ASCEND_DEV_WHEEL_X86_64']}#sha256={'b' * 64}")
    assert calls[1].endswith(f"{url}/{pins['TORCH_NPU_DEV_WHEEL_X86_64']}#sha256={'a' * 64}")


# ---------------------------------------------------------------------------------------------------------------------
# docker/ascend-requires.py and docker/image_check.py, as functions


def test_ascend_requirements_leave_out_the_ascend_packages_and_only_the_stand_ins_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metadata = {
        "vllm-ascend": ["torch==2.9.0", "torch-npu==2.9.0", "triton-ascend==3.2.0", "numpy<2.0.0", "pandas"],
        "torch-npu": ["torch==2.9.0+cpu"],
    }
    monkeypatch.setattr(ascend_requires, "distribution", lambda name: SimpleNamespace(requires=metadata[name]))
    real = ascend_requires.requirements(["vllm-ascend", "torch-npu"], standin_cuda_torch=False)
    assert real == ["torch==2.9.0", "numpy<2.0.0", "pandas", "torch==2.9.0+cpu"]
    standin = ascend_requires.requirements(["vllm-ascend", "torch-npu"], standin_cuda_torch=True)
    assert standin == ["torch==2.9.0", "numpy<2.0.0", "pandas"]


PIP_CHECK = """\
vllm 0.18.0+empty has requirement opencv-python-headless>=4.13.0, but you have opencv-python-headless 4.11.0.86.
xgrammar 0.2.9 requires triton, which is not installed.
torch-npu 2.9.0 has requirement torch==2.9.0+cpu, but you have torch 2.9.0.
"""


def _record(standin_cuda_torch: bool) -> dict:
    pins = image_build.dockerfile_args()
    return image_check.build_record(
        {**pins, "CANN_STANDIN": "1", "STANDIN_CUDA_TORCH": "1" if standin_cuda_torch else "0"}
    )


def test_pip_check_accepts_only_the_named_conflicts(monkeypatch: pytest.MonkeyPatch) -> None:
    def pip_check(output: str) -> None:
        result = subprocess.CompletedProcess([], 1, output, "")
        monkeypatch.setattr(image_check.subprocess, "run", lambda *a, **k: result)

    pip_check(PIP_CHECK)
    ok, detail = image_check.check_pip(_record(standin_cuda_torch=True))
    assert ok, detail
    assert "torch-npu->torch (stand-in)" in detail and "xgrammar->triton" in detail
    ok, detail = image_check.check_pip(_record(standin_cuda_torch=False))
    assert not ok and "torch-npu 2.9.0 has requirement torch==2.9.0+cpu" in detail
    # issue #16's unaccepted one, and a line pip may print that names no package: both fail
    pip_check(
        "prometheus-fastapi-instrumentator 8.1.0 has requirement starlette<2.0.0,>=1.0.0, but you have starlette 0.50.0.\n"
    )
    assert not image_check.check_pip(_record(standin_cuda_torch=True))[0]
    pip_check("something pip has not said before\n")
    assert not image_check.check_pip(_record(standin_cuda_torch=True))[0]


def test_the_accepted_conflicts_are_the_dockerfiles() -> None:
    record = _record(standin_cuda_torch=True)
    assert record["accepted_conflicts"] == ["opencv-python-headless", "triton"]
    assert record["standin_accepted_conflicts"] == ["torch"]
    text = DOCKERFILE.read_text()
    header = text[: text.index("\nFROM ")]
    for name in record["accepted_conflicts"]:
        assert re.search(rf"^#\s+{re.escape(name)}:", header, re.M), f"no written reason for accepting {name}"


def test_the_in_image_check_derives_the_ascend_profiles() -> None:
    derived = [p.stem for p in image_check.ascend_profiles(ROOT / "config")]
    assert derived == ascend_profiles() and "llama-3.1-8b-instruct" in derived
    assert "dev-cpu" not in derived


def test_torch_npu_error_is_matched_as_a_missing_cann_library() -> None:
    for line in (
        "ImportError: libhccl.so: cannot open shared object file: No such file or directory",
        "OSError: libascendcl.so: cannot open shared object file: No such file or directory",
    ):
        assert image_check.CANN_LIBRARY.search(line)
    assert not image_check.CANN_LIBRARY.search("ImportError: libgomp.so.1: cannot open shared object file")


def test_the_ascend_stage_checks_its_base_first() -> None:
    """check_base (tested above) runs in the ascend stage's first RUN, before anything is installed."""
    stage = DOCKERFILE.read_text().split("AS ascend\n", 1)[1]
    first_run = re.search(r"^RUN (.*?)(?<!\\)\n", stage, re.M | re.S)
    assert first_run and "&& check_base" in first_run[1].replace("\\\n", " ").split("apt_install")[0]


def test_the_ascend_target_writes_its_venv_once() -> None:
    text = DOCKERFILE.read_text()
    assert "COPY --from=ascend-build" not in text and not re.search(r"COPY --from=\S+ /opt/llama-ascend/venv", text)
    stage = text[text.index("AS ascend\n") :]
    runs = re.findall(r"^RUN (.*?)(?<!\\)\n", stage, re.M | re.S)
    assert len([r for r in runs if "$(pip_sources)" in r]) >= 4  # torch, vLLM, vLLM-Ascend, the project
    for run in [r for r in runs if "pip install" in r and "/src" not in r and "pip==" not in r]:
        assert "source=docker/wheels,target=/tmp/wheels" in run, f"docker/wheels not honoured: {run[:120]}"


def test_pypi_cache_serves_a_file_once_fetched(tmp_path: Path) -> None:
    """The read-through cache: pages rewritten to point at it, files kept by path, fetched once."""
    import http.server
    import threading
    import urllib.request

    served = []

    class Upstream(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            served.append(self.path)
            host = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path.startswith("/simple/"):
                body = f'<a href="{host}/files/packages/ab/demo-1.0.tar.gz#sha256=00">demo</a>'.encode()
            else:
                body = b"demo release"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{upstream.server_address[1]}"
    try:
        with image_build.PypiCache(tmp_path / "cache", index=f"{host}/simple/", files=f"{host}/files/") as cache:
            page = urllib.request.urlopen(f"{cache.url}/simple/demo/", timeout=10).read().decode()
            assert f"{cache.url}/files/packages/ab/demo-1.0.tar.gz#sha256=00" in page
            for _ in range(2):
                assert (
                    urllib.request.urlopen(f"{cache.url}/files/packages/ab/demo-1.0.tar.gz", timeout=10).read()
                    == b"demo release"
                )
            assert "index-url = " + cache.url + "/simple/" in cache.pip_conf()
            assert cache.hits == 1 and cache.misses == 1
    finally:
        upstream.shutdown()
    assert served == ["/simple/demo/", "/files/packages/ab/demo-1.0.tar.gz"]
    assert (tmp_path / "cache" / "packages" / "ab" / "demo-1.0.tar.gz").read_bytes() == b"demo release"


def test_link_wheels_keeps_the_users_files(tmp_path: Path) -> None:
    target = tmp_path / "wheels"
    target.mkdir()
    (target / "torch-2.9.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"user's")
    source = tmp_path / "src"
    source.mkdir()
    first, second = source / "a-1-py3-none-any.whl", source / "vllm-0.18.0.tar.gz"
    first.write_bytes(b"a")
    second.write_bytes(b"v")
    assert image_build.link_wheels([first], target) == 1
    assert image_build.link_wheels([second], target) == 1
    assert sorted(p.name for p in target.iterdir() if p.name != ".linked") == [
        "torch-2.9.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
        "vllm-0.18.0.tar.gz",
    ]


# ---------------------------------------------------------------------------------------------------------------------
# The built stand-in image


@pytest.fixture(scope="module")
def ascend_image() -> str:
    seconds = image_build.build("ascend", TAG, tool="buildah", local_base=True, standin=True)
    print(f"ascend stand-in image built in {seconds:.0f} s, {image_build.image_size(TAG) / 1e9:.2f} GB")
    return TAG


EXPECTED_CHECKS = [
    "base",
    "pip-check",
    "no-cuda",
    "torch-build",
    "triton-ascend-files",
    "user",
    "vllm-platform-plugin",
    "import-vllm",
    "ascend-profiles",
    "server-env",
    "import-torch-npu",
]


@image_tier
def test_every_check_passes_inside_the_image(ascend_image: str) -> None:
    code, output = image_run.image_check(ascend_image)
    rows = [[*line.split(None, 2), ""][:3] for line in output.splitlines() if line.startswith(("PASS ", "FAIL "))]
    results = {name: (status, detail) for status, name, detail in rows}
    assert code == 0, output
    assert all(status == "PASS" for status, _ in results.values()), output
    expected = EXPECTED_CHECKS + [
        f"{kind}:{p}" for p in ascend_profiles() for kind in ("render", "vllm-parser", "preflight")
    ]
    assert sorted(results) == sorted(expected), output
    assert "cannot open shared object file" in results["import-torch-npu"][1]
    assert "uid=1000" in results["user"][1] and "(HwHiAiUser)" in results["user"][1]


@image_tier
def test_the_no_cuda_check_fails_a_build_that_is_not_a_stand_in(ascend_image: str) -> None:
    """The same check, told this is not a STANDIN_CUDA_TORCH=1 build, fails on the stand-in's nvidia-* packages."""
    script = (
        "import json, sys; sys.path.insert(0, '/opt/llama-ascend'); import image_check as c; "
        "r = json.load(open('/opt/llama-ascend/image-build.json')); "
        "print(json.dumps([r['standin_cuda_torch'], c.check_no_cuda({**r, 'standin_cuda_torch': False}), "
        "c.check_torch_build({**r, 'standin_cuda_torch': False})]))"
    )
    with image_run.working_container(ascend_image) as container:
        out = image_run.buildah_run(container, ["python3", "-c", script])
    standin_cuda, (no_cuda_ok, no_cuda), (torch_ok, torch) = json.loads(out.strip().splitlines()[-1])
    if standin_cuda:
        assert not no_cuda_ok and "nvidia-" in no_cuda
        assert not torch_ok and "+cpu" in torch
    else:  # built with the `+cpu` torch wheels at hand: nothing of CUDA to find
        assert no_cuda_ok and torch_ok, (no_cuda, torch)


@image_tier
def test_image_config(ascend_image: str) -> None:
    info = json.loads(
        subprocess.run(["podman", "image", "inspect", ascend_image], capture_output=True, text=True, check=True).stdout
    )[0]
    config = info["Config"]
    assert config["User"] == "1000:1000" and config["Entrypoint"] == ["llama-ascend"]
    assert config["Cmd"] == ["serve", "--config", "/opt/llama-ascend/config/llama-3.1-8b-instruct.yaml"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["LD_PRELOAD"] == "/usr/local/lib/libjemalloc.so.2"
    labels = config["Labels"]
    assert labels["io.llama-ascend.cann-standin"] == "1" and labels["io.llama-ascend.backend"] == "ascend"
    assert labels["org.opencontainers.image.base.name"] == image_build.STANDIN_BASE_STAGE


@image_tier
def test_the_parser_check_rejects_what_vllm_rejects(ascend_image: str) -> None:
    """The vllm-parser check is vLLM's own parser: an unknown flag and an unknown cudagraph mode fail it."""
    script = (
        "import json, sys; sys.path.insert(0, '/opt/llama-ascend'); import image_check as c; "
        "print(json.dumps(c.vllm_parse({"
        "'flag': ['python3', '-m', 'x', '--model', '/m', '--no-such-flag'], "
        "'mode': ['python3', '-m', 'x', '--compilation-config', '{\"cudagraph_mode\": \"NOPE\"}'], "
        "'ok': ['python3', '-m', 'x', '--model', '/m', '--tensor-parallel-size', '2']})))"
    )
    with image_run.working_container(ascend_image) as container:
        out = image_run.buildah_run(container, ["python3", "-c", script])
    results = json.loads(out.strip().splitlines()[-1])
    assert results["ok"][0], results
    assert not results["flag"][0] and "unrecognized arguments: --no-such-flag" in results["flag"][1]
    assert not results["mode"][0] and "NOPE" in results["mode"][1]


@image_tier
def test_nothing_of_the_build_is_left(ascend_image: str) -> None:
    with image_run.mounted(ascend_image) as root:
        assert not (root / "src").exists() and not (root / "tmp/wheels").exists()
        assert not list((root / "tmp").iterdir()), "build leftovers in /tmp"
        assert not (root / "root/.cache/pip").exists() or not any((root / "root/.cache/pip").iterdir())
        for conf in ("etc/pip.conf", "root/.config/pip/pip.conf", "home/llama/.config/pip/pip.conf"):
            assert not (root / conf).exists(), conf
        assert not list(root.glob("opt/**/*.whl")) and not list(root.glob("opt/**/vllm-*.tar.gz")), "build inputs kept"
        assert not [p for p in (root / "var/lib/apt/lists").iterdir() if p.is_file() and p.name != "lock"]
        record = json.loads((root / "opt/llama-ascend/image-build.json").read_text())
        assert record["cann_standin"] is True
        site = next(root.glob("opt/llama-ascend/venv/lib/python3.11/site-packages"))
        assert not list(site.glob("triton-*.dist-info")), "upstream triton's metadata left"
