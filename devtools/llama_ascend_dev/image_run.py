"""Run the llama-ascend image without a Docker engine: buildah (chroot isolation, host network, loopback only) or the
real docker CLI against `podman system service`. Used by tests/test_image.py; also a command:

    python -m llama_ascend_dev.image_run --image llama-ascend:0.1.0-cpu \
        --model-dir ~/.cache/llama-ascend/models/SmolLM2-135M-Instruct
    python -m llama_ascend_dev.image_run --image ... --model-dir ... --docker      # the same through `docker run`

Both serve the cpu image's default config on 127.0.0.1:PORT, run `llama-ascend smoke` against it and stop it
(`--keep` leaves it running until Ctrl-C).

    python -m llama_ascend_dev.image_run --check --image llama-ascend:0.1.0-standin  # = make image-ascend-standin's checks

runs the image's own docker/image_check.py (/opt/llama-ascend/image_check.py) as the image's user with buildah: one
line per check, PASS or FAIL; the exit status is the script's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from llama_ascend.errors import LlamaAscendError
from llama_ascend_dev import server_process

BUILDAH_RUN = ["buildah", "run", "--isolation", "chroot", "--network", "host"]
CHECK_SCRIPT = "/opt/llama-ascend/image_check.py"  # docker/image_check.py, as the ascend target ships it
CHECK_TIMEOUT = 1800  # a hang guard: the checks import vLLM three times on what may be a loaded 2-core machine
CONFIG = "/opt/llama-ascend/config/dev-cpu.yaml"
READY_TIMEOUT = 600  # a cold vLLM import on a loaded 2-core machine
# podman on a host without systemd or cgroup v2 delegation: runc, cgroupfs, and the ulimits a container may raise.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class RunError(Exception):
    pass


def _out(cmd: Sequence[str], env: dict[str, str] | None = None, check: bool = True) -> str:
    result = subprocess.run(list(cmd), capture_output=True, text=True, env=env, check=False, timeout=600)
    if check and result.returncode != 0:
        raise RunError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout


@contextlib.contextmanager
def working_container(image: str) -> Iterator[str]:
    """A buildah working container of the image, without the /models VOLUME (a buildah run would cover a bind mount
    at /models with an empty volume). Removed afterwards."""
    container = _out(["buildah", "from", "--pull-never", image]).strip()
    try:
        _out(["buildah", "config", "--volume", "/models-", container])
        yield container
    finally:
        _out(["buildah", "rm", container], check=False)


@contextlib.contextmanager
def mounted(image: str) -> Iterator[Path]:
    """The image's root file system, read through a working container's mount."""
    with working_container(image) as container:
        root = Path(_out(["buildah", "mount", container]).strip())
        try:
            yield root
        finally:
            _out(["buildah", "umount", container], check=False)


def buildah_run(container: str, argv: Sequence[str], volumes: Sequence[str] = ()) -> str:
    """Run a command in the container as the image's user, with its environment; return stdout."""
    cmd = list(BUILDAH_RUN)
    for volume in volumes:
        cmd += ["--volume", volume]
    return _out([*cmd, container, "--", *argv])


def image_check(image: str, timeout: float = CHECK_TIMEOUT) -> tuple[int, str]:
    """The image's check script: its exit status and output (also passed through as it comes)."""
    with working_container(image) as container:
        cmd = [*BUILDAH_RUN, container, "--", "python3", CHECK_SCRIPT]
        lines = []
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                    lines.append(line)
            finally:
                timer.cancel()
        if proc.returncode < 0:
            lines.append(f"image_check.py killed after {timeout:.0f} s (hang guard)\n")
        return proc.returncode, "".join(lines)


