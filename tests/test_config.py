from pathlib import Path

import pytest
import yaml

from conftest import DEV_CONFIG, PROD_CONFIG, ROOT, cli
from llama_ascend.config import Config, config_schema, load_config
from llama_ascend.errors import ConfigError
from llama_ascend.paths import expand_path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_reference_profile_is_the_reference_deployment():
    config = load_config(PROD_CONFIG, environ={})
    assert config.backend == "ascend"
    assert (config.model.source, config.model.id) == ("modelscope", "LLM-Research/Meta-Llama-3.1-8B-Instruct")
    assert config.model.served_name == "Llama-3.1-8B-Instruct"
    assert config.model.trust_remote_code is False
    s = config.server
    assert (s.dtype, s.tensor_parallel_size, s.max_model_len, s.max_num_seqs, s.port, s.compilation) == (
        "bfloat16",
        1,
        4096,
        8,
        8000,
        "PIECEWISE",
    )
    # The user never types ModelScope's mangled directory name: the path is derived from id and revision.
    assert config.model_dir == Path("/models/modelscope/LLM-Research/Meta-Llama-3.1-8B-Instruct/master")
    assert "___" not in str(config.model_dir)


def test_dev_profile_is_the_same_deployment_on_cpu(monkeypatch):
    monkeypatch.setenv("LLAMA_ASCEND_CACHE", "/var/cache/la")
    dev, prod = load_config(DEV_CONFIG), load_config(PROD_CONFIG)
    assert dev.backend == "cpu" and dev.server.host == "127.0.0.1"
    assert dev.model_dir == Path("/var/cache/la/models/SmolLM2-135M-Instruct")
    for key in ("dtype", "max_model_len", "max_num_seqs", "port", "shutdown_timeout"):
        assert getattr(dev.server, key) == getattr(prod.server, key), key


def test_defaults_match_the_reference_profile():
    """An empty file renders the reference deployment: the profile spells the defaults out, it changes nothing."""
    from llama_ascend.render import render

    assert render(Config()) == render(Config.model_validate(yaml.safe_load(PROD_CONFIG.read_text())))


def test_layering_file_then_env_then_set(tmp_path):
    path = write(tmp_path, "server:\n  max_num_seqs: 4\n  port: 9000\n")
    env = {"LLAMA_ASCEND__SERVER__MAX_NUM_SEQS": "12", "LLAMA_ASCEND__SERVER__PORT": "9100"}
    config = load_config(path, ["server.max_num_seqs=16"], environ=env)
    assert config.server.max_num_seqs == 16  # --set wins
    assert config.server.port == 9100  # env beats the file
    assert load_config(path, environ={}).server.port == 9000


def test_set_values_are_typed(tmp_path):
    config = load_config(
        write(tmp_path, ""),
        [
            "server.gpu_memory_utilization=0.85",
            "server.enforce_eager=true",
            "server.extra_args=[--enable-prefix-caching, --seed=1]",
            "env={A: b}",
        ],
        environ={},
    )
    assert config.server.gpu_memory_utilization == 0.85
    assert config.server.enforce_eager is True
    assert config.server.extra_args == ["--enable-prefix-caching", "--seed=1"]
    assert config.env == {"A": "b"}


def test_config_path_from_environment(tmp_path):
    path = write(tmp_path, "server: {port: 8123}\n")
    assert load_config(None, environ={"LLAMA_ASCEND_CONFIG": str(path)}).server.port == 8123


def test_expand_path_defaults_cache_variable():
    assert expand_path("${LLAMA_ASCEND_CACHE}/x", {}) == Path.home() / ".cache" / "llama-ascend" / "x"
    assert expand_path("$LLAMA_ASCEND_CACHE/x", {"LLAMA_ASCEND_CACHE": "/c"}) == Path("/c/x")


