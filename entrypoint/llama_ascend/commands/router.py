from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from llama_ascend.commands._common import add_config_arguments, add_worker_url_argument, load_from_args
from llama_ascend.errors import ConfigError

HELP = "render the vLLM router's command from the config's router section and exec it: one endpoint for the replicas"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    add_worker_url_argument(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the command it would exec and stop")


def run(args: argparse.Namespace) -> int:
    import importlib.util
    import os

    from llama_ascend.launch import Launch, environment, exec_launch
    from llama_ascend.router import LAUNCHER_MODULE, ROUTER_COMMAND, render_router

    config = load_from_args(args)
    launch = render_router(config, args.worker_urls, python=sys.executable)
    env = environment(launch, os.environ)
    if args.dry_run:
        print(launch.shell())
        return 0
    if LAUNCHER_MODULE in launch.argv:
        installed = importlib.util.find_spec("vllm_router") is not None
    else:  # next to this interpreter (a venv's bin), else on PATH
        search = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        found = shutil.which(ROUTER_COMMAND, path=search)
        installed = found is not None
        launch = Launch([found or ROUTER_COMMAND, *launch.argv[1:]], launch.env, launch.secret_env, launch.secret_key)
    if not installed:
        raise ConfigError(f"{ROUTER_COMMAND} is not installed: pip install vllm-router==0.1.17 (the image carries it)")
    exec_launch(launch, env)
    return 1  # not reached: exec replaced this process
