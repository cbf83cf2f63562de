from __future__ import annotations

import argparse
import os

from llama_ascend.commands._common import add_config_arguments, load_from_args

HELP = "download the weights into the volume (atomic, resumable, verified; serve runs this first)"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--offline",
        action="store_true",
        default=_env_flag("LLAMA_ASCEND_OFFLINE"),
        help="never touch the network: succeed only when the weights are already complete (env LLAMA_ASCEND_OFFLINE=1)",
    )
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=not _env_flag("LLAMA_ASCEND_NO_PROGRESS"),
        help="no progress bar or progress log lines, only the summary (env LLAMA_ASCEND_NO_PROGRESS=1)",
    )


def run(args: argparse.Namespace) -> int:
    from llama_ascend import fetch

    result = fetch.fetch(load_from_args(args), offline=args.offline, progress=args.progress)
    print(result.summary(), flush=True)
    return 0