@pytest.mark.parametrize(
    ("text", "sets", "expected"),
    [
        ("server:\n  max_num_seq: 3\n", [], "server.max_num_seq: unknown key (did you mean 'max_num_seqs'?)"),
        ("sever: {}\n", [], "sever: unknown key (did you mean 'server'?)"),
        ("server:\n  port: '8000'\n", [], "server.port: Input should be a valid integer (got '8000')"),
        ("server:\n  port: 70000\n", [], "server.port: Input should be less than or equal to 65535"),
        ("server:\n  port: 0\n", [], "server.port: Input should be greater than or equal to 1"),
        (
            "",
            ["server.tensor_parallel_size=3"],
            "--set: server.tensor_parallel_size: Input should be 1, 2, 4 or 8 (got 3)",
        ),
        ("", ["server.max_model_len=131073"], "server.max_model_len: Input should be less than or equal to 131072"),
        ("", ["server.max_model_len=0"], "server.max_model_len: Input should be greater than 0"),
        ("", ["server.dtype=fp7"], "server.dtype: Input should be 'auto', 'bfloat16'"),
        ("", ["backend=gpu"], "backend: Input should be 'ascend' or 'cpu'"),
        ("", ["model.id=llama"], "model.id must be 'owner/name' for source modelscope"),
        ("", ["server.extra_args=[--port=9]"], "'--port=9' duplicates the managed key server.port"),
        ("", ["server.extra_args=[--no-enforce-eager]"], "duplicates the managed key server.enforce_eager"),
        ("", ["server.extra_args=[-O3]"], "duplicates the managed key server.compilation"),
        ("", ["env={'BAD-NAME': x}"], "'BAD-NAME' is not a valid environment variable name"),
        ("server: 3\n", [], "server: Input should be a valid dictionary or instance of ServerConfig"),
        ("server:\n  port: [\n", [], "config.yaml:3:1: YAML syntax error"),
        ("- a\n- b\n", [], "the top level must be a mapping"),
        ("", ["server.port"], "expected KEY=VALUE"),
    ],
)
def test_bad_input_names_the_field(tmp_path, text, sets, expected):
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), sets, environ={})
    assert expected in str(raised.value)


def test_all_errors_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, "server: {port: -1, max_num_seqs: 0, dtype: int4}\n"), environ={})
    lines = str(raised.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(str(tmp_path / "config.yaml")) for line in lines)


def test_every_problem_at_once_with_its_origin_including_each_extra_args_duplicate(tmp_path):
    """Overrides that do not parse, wrong values and every managed flag in extra_args: one line each, together."""
    path = write(tmp_path, "server:\n  max_num_seqs: 0\n  extra_args: [--port=9, --seed=1, --dtype, half]\n")
    with pytest.raises(ConfigError) as raised:
        load_config(
            path,
            ["server.port=0", "server.max_num_seq=3", "nokey"],
            environ={"LLAMA_ASCEND__SERVER__HOST": "[", "LLAMA_ASCEND__SERVER__MAX_MODEL_LEN": "x"},
        )
    assert str(raised.value).splitlines() == [
        "$LLAMA_ASCEND__SERVER__HOST='[': the value is not valid YAML (expected the node content, but found "
        "'<stream end>')",
        "--set 'nokey': expected KEY=VALUE with a dotted key, e.g. --set server.max_num_seqs=16",
        "--set: server.port: Input should be greater than or equal to 1 (got 0)",  # in the order of the fields
        "$LLAMA_ASCEND__SERVER__MAX_MODEL_LEN: server.max_model_len: Input should be a valid integer (got 'x')",
        f"{path}: server.max_num_seqs: Input should be greater than or equal to 1 (got 0)",
        "--set: server.max_num_seq: unknown key (did you mean 'max_num_seqs'?)",
        f"{path}: server.extra_args: '--port=9' duplicates the managed key server.port; set that key instead",
        f"{path}: server.extra_args: '--dtype' duplicates the managed key server.dtype; set that key instead",
    ]


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (
            ["server.compilation=FULL_AND_PIECEWISE"],
            "--set: server.compilation: 'FULL_AND_PIECEWISE' is refused on the ascend backend: vLLM-Ascend 0.18.0 "
            "runs 'PIECEWISE', 'FULL_DECODE_ONLY', 'FULL', 'NONE'; it silently runs FULL_AND_PIECEWISE as "
            "PIECEWISE; set server.compilation to one of them",
        ),
        *(
            (
                [f"server.quantization={method}"],
                f"--set: server.quantization: '{method}' is refused on the ascend backend: vLLM-Ascend 0.18.0 "
                "supports only 'ascend', 'compressed-tensors'; use a checkpoint quantized for Ascend (msModelSlim "
                "W8A8/W8A16: `ascend`) or compressed-tensors, or null for the bf16 weights",
            )
            for method in ("awq", "gptq", "fp8", "bitsandbytes")
        ),
        (
            ["backend=cpu", "server.quantization=ascend"],
            "--set: server.quantization: 'ascend' is refused on the cpu backend: `ascend` is vLLM-Ascend's method; "
            "vLLM's CPU backend has none by that name; set server.quantization to null (bf16 weights), or use "
            "backend: ascend",
        ),
    ],
)
def test_values_the_backend_does_not_run_are_refused(sets, expected):
    with pytest.raises(ConfigError) as raised:
        load_config(PROD_CONFIG, sets, environ={})
    assert str(raised.value) == expected


