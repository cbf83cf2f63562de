"""Arguments shared by the commands that take a config."""

from __future__ import annotations

import argparse
import os

from llama_ascend.config import CONFIG_ENV, Config, load_config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config",
        default=os.environ.get(CONFIG_ENV),
        help=f"YAML profile, e.g. config/llama-3.1-8b-instruct.yaml (env {CONFIG_ENV})",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
        help="override one config key, typed as YAML: --set server.max_num_seqs=16 (repeatable; wins over "
        "LLAMA_ASCEND__SECTION__KEY environment overrides, which win over the file)",
    )  # fmt: skip


def load_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.sets)
