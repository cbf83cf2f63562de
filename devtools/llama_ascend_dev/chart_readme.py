"""Generate the parameter tables of helm/llama-ascend/README.md from values.yaml's `## @param` comments.

Only the part between the two GENERATED markers is rewritten; the prose around it is hand-written. The `config`
rows come from values.schema.json (the entrypoint's pydantic docstrings) with the defaults of values.yaml, or of
the entrypoint where values.yaml leaves a key out.

    python -m llama_ascend_dev.chart_readme           # rewrite the tables
    python -m llama_ascend_dev.chart_readme --check   # exit 1 if README.md is stale
"""

from __future__ import annotations

import json
import sys
from typing import Any

from llama_ascend.config import Config
from llama_ascend_dev import chart_params

README = chart_params.CHART / "README.md"
SCHEMA = chart_params.CHART / "values.schema.json"
BEGIN = "<!-- BEGIN GENERATED PARAMETERS: python -m llama_ascend_dev.chart_readme -->"
END = "<!-- END GENERATED PARAMETERS -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return _cell(f"`{json.dumps(value, separators=(', ', ': '))}`")


def entrypoint_defaults() -> dict[str, Any]:
    """The config the entrypoint uses for keys a file leaves out (default factories included)."""
    return Config().model_dump(mode="json")


def _config_rows(schema: dict[str, Any], values: Any, defaults: Any, prefix: str) -> list[str]:
    rows = []
    for name, prop in schema.get("properties", {}).items():
        key = f"{prefix}.{name}"
        given = isinstance(values, dict) and name in values
        if "properties" in prop:
            rows += _config_rows(prop, values[name] if given else {}, defaults.get(name, {}), key)
            continue
        value = values[name] if given else defaults.get(name, prop.get("default"))
        rows.append(f"| `{key}` | {_cell(prop.get('description', ''))} | {_default(value)} |")
    return rows


def tables() -> str:
    chart = chart_params.load()
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    out = [BEGIN, ""]
    for section in chart.sections:
        out += [f"### {section.title}", "", "| Name | Description | Default |", "| --- | --- | --- |"]
        for param in section.params:
            if param.key == "config":
                out.append(f"| `config` | {_cell(param.description)} | see below |")
                out += _config_rows(schema["properties"]["config"], param.default, entrypoint_defaults(), "config")
            else:
                out.append(f"| `{param.key}` | {_cell(param.description)} | {_default(param.default)} |")
        out.append("")
    out.append(END)
    return "\n".join(out)


def render(current: str) -> str:
    start, end = current.find(BEGIN), current.find(END)
    if start < 0 or end < start:
        raise chart_params.ParamError(f"{README.name}: the markers {BEGIN!r} and {END!r} are missing")
    return current[:start] + tables() + current[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    current = README.read_text(encoding="utf-8")
    return chart_params.generator_main(argv, __spec__.name, {README: lambda: render(current)})


if __name__ == "__main__":
    sys.exit(main())
