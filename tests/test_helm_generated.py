"""The chart's generated files: values.schema.json (from the entrypoint's schema + values.yaml) and README.md's tables.

These need no helm binary: they run the generators in-process and compare with what is committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llama_ascend_dev import ROOT, chart_params, chart_readme, chart_schema

CHART = ROOT / "helm" / "llama-ascend"


def test_values_schema_is_fresh() -> None:
    assert (CHART / "values.schema.json").read_text() == chart_schema.render(), (
        "helm/llama-ascend/values.schema.json is stale: run make helm-docs"
    )


def test_config_defaults_file_is_the_config_models() -> None:
    """The templates read the config's defaults from files/config-defaults.json instead of restating them."""
    from llama_ascend.config import Config

    defaults = json.loads((CHART / "files" / "config-defaults.json").read_text())
    assert defaults == Config().model_dump(mode="json"), "stale: run make helm-docs"
    assert (defaults["backend"], defaults["server"]["port"], defaults["server"]["tensor_parallel_size"]) == (
        "ascend",
        8000,
        1,
    )


def test_readme_tables_are_fresh() -> None:
    current = (CHART / "README.md").read_text()
    assert current == chart_readme.render(current), "helm/llama-ascend/README.md is stale: run make helm-docs"


# Config documents and whether the entrypoint accepts them, written by hand: the chart's `config` schema must agree.
CONFIG_CASES = [
    ({}, True),
    ({"backend": "cpu", "server": {"port": 8001}}, True),
    ({"server": {"tensor_parallel_size": 4, "max_model_len": 8192, "max_num_seqs": 16}}, True),
    ({"model": {"source": "local", "path": "/models/llama"}}, True),
    ({"env": {"TASK_QUEUE_ENABLE": "1"}}, True),
    ({"server": {"tensor_parallel_size": 3}}, False),
    ({"server": {"port": 0}}, False),
    ({"server": {"max_model_len": 200000}}, False),
    ({"backend": "gpu"}, False),
    ({"model": {"source": "s3"}}, False),
    ({"server": {"max_num_seq": 8}}, False),  # a typo: unknown keys are refused
    ({"model": {"served_name": 7}}, False),
]


def _has_key(node: object, key: str) -> bool:
    if isinstance(node, dict):
        return key in node or any(_has_key(v, key) for v in node.values())
    return isinstance(node, list) and any(_has_key(v, key) for v in node)


def test_config_schema_is_fresh_and_the_chart_validates_config_as_the_entrypoint_does() -> None:
    """`config:` is validated by what `llama-ascend schema` publishes (config/schema.json), refs inlined: both accept
    and refuse the same documents, and the chart's copy needs no `$defs` (Helm resolves no references)."""
    import jsonschema

    from llama_ascend.config import config_schema

    published = json.loads((ROOT / "config" / "schema.json").read_text())
    assert published == json.loads(json.dumps(config_schema())), "config/schema.json is stale (llama-ascend schema)"
    chart = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]
    assert not _has_key(chart, "$ref") and not _has_key(chart, "$defs")
    assert chart["description"]
    entrypoint_validator = jsonschema.Draft202012Validator(published)
    chart_validator = jsonschema.Draft7Validator(chart)
    for document, valid in CONFIG_CASES:
        assert entrypoint_validator.is_valid(document) is valid, document
        assert chart_validator.is_valid(document) is valid, document


def test_schema_validates_the_value_sets_and_rejects_typos() -> None:
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert not list(validator.iter_errors(values))
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        merged = {**values, **yaml.safe_load(path.read_text())}  # top-level replace is enough for the type checks
        errors = [e.message for e in validator.iter_errors(merged)]
        assert not errors, f"{path.name}: {errors}"
    typo = {**values, "persistence": {**values["persistence"], "storageClassName": "x"}}
    assert [e for e in validator.iter_errors(typo) if "storageClassName" in e.message]


def test_every_value_is_documented() -> None:
    params = chart_params.load().params
    assert "config" in params and "persistence.existingClaim" in params
    assert all(p.description for p in params.values())


def test_an_undocumented_value_is_an_error(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("## @section S\n## @param a Documented\na: 1\nb:\n  c: 2\n## @param d.e Gone\n")
    with pytest.raises(chart_params.ParamError) as err:
        chart_params.load(values)
    assert "b has no `## @param b" in str(err.value) and "b.c has no" in str(err.value)
    assert "@param d.e names no key" in str(err.value)


def test_continuation_lines_join_the_description(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("## @section S\n## @param a First part\n##   and the rest.\na: 1\n")
    (param,) = chart_params.load(values).params.values()
    assert param.description == "First part and the rest."


def test_readme_documents_every_value_and_every_config_key() -> None:
    readme = (CHART / "README.md").read_text()
    for key in chart_params.load().params:
        assert f"| `{key}` |" in readme, key
    from llama_ascend.config import Config

    def keys(model: type, prefix: str) -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            sub = field.annotation
            out += keys(sub, f"{prefix}.{name}") if hasattr(sub, "model_fields") else [f"{prefix}.{name}"]
        return out

    for key in keys(Config, "config"):
        assert f"| `{key}` |" in readme, key


def test_readme_shows_the_four_installs() -> None:
    readme = (CHART / "README.md").read_text()
    assert "helm install llama helm/llama-ascend -n llm --create-namespace" in readme
    assert "--set config.server.tensor_parallel_size=4" in readme
    assert "--set persistence.existingClaim=" in readme
    assert "--set autoscaling.hpa.enabled=true" in readme and "--set autoscaling.keda.enabled=true" in readme
    assert "Not exercised" in readme


def test_helmignore_ships_the_schema() -> None:
    patterns = [line.strip() for line in (CHART / ".helmignore").read_text().splitlines()]
    assert not [p for p in patterns if p and not p.startswith("#") and "schema" in p]
