"""Print, one per line, what the Ascend packages installed with `--no-deps` require: the requirements the ascend
target's vllm-ascend step installs next (docker/Dockerfile; bind-mounted there, never copied into a layer).

    python3 ascend-requires.py vllm-ascend torch-npu triton-ascend

Every Requires-Dist line of the named, installed distributions (markers kept: pip evaluates them), except
requirements on the named packages themselves and triton-ascend, which goes in last (after upstream triton is
removed). With STANDIN_CUDA_TORCH=1 (a stand-in build, PyPI's CUDA torch), torch-npu's `torch==X+cpu` is left
out: that build cannot meet it, and `pip check` in the image reports it as an accepted stand-in conflict.
"""

from __future__ import annotations

import os
import re
import sys
from importlib.metadata import distribution

LAST = "triton-ascend"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical(match[1])


def requirements(names: list[str], standin_cuda_torch: bool) -> list[str]:
    skip = {canonical(n) for n in names} | {LAST}
    out: list[str] = []
    for name in names:
        for line in distribution(name).requires or []:
            required = requirement_name(line)
            if required in skip:
                continue
            if standin_cuda_torch and canonical(name) == "torch-npu" and required == "torch":
                print(f"stand-in (STANDIN_CUDA_TORCH=1): left out {name}'s `{line}`", file=sys.stderr)
                continue
            if line not in out:
                out.append(line)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for line in requirements(argv, os.environ.get("STANDIN_CUDA_TORCH") == "1"):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
