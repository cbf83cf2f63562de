from __future__ import annotations

import argparse

from llama_ascend import serve
from llama_ascend.commands._common import add_config_arguments, load_from_args

HELP = "validate, check the node and the weights, then exec the vLLM OpenAI server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="do every step but the exec and print the command")


def run(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    launch, env = serve.prepare(config)
    if args.dry_run:
        print(launch.shell())
        return 0
    serve.exec_server(config, launch, env)
    return 1  # not reached: exec replaced this process
