"""ascend_env: the CANN set_env.sh scripts are sourced in order, merged, de-duplicated; the shell hook matches.

The install root here is a directory laid out like /usr/local/Ascend in the CANN image, with small bash scripts in
the places CANN puts its set_env.sh; the code under test runs them with the real bash.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llama_ascend import ascend_env
from llama_ascend.errors import PreflightFailed


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


@pytest.fixture
def cann_root(tmp_path: Path) -> Path:
    root = tmp_path / "Ascend"
    _script(
        root / "ascend-toolkit/set_env.sh",
        "export ASCEND_TOOLKIT_HOME=/opt/fake/cann-8.5.1\n"
        "export LD_LIBRARY_PATH=${ASCEND_TOOLKIT_HOME}/lib64:${LD_LIBRARY_PATH}\n"
        "export PATH=${ASCEND_TOOLKIT_HOME}/bin:$PATH\n",
    )
    # Two versioned dirs: the newest one is the toolkit in use.
    _script(root / "cann-8.5.0/share/info/ascendnpu-ir/bin/set_env.sh", "export BISHENG_VERSION=8.5.0\n")
    _script(root / "cann-8.5.1/share/info/ascendnpu-ir/bin/set_env.sh", "export BISHENG_VERSION=8.5.1\n")
    # Like the real one: bash-only syntax, and it reads what the toolkit script exported.
    _script(
        root / "nnal/atb/set_env.sh",
        'here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"\n'
        'if [[ -z "$ASCEND_TOOLKIT_HOME" ]]; then echo "toolkit first" >&2; return 1; fi\n'
        'export ATB_HOME_PATH="$here/latest/atb/cxx_abi_1"\n'
        "export LD_LIBRARY_PATH=${ATB_HOME_PATH}/lib:${LD_LIBRARY_PATH}\n",
    )
    return root


def _base_env() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LD_LIBRARY_PATH": "/usr/lib/base", "HOME": "/home/x", "KEEP": "me"}


def test_no_scripts_returns_environment_unchanged(tmp_path: Path) -> None:
    env = _base_env()
    assert ascend_env.load(env, roots=[tmp_path / "nothing-here"]) == env


def test_sources_in_order_and_merges(cann_root: Path) -> None:
    env = ascend_env.load(_base_env(), roots=[cann_root])
    assert env["ASCEND_TOOLKIT_HOME"] == "/opt/fake/cann-8.5.1"
    assert env["BISHENG_VERSION"] == "8.5.1"
    assert env["ATB_HOME_PATH"] == f"{cann_root}/nnal/atb/latest/atb/cxx_abi_1"
    assert env["LD_LIBRARY_PATH"].split(":") == [
        f"{cann_root}/nnal/atb/latest/atb/cxx_abi_1/lib",
        "/opt/fake/cann-8.5.1/lib64",
        "/usr/lib/base",
    ]
    assert env["PATH"].startswith("/opt/fake/cann-8.5.1/bin:")
    assert env["KEEP"] == "me"
    assert env[ascend_env.LOADED_ENV].split(":") == [
        str(cann_root / "ascend-toolkit/set_env.sh"),
        str(cann_root / "cann-8.5.1/share/info/ascendnpu-ir/bin/set_env.sh"),
        str(cann_root / "nnal/atb/set_env.sh"),
    ]
    for noise in ("_", "SHLVL", "PWD", "OLDPWD"):
        assert noise not in env


def test_loading_twice_changes_nothing(cann_root: Path) -> None:
    once = ascend_env.load(_base_env(), roots=[cann_root])
    assert ascend_env.load(once, roots=[cann_root]) == once


def test_roots_come_from_the_environment(cann_root: Path) -> None:
    env = {**_base_env(), ascend_env.ROOTS_ENV: f"/does/not/exist:{cann_root}"}
    assert ascend_env.load(env)["BISHENG_VERSION"] == "8.5.1"


def test_partial_install_sources_what_exists(cann_root: Path) -> None:
    shutil.rmtree(cann_root / "nnal")
    env = ascend_env.load(_base_env(), roots=[cann_root])
    assert "ATB_HOME_PATH" not in env
    assert env["BISHENG_VERSION"] == "8.5.1"


def test_failing_script_names_itself(cann_root: Path) -> None:
    (cann_root / "ascend-toolkit/set_env.sh").write_text("echo 'broken toolkit' >&2; return 3\n")
    with pytest.raises(PreflightFailed) as info:
        ascend_env.load(_base_env(), roots=[cann_root])
    message = str(info.value)
    assert "exit 3" in message and "broken toolkit" in message
    assert str(cann_root / "ascend-toolkit/set_env.sh") in message


def _hook(tmp_path: Path, cann_root: Path) -> Path:
    hook = tmp_path / "llama-ascend-cann.sh"
    hook.write_text(ascend_env.profile_script(roots=[cann_root]))
    return hook


def _env_after(shell: str, script: str, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([shell, "-c", f"{script}env -0"], env=env, capture_output=True, check=True).stdout
    return ascend_env._parse_env0(out)


def test_shell_hook_matches_load(tmp_path: Path, cann_root: Path) -> None:
    loaded = ascend_env.load(_base_env(), roots=[cann_root])
    hook = _hook(tmp_path, cann_root)
    # `docker exec ... bash -c` reads BASH_ENV; interactive shells read /etc/bash.bashrc, which sources the hook.
    via_bash_env = _env_after("bash", "", {**_base_env(), "BASH_ENV": str(hook)})
    via_source = _env_after("bash", f". {hook} && ", _base_env())
    for shell_env in (via_bash_env, via_source):
        for name in ("ASCEND_TOOLKIT_HOME", "BISHENG_VERSION", "ATB_HOME_PATH", "LD_LIBRARY_PATH", "PATH"):
            assert shell_env[name] == loaded[name], name
        assert shell_env[ascend_env.LOADED_ENV] == loaded[ascend_env.LOADED_ENV]


def test_shell_hook_runs_once_and_skips_other_shells(tmp_path: Path, cann_root: Path) -> None:
    hook = _hook(tmp_path, cann_root)
    loaded = ascend_env.load(_base_env(), roots=[cann_root])
    again = _env_after("bash", "", {**loaded, "BASH_ENV": str(hook)})
    assert again["LD_LIBRARY_PATH"] == loaded["LD_LIBRARY_PATH"]
    if shutil.which("dash"):
        plain = _env_after("dash", f". {hook}; ", _base_env())
        assert "ASCEND_TOOLKIT_HOME" not in plain


def test_profile_command_prints_the_hook() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llama_ascend.ascend_env", "profile"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, ascend_env.ROOTS_ENV: "/usr/local/Ascend"},
    )
    assert result.stdout == ascend_env.profile_script(roots=[Path("/usr/local/Ascend")])
