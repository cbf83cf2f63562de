from __future__ import annotations

import argparse

from llama_ascend.commands._common import add_config_arguments, load_from_args

HELP = "validate, check the node and the weights, then exec the vLLM OpenAI server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="change nothing (no fetch, no directory, no report): print what serve would fetch, the preflight "
        "outcome and the exact command it would exec",
    )


def run(args: argparse.Namespace) -> int:
    from llama_ascend import serve

    config = load_from_args(args)
    prepared = serve.prepare(config, dry_run=args.dry_run)
    if args.dry_run:
        print(serve.dry_run_text(prepared))
        return 0
    serve.exec_server(config, prepared.launch, prepared.env)
    return 1  # not reached: exec replaced this process
