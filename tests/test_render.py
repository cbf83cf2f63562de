import json
import shlex
from pathlib import Path

import pytest

from conftest import DEV_CONFIG, PROD_CONFIG, cli
from llama_ascend.config import load_config
from llama_ascend.render import render

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def fixed_cache(monkeypatch):
    monkeypatch.setenv("LLAMA_ASCEND_CACHE", "/cache")


@pytest.mark.parametrize(
    ("profile", "golden"),
    [
        (PROD_CONFIG, "ascend.json"),
        (PROD_CONFIG.with_name("llama-3.1-8b-instruct-low-latency.yaml"), "ascend-low-latency.json"),
        (PROD_CONFIG.with_name("llama-3.1-8b-instruct-w8a8.yaml"), "ascend-w8a8.json"),
        (DEV_CONFIG, "dev-cpu.json"),
    ],
)
def test_golden_launch(profile, golden):
    """The exact command and environment each profile renders; review a diff here like a deployment change."""
    launch = render(load_config(profile, environ={}))
    assert json.loads(launch.as_json()) == json.loads((GOLDEN / golden).read_text())


def test_reference_command_matches_the_original_deployment():
    """The original 910B command, minus --trust-remote-code (off by default), plus what we manage."""
    argv = render(load_config(PROD_CONFIG, environ={})).argv
    pairs = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert argv[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert pairs["--model"] == "/models/modelscope/LLM-Research/Meta-Llama-3.1-8B-Instruct/master"
    assert {
        k: pairs[k] for k in ("--dtype", "--tensor-parallel-size", "--max-model-len", "--max-num-seqs", "--port")
    } == {
        "--dtype": "bfloat16",
        "--tensor-parallel-size": "1",
        "--max-model-len": "4096",
        "--max-num-seqs": "8",
        "--port": "8000",
    }
    assert json.loads(pairs["--compilation-config"]) == {"cudagraph_mode": "PIECEWISE"}
    assert "--trust-remote-code" not in argv


def test_options_render_as_flags():
    config = load_config(
        PROD_CONFIG,
        [
            "server.tensor_parallel_size=4",
            "server.quantization=ascend",
            "model.trust_remote_code=true",
            "server.extra_args=[--enable-prefix-caching]",
            "server.compilation=FULL_DECODE_ONLY",
        ],
        environ={},
    )
    argv = render(config).argv
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--quantization") + 1] == "ascend"
    assert json.loads(argv[argv.index("--compilation-config") + 1]) == {"cudagraph_mode": "FULL_DECODE_ONLY"}
    assert "--trust-remote-code" in argv and argv[-1] == "--enable-prefix-caching"


def test_capture_sizes_async_scheduling_and_additional_config_render_as_vllm_reads_them():
    config = load_config(
        PROD_CONFIG,
        [
            "server.cudagraph_capture_sizes=[8, 1, 4, 4]",
            "server.async_scheduling=false",
            "server.additional_config={weight_prefetch_config: {enabled: true}}",
        ],
        environ={},
    )
    argv = render(config).argv
    assert json.loads(argv[argv.index("--compilation-config") + 1]) == {
        "cudagraph_mode": "PIECEWISE",
        "cudagraph_capture_sizes": [1, 4, 8],
    }
    assert "--no-async-scheduling" in argv and "--async-scheduling" not in argv
    assert json.loads(argv[argv.index("--additional-config") + 1]) == {"weight_prefetch_config": {"enabled": True}}
    unset = render(load_config(PROD_CONFIG, environ={})).argv
    assert not {"--async-scheduling", "--no-async-scheduling", "--additional-config"} & set(unset)


def test_the_ascend_server_gets_vllm_ascends_runtime_variables_and_the_config_may_override_them():
    env = render(load_config(PROD_CONFIG, environ={})).env
    assert (env["TASK_QUEUE_ENABLE"], env["OMP_NUM_THREADS"]) == ("1", "1")
    overridden = render(load_config(PROD_CONFIG, ["env.OMP_NUM_THREADS=4"], environ={})).env
    assert overridden["OMP_NUM_THREADS"] == "4"
    assert "TASK_QUEUE_ENABLE" not in render(load_config(DEV_CONFIG, environ={})).env


def test_enforce_eager_replaces_graph_capture():
    argv = render(load_config(PROD_CONFIG, ["server.enforce_eager=true"], environ={})).argv
    assert "--enforce-eager" in argv and "--compilation-config" not in argv


def test_api_key_is_never_in_argv_or_env():
    launch = render(load_config(PROD_CONFIG, ["server.api_key_env=MY_KEY"], environ={}))
    assert not any("MY_KEY" in a or "api-key" in a for a in launch.argv)
    assert launch.secret_env == {"VLLM_API_KEY": "MY_KEY"} and "VLLM_API_KEY" not in launch.env


def test_config_env_wins_over_rendered_env():
    launch = render(load_config(DEV_CONFIG, ["env={VLLM_CPU_NUM_OF_RESERVED_CPU: '1', EXTRA: x}"], environ={}))
    assert launch.env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "1" and launch.env["EXTRA"] == "x"


def test_cli_render_prints_a_runnable_shell_command():
    result = cli("render", "--config", str(PROD_CONFIG), env={"LLAMA_ASCEND_CACHE": "/cache"})
    assert result.returncode == 0, result.stderr
    words = shlex.split(result.stdout.replace("\\\n", " "))
    assert "VLLM_CACHE_ROOT=/models/cache/vllm" in words
    assert words[words.index("--compilation-config") + 1] == '{"cudagraph_mode": "PIECEWISE"}'


def test_cli_render_json_is_the_launch():
    result = cli("render", "--json", "--config", str(DEV_CONFIG), env={"LLAMA_ASCEND_CACHE": "/cache"})
    data = json.loads(result.stdout)
    golden = json.loads((GOLDEN / "dev-cpu.json").read_text())
    assert data["argv"][1:] == golden["argv"][1:] and data["env"] == golden["env"]
