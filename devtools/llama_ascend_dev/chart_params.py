"""The chart's values as documented in values.yaml: `## @section Title` and `## @param dotted.key Description` lines.

Shared by chart_schema (descriptions and types of the chart's keys) and chart_readme (the tables). A description may
go on over lines that start with `##` and three spaces. A `## @param` documents a key and everything under it; every
key in values.yaml must be documented by itself or by an ancestor, and every `@param` must name a key that exists,
otherwise `load()` raises with the list of problems.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llama_ascend_dev import ROOT

CHART = ROOT / "helm" / "llama-ascend"
VALUES = CHART / "values.yaml"

_PARAM = re.compile(r"^\s*## @param (?P<key>[\w.\-/]+)\s+(?P<text>.+?)\s*$")
_CONTINUATION = re.compile(r"^\s*##\s{3,}(?P<text>\S.*?)\s*$")  # `##   more text` continues the @param above
_SECTION = re.compile(r"^\s*## @section (?P<title>.+?)\s*$")


@dataclass
class Param:
    key: str
    description: str
    default: Any


@dataclass
class Section:
    title: str
    params: list[Param] = field(default_factory=list)


@dataclass
class ChartValues:
    values: dict[str, Any]
    sections: list[Section]

    @property
    def params(self) -> dict[str, Param]:
        return {p.key: p for s in self.sections for p in s.params}


class ParamError(Exception):
    pass


_MISSING = object()


def lookup(values: Any, key: str) -> Any:
    node = values
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key path of the tree (mappings are walked; lists and scalars are leaves)."""
    keys = []
    for name, value in values.items():
        key = f"{prefix}{name}"
        keys.append(key)
        if isinstance(value, dict) and value:
            keys.extend(leaf_keys(value, f"{key}."))
    return keys


def load(path: Path = VALUES) -> ChartValues:
    text = path.read_text(encoding="utf-8")
    values = yaml.safe_load(text) or {}
    sections: list[Section] = []
    problems = []
    last: Param | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if last and (m := _CONTINUATION.match(line)):
            last.description += " " + m["text"]
            continue
        last = None
        if m := _SECTION.match(line):
            sections.append(Section(m["title"]))
        elif m := _PARAM.match(line):
            if not sections:
                problems.append(f"{path.name}:{number}: @param before the first @section")
                continue
            default = lookup(values, m["key"])
            if default is _MISSING:
                problems.append(f"{path.name}:{number}: @param {m['key']} names no key in the values")
                continue
            last = Param(m["key"], m["text"], default)
            sections[-1].params.append(last)
    documented = {p.key for s in sections for p in s.params}
    for key in leaf_keys(values):
        parts = key.split(".")
        undocumented = not any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1))
        if undocumented and not any(k.startswith(f"{key}.") for k in documented):  # not a mapping of documented keys
            problems.append(f"{path.name}: {key} has no `## @param {key} <description>` comment")
    if problems:
        raise ParamError("\n".join(problems))
    return ChartValues(values, sections)


def generator_main(argv: list[str] | None, module: str, outputs: dict[Path, Callable[[], str]]) -> int:
    """The command line the generators share (`python -m <module>`): write each target, or with --check exit 1 when
    one is stale."""
    names = ", ".join(str(target.relative_to(ROOT)) for target in outputs)
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=f"write {names}")
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    args = parser.parse_args(argv)
    stale = False
    for target, render in outputs.items():
        rel = target.relative_to(ROOT)
        try:
            text = render()
        except ParamError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                print(f"error: {rel} is stale: run `make helm-docs` (or python -m {module})", file=sys.stderr)
                stale = True
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {rel}")
    return 1 if stale else 0
