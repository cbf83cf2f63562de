"""Arguments shared by the commands that take a config."""

from __future__ import annotations

import argparse
import os

from llama_ascend.config import CONFIG_ENV, Config, load_config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get(CONFIG_ENV),
        help=f"YAML profile, e.g. config/llama-3.1-8b-instruct.yaml (env {CONFIG_ENV})",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, typed as YAML: --set server.max_num_seqs=16 (repeatable; wins over "
        "LLAMA_ASCEND__SECTION__KEY environment overrides, which win over the file)",
    )


def load_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.sets)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """--url, --model, --api-key for commands that talk to a running server, each with its environment twin."""
    parser.add_argument(
        "--url",
        default=os.environ.get("LLAMA_ASCEND_URL", "http://127.0.0.1:8000"),
        help="server base URL (env LLAMA_ASCEND_URL; default http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("LLAMA_ASCEND_MODEL"),
        help="served model name (env LLAMA_ASCEND_MODEL; default: the first model the server lists)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LLAMA_ASCEND_API_KEY"),
        help="API key if the server needs one (env LLAMA_ASCEND_API_KEY)",
    )
