from __future__ import annotations

import argparse
import sys

from llama_ascend.commands._common import add_config_arguments, add_worker_url_argument, load_from_args

HELP = "print the exact vLLM server (or --router: router) command a config renders to (no network, no devices)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--json", action="store_true", help='print {"argv": [...], "env": {...}} instead of a shell command'
    )
    parser.add_argument("--router", action="store_true", help="the router's command (the config's router section)")
    add_worker_url_argument(parser, prefix="with --router: ")


def run(args: argparse.Namespace) -> int:
    config = load_from_args(args)
    if args.router:
        from llama_ascend.router import render_router

        launch = render_router(config, args.worker_urls, python=sys.executable)
    else:
        from llama_ascend.render import render

        launch = render(config, python=sys.executable)
    print(launch.as_json() if args.json else launch.shell())
    return 0
