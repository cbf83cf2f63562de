import re

from conftest import ROOT, cli
from llama_ascend.commands.schema import config_table


def test_help_lists_the_spine_commands():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("render", "serve", "smoke", "standin", "schema"):
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.M), command


def test_unknown_command_is_a_usage_error():
    result = cli("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_readme_config_table_is_fresh():
    """README's key table is generated from the config models: `llama-ascend schema --markdown`."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n", readme.index("<!-- config-table:start")) + 1
    assert readme[start : readme.index("<!-- config-table:end -->")] == config_table()


def test_readme_keeps_the_two_fresh_machine_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make serve" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
