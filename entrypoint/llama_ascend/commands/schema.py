from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from llama_ascend.config import Config, config_schema
from llama_ascend.errors import unusable_path

HELP = "print the config's JSON schema (config/schema.json) or its Markdown key table (README)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--markdown", action="store_true", help="print the README's table of config keys instead")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    text = re.sub(r"typing\.|llama_ascend\.config\.", "", text)
    text = re.sub(r"^Optional\[(.*)\]$", r"\1 | None", text).replace("Literal", "one of ")
    return text.replace("NoneType", "null").replace("None", "null")


def _rows(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _rows(annotation, f"{key}.")
            continue
        default = field.get_default(call_default_factory=True)
        cell = lambda v: f"`{v}`".replace("|", "\\|")  # noqa: E731
        yield f"| `{key}` | {cell(_type_name(annotation))} | {cell(json.dumps(default))} | {field.description} |"


def config_table() -> str:
    return "\n".join(["| key | type | default | meaning |", "|---|---|---|---|", *_rows(Config)]) + "\n"


def run(args: argparse.Namespace) -> int:
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
