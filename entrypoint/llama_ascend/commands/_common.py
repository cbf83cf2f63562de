"""Arguments shared by the commands that take a config or talk to a running server. Light: the config module
(pydantic, YAML) is imported only when a command runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from llama_ascend import options

if TYPE_CHECKING:
    from rich.console import Console

    from llama_ascend.config import Config

SET_HELP = (
    "override one config key, typed as YAML: --set server.max_num_seqs=16 (repeatable; wins over "
    "LLAMA_ASCEND__SECTION__KEY environment overrides, which win over the file)"
)


def add_config_arguments(parser: argparse.ArgumentParser, config_help: str | None = None) -> None:
    options.CONFIG.add(parser, help=config_help)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)


def add_worker_url_argument(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The router's replicas given on the command line (args.worker_urls), added to router.workers."""
    parser.add_argument(
        "--worker-url",
        dest="worker_urls",
        action="append",
        default=[],
        metavar="URL",
        help=f"{prefix}a replica's base URL, e.g. http://127.0.0.1:8001 (repeatable; added to router.workers)",
    )


def load_from_args(args: argparse.Namespace) -> Config:
    from llama_ascend.config import load_config

    return load_config(args.config, args.sets)


def wide_console(min_width: int) -> Console:
    """A console for a result table: the terminal's width, but at least `min_width` columns (a narrow terminal or a
    pipe folds the table's cells instead of cutting them)."""
    from rich.console import Console

    return Console(width=max(min_width, Console().width))


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """--url, --model, --api-key for commands that talk to a running server, each with its environment twin."""
    for option in (options.URL, options.MODEL, options.API_KEY):
        option.add(parser)
