"""The README's generated tables: config keys (from the config models), the vLLM flags the config manages (from
the flag table) and the options' environment twins (from the option table). Tests fail when README is stale."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from llama_ascend import flags, options
from llama_ascend.config import Config

# README markers: <!-- NAME:start ... --> ... <!-- NAME:end -->, and the function that renders what goes between.
SECTIONS = {"config-table": "config_table", "flag-table": "flag_table", "option-table": "option_table"}


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


def flag_table() -> str:
    """README's table of managed flags (generated; a test keeps it fresh)."""
    rows = ["| config key | vLLM flag | written | backends |", "|---|---|---|---|"]
    for row in flags.FLAGS:
        how = row.written or (f"when set (e.g. `{row.example}`)" if row.example else "always")
        spellings = ", ".join(f"`{s}`" for s in (row.flag, *row.aliases, *([row.off] if row.off else [])))
        rows.append(f"| `{row.key}` | {spellings} | {how} | {', '.join(row.backends)} |")
    return "\n".join(rows) + "\n"


def option_table() -> str:
    """README's table of the environment twins (generated; a test keeps it fresh)."""
    rows = ["| option | environment | default | commands | meaning |", "|---|---|---|---|---|"]
    for commands, option in options.OPTIONS:
        default = f"`{option.shown_default or option.default}`" if option.shown_default or option.default else "-"
        env = f"`{option.env}`" + ("=1" if option.switch else "")
        rows.append(f"| `{option.flags[-1]}` | {env} | {default} | {commands} | {option.help} |")
    return "\n".join(rows) + "\n"


def section(text: str, name: str) -> str:
    """What README `text` holds between the `name` markers."""
    start = text.index("\n", text.index(f"<!-- {name}:start")) + 1
    return text[start : text.index(f"<!-- {name}:end -->")]


def render_section(name: str) -> str:
    return str(globals()[SECTIONS[name]]())


def refreshed(text: str) -> str:
    """README `text` with every generated section rendered anew."""
    for name in SECTIONS:
        old = section(text, name)
        start = text.index("\n", text.index(f"<!-- {name}:start")) + 1
        text = text[:start] + render_section(name) + text[start + len(old) :]
    return text


def main(argv: list[str] | None = None) -> int:
    """`python -m llama_ascend.docs [--check] README.md`: rewrite the generated sections, or exit 1 when stale."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m llama_ascend.docs", description=main.__doc__)
    parser.add_argument("readme", type=Path)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    fresh = refreshed(text)
    if args.check:
        return 0 if fresh == text else 1
    args.readme.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
