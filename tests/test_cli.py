import re
import socket

import pytest

from conftest import ROOT, cli
from llama_ascend import docs
from llama_ascend.errors import describe_os_error


def test_help_lists_the_spine_commands():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("render", "serve", "smoke", "standin", "schema"):
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.M), command


def test_unknown_command_is_a_usage_error():
    result = cli("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr


@pytest.mark.parametrize("name", sorted(docs.SECTIONS))
def test_readme_generated_tables_are_fresh(name: str):
    """README's config keys, managed flags and environment twins are generated (`make docs`) from their one
    definition each: the config models, llama_ascend.flags, llama_ascend.options."""
    readme = (ROOT / "README.md").read_text()
    assert docs.section(readme, name) == docs.render_section(name), "README is stale: run make docs"


def test_the_option_table_names_the_commands_that_take_each_option():
    from llama_ascend import cli, options

    parser = cli.build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for listed, option in options.OPTIONS:
        taking = {
            name
            for name, sub in subcommands.items()
            if any(
                option.env in (action.help or "") and option.flags[-1] in action.option_strings
                for action in sub._actions
            )
        }
        assert taking == set(listed.split(", ")), option.flags


def test_readme_keeps_the_two_fresh_machine_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make serve" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_os_errors_get_the_fix_for_their_errno(tmp_path):
    """describe_os_error on real failures: a file in the way, a full device, a port in use."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as in_the_way:
        (tmp_path / "file" / "sub").mkdir(parents=True)
    assert describe_os_error(in_the_way.value) == (
        f"{tmp_path}/file/sub: Not a directory; fix: {tmp_path}/file is a regular file where a directory is "
        "needed: move it away, or choose another path"
    )
    with pytest.raises(OSError) as full, open("/dev/full", "w", buffering=1) as device:
        device.write("x\n")
    assert describe_os_error(full.value) == (
        "No space left on device; fix: the filesystem is full: free space or enlarge the volume"
    )
    with socket.socket() as held, socket.socket() as second, pytest.raises(OSError) as in_use:
        held.bind(("127.0.0.1", 0))
        held.listen()
        second.bind(held.getsockname())
    assert describe_os_error(in_use.value) == (
        "Address already in use; fix: the port is in use: stop what listens there (`ss -ltnp`) or choose another port"
    )