@pytest.mark.parametrize(
    "sets",
    [
        ["server.compilation=FULL"],
        ["server.compilation=FULL_DECODE_ONLY"],
        ["server.compilation=NONE"],
        ["server.quantization=ascend"],
        ["server.quantization=compressed-tensors"],
        # compilation is ignored on cpu; vLLM's CPU backend has its own quantization methods
        ["backend=cpu", "server.compilation=FULL_AND_PIECEWISE", "server.quantization=awq"],
    ],
)
def test_values_the_backend_runs_are_accepted(sets):
    load_config(PROD_CONFIG, sets, environ={})


def test_schema_holds_the_ascend_backends_choices():
    import jsonschema

    validator = jsonschema.Draft202012Validator(config_schema())
    assert not validator.is_valid({"server": {"compilation": "FULL_AND_PIECEWISE"}})  # backend defaults to ascend
    assert not validator.is_valid({"backend": "ascend", "server": {"quantization": "awq"}})
    assert validator.is_valid({"backend": "ascend", "server": {"quantization": "ascend", "compilation": "FULL"}})
    assert validator.is_valid(
        {"backend": "cpu", "server": {"quantization": "awq", "compilation": "FULL_AND_PIECEWISE"}}
    )
    assert not validator.is_valid({"backend": "cpu", "server": {"quantization": "ascend"}})


def test_env_override_origin_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"\$LLAMA_ASCEND__SERVER__PORT: server.port"):
        load_config(write(tmp_path, ""), environ={"LLAMA_ASCEND__SERVER__PORT": "x"})


@pytest.mark.parametrize("target", ["missing.yaml", "."])
def test_missing_or_unreadable_file_exits_2(tmp_path, target):
    path = tmp_path / target
    result = cli("render", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}:")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_undecodable_file_exits_2(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00server")
    result = cli("render", "--config", str(path))
    assert (result.returncode, "cannot read the config file" in result.stderr) == (2, True)


def test_cli_bad_value_is_one_line_exit_2():
    result = cli("render", "--config", str(PROD_CONFIG), "--set", "server.tensor_parallel_size=3")
    assert result.returncode == 2
    assert result.stderr == "error: --set: server.tensor_parallel_size: Input should be 1, 2, 4 or 8 (got 3)\n"


def test_no_config_given_exits_2():
    result = cli("render", env={"LLAMA_ASCEND_CONFIG": ""})
    assert result.returncode == 2 and "pass --config FILE" in result.stderr


def test_schema_file_is_fresh():
    """config/schema.json is generated from the models (`make schema`); the chart reuses it."""
    import json

    assert json.loads((ROOT / "config" / "schema.json").read_text()) == config_schema()


def test_schema_rejects_what_the_models_reject():
    import jsonschema

    validator = jsonschema.Draft202012Validator(config_schema())
    assert not list(validator.iter_errors(yaml.safe_load(PROD_CONFIG.read_text())))
    bad = {"server": {"tensor_parallel_size": 3, "port": "8000", "max_num_seq": 1}}
    messages = " | ".join(e.message for e in validator.iter_errors(bad))
    assert "3 is not one of [1, 2, 4, 8]" in messages and "'8000' is not of type 'integer'" in messages
    assert "'max_num_seq' was unexpected" in messages
