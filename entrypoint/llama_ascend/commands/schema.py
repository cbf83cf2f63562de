from __future__ import annotations

import argparse
import json

from llama_ascend.config import config_schema

HELP = "print the JSON schema of the config file (config/schema.json, the chart's config values)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")


def run(args: argparse.Namespace) -> int:
    text = json.dumps(config_schema(), indent=2) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        print(text, end="")
    return 0
