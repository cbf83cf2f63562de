from __future__ import annotations

import argparse
import json

from llama_ascend.errors import unusable_path

HELP = "print the config's JSON schema (config/schema.json) or its Markdown key table (README)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--markdown", action="store_true", help="print the README's table of config keys instead")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")


def run(args: argparse.Namespace) -> int:
    from llama_ascend.config import config_schema
    from llama_ascend.docs import config_table

    text = config_table() if args.markdown else json.dumps(config_schema(), indent=2) + "\n"
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text)
        except OSError as exc:
            raise unusable_path("-o", args.output, "write the schema", exc) from None
    else:
        print(text, end="")
    return 0
