"""Config → the vLLM OpenAI server command line and its environment. Pure: no I/O, no environment reads."""

from __future__ import annotations

from llama_ascend.config import Config
from llama_ascend.flags import render_argv
from llama_ascend.launch import Launch

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
API_KEY_VAR = "VLLM_API_KEY"  # vLLM reads the key from here, so it never shows in argv or `ps`
# The rendered environment's directories, all under server.cache_dir: the server's compile caches and temp files.
CACHE_DIR_VARIABLES = ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TMPDIR")
# What vLLM-Ascend's own image (its Dockerfile's ENV) and its dense-model tutorials give the server: torch-npu's
# level-1 operator dispatch pipeline, and one OpenMP thread per process (vLLM-Ascend binds its workers to cores).
# In the rendered environment, so a server started from a venv gets them as well as one started in our image.
ASCEND_SERVER_ENV = {"TASK_QUEUE_ENABLE": "1", "OMP_NUM_THREADS": "1"}


def render(config: Config, python: str = "python3") -> Launch:
    argv = [python, "-m", SERVER_MODULE, *render_argv(config), *config.server.extra_args]
    return Launch(argv=argv, env=_environment(config), secret_env=_secret_environment(config))


def _environment(config: Config) -> dict[str, str]:
    cache = config.cache_dir
    env = {
        # Every cache the server writes lives under one root on the weights volume, so restarts are warm.
        "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "TRITON_CACHE_DIR": str(cache / "triton"),
        # inductor's precompiled headers and vLLM's ZMQ sockets go to TMPDIR.
        "TMPDIR": str(cache / "tmp"),
        # The weights are a local directory: never reach a hub at serve time.
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    if config.backend == "ascend":
        env.update(ASCEND_SERVER_ENV)
    if config.backend == "cpu":
        env.update(
            VLLM_CPU_KVCACHE_SPACE=str(config.server.cpu_kvcache_space),
            VLLM_CPU_NUM_OF_RESERVED_CPU="0",  # ~10 % more throughput on small hosts
            # vllm-cpu 0.32 cannot load its own AOT artifact ('finalize_loading'); inductor's cache still works.
            VLLM_USE_AOT_COMPILE="0",
        )
    env.update(config.env)
    return env


def _secret_environment(config: Config) -> dict[str, str]:
    key_var = config.server.api_key_env
    return {API_KEY_VAR: key_var} if key_var else {}
