from __future__ import annotations

import argparse
import sys

from llama_ascend.commands._common import add_config_arguments, load_from_args

HELP = "print the exact vLLM server command a config renders to (no network, no devices)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--json", action="store_true", help='print {"argv": [...], "env": {...}} instead of a shell command'
    )


def run(args: argparse.Namespace) -> int:
    from llama_ascend.render import render

    launch = render(load_from_args(args), python=sys.executable)
    print(launch.as_json() if args.json else launch.shell())
    return 0
