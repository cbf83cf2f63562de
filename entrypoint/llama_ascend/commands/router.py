from __future__ import annotations

import argparse
import shutil
import sys

from llama_ascend.commands._common import add_config_arguments, load_from_args
from llama_ascend.errors import ConfigError

HELP = "render the vLLM router's command from the config's router section and exec it: one endpoint for the replicas"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--worker-url",
        dest="worker_urls",
        action="append",
        default=[],
        metavar="URL",
        help="a replica's base URL, e.g. http://127.0.0.1:8001 (repeatable; added to router.workers)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the command it would exec and stop")


def run(args: argparse.Namespace) -> int:
    import importlib.util
    import os

    from llama_ascend.launch import environment, exec_launch
    from llama_ascend.router import LAUNCHER_MODULE, ROUTER_COMMAND, render_router

    config = load_from_args(args)
    launch = render_router(config, args.worker_urls, python=sys.executable)
    env = environment(launch, os.environ)
    if args.dry_run:
        print(launch.shell())
        return 0
    installed = (
        importlib.util.find_spec("vllm_router") if LAUNCHER_MODULE in launch.argv else shutil.which(ROUTER_COMMAND)
    )
    if not installed:
        raise ConfigError(f"{ROUTER_COMMAND} is not installed: pip install vllm-router==0.1.17 (the image carries it)")
    exec_launch(launch, env)
    return 1  # not reached: exec replaced this process
