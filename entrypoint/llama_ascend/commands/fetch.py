from __future__ import annotations

import argparse

from llama_ascend import options
from llama_ascend.commands._common import add_config_arguments, load_from_args

HELP = "download the weights into the volume (atomic, resumable, verified; serve runs this first)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    options.OFFLINE.add(parser)
    options.NO_PROGRESS.add(parser)


def run(args: argparse.Namespace) -> int:
    from llama_ascend import fetch

    result = fetch.fetch(load_from_args(args), offline=args.offline, progress=args.progress)
    print(result.summary(), flush=True)
    return 0