@contextlib.contextmanager
def buildah_server(
    image: str, model_dir: Path, port: int, sets: Sequence[str] = ()
) -> Iterator[server_process.ServerProcess]:
    """`llama-ascend serve` in the image (buildah run ignores ENTRYPOINT/CMD, so the command is spelled out) on the
    host's loopback, with the model dir mounted read-only as /models."""
    with working_container(image) as container, tempfile.TemporaryDirectory(prefix="llama-ascend-run-") as tmp:
        cmd = [
            *BUILDAH_RUN,
            "--volume",
            f"{model_dir}:/models:ro",
            container,
            "--",
            "llama-ascend",
            "serve",
            "--config",
            CONFIG,
            "--set",
            "server.host=127.0.0.1",
            "--set",
            f"server.port={port}",
        ]
        for item in sets:
            cmd += ["--set", item]
        url, log_path = f"http://127.0.0.1:{port}", Path(tmp) / "server.log"
        server = server_process.ServerProcess("buildah run", cmd, None, url, log_path)
        server.launch()
        try:
            yield server
        finally:
            server.stop(timeout=90)


@contextlib.contextmanager
def podman_service(workdir: Path) -> Iterator[str]:
    """`podman system service` on a unix socket in `workdir`; yields the DOCKER_HOST for the docker CLI."""
    conf = workdir / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    socket_path = workdir / "podman.sock"
    log = (workdir / "podman-service.log").open("wb")
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    process = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RunError(f"podman system service did not start: {(workdir / 'podman-service.log').read_text()}")
            time.sleep(0.2)
        yield f"unix://{socket_path}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


class DockerCli:
    """The real docker CLI, pointed at a Docker-compatible API."""

    def __init__(self, docker_host: str, config_dir: Path | None = None):
        self.env = {**os.environ, "DOCKER_HOST": docker_host}
        if config_dir:
            self.env["DOCKER_CONFIG"] = str(config_dir)

    def __call__(self, *args: str, check: bool = True) -> str:
        return _out(["docker", *args], env=self.env, check=check)

    def inspect(self, name: str) -> dict:
        return json.loads(self("inspect", name))[0]

    def running(self, name: str) -> bool:
        return bool(self.inspect(name)["State"]["Running"])

    def logs(self, name: str) -> str:
        result = subprocess.run(["docker", "logs", name], capture_output=True, text=True, env=self.env, check=False)
        return result.stdout + result.stderr

    def wait_ready(self, name: str, url: str) -> float:
        return server_process.wait_ready(
            url,
            alive=lambda: self.running(name),
            log_tail=lambda: self.logs(name),
            timeout=READY_TIMEOUT,
            name=f"container {name}",
        )


def _smoke(url: str) -> int:
    return subprocess.run([sys.executable, "-m", "llama_ascend", "smoke", "--url", url], check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", required=True, help="a cpu-target image, e.g. llama-ascend:0.1.0-cpu")
    parser.add_argument("--model-dir", type=Path, help="the converted stand-in (llama-ascend standin)")
    parser.add_argument("--check", action="store_true", help="run docker/image_check.py in an ascend image")
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    parser.add_argument("--docker", action="store_true", help="run through the docker CLI and podman's API")
    parser.add_argument("--keep", action="store_true", help="keep serving until Ctrl-C")
    args = parser.parse_args(argv)
    if args.check:
        code, _ = image_check(args.image)
        return code
    if args.model_dir is None:
        parser.error("--model-dir is required to serve")
    port = args.port or server_process.free_port()
    model_dir = args.model_dir.expanduser().resolve()
    try:
        if not args.docker:
            with buildah_server(args.image, model_dir, port) as server:
                print(f"ready after {server.wait_ready(READY_TIMEOUT):.0f} s at {server.url}", flush=True)
                code = _smoke(server.url)
                while args.keep:
                    time.sleep(3600)
                return code
        with tempfile.TemporaryDirectory(prefix="llama-ascend-docker-") as tmp, podman_service(Path(tmp)) as host:
            docker, name = DockerCli(host), f"llama-ascend-cpu-{port}"
            docker(
                "run",
                "-d",
                "--name",
                name,
                "-p",
                f"127.0.0.1:{port}:8000",
                "-v",
                f"{model_dir}:/models:ro",
                "--shm-size",
                "1g",
                args.image,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                print(f"ready after {docker.wait_ready(name, url):.0f} s")
                code = _smoke(url)
                while args.keep:
                    time.sleep(3600)
                return code
            finally:
                docker("rm", "-f", name, check=False)
    except (RunError, LlamaAscendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
