"""validate → render → check the node and the weights → exec the vLLM OpenAI server (nothing of ours stays running)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from llama_ascend import ascend_env, devices, fetch, preflight
from llama_ascend.config import Config
from llama_ascend.errors import ConfigError
from llama_ascend.render import CACHE_DIR_VARIABLES, Launch, render

log = logging.getLogger(__name__)

CPU_BANNER = """
################################################################################
#  CPU STAND-IN: no Ascend NPU here. Serving {model_dir}
#  on vLLM's CPU backend as '{served_name}' (a small model for development and CI),
#  NOT Llama-3.1-8B-Instruct on a 910B. Production: --config config/llama-3.1-8b-instruct.yaml
################################################################################
"""


def server_environment(launch: Launch, environ: Mapping[str, str]) -> dict[str, str]:
    """The child's explicit environment: ours, then the rendered variables, then secrets resolved by name."""
    env = {**environ, **launch.env}
    for target, source in launch.secret_env.items():
        value = environ.get(source)
        if not value:
            raise ConfigError(
                f"server.api_key_env names ${source}, but it is unset or empty: export it (or set the key to null)"
            )
        env[target] = value
    return env


def create_cache_dirs(launch: Launch) -> None:
    for name in CACHE_DIR_VARIABLES:
        Path(launch.env[name]).mkdir(parents=True, exist_ok=True)


def prepare(config: Config, environ: Mapping[str, str] | None = None) -> tuple[Launch, dict[str, str]]:
    """Everything `serve` does before exec: the environment, the weights, the preflight checks, the cache dirs."""
    environ = dict(os.environ if environ is None else environ)
    if config.backend == "ascend":
        # The CANN image's own ENTRYPOINT sources set_env.sh; ours bypasses it, so the server gets it from here.
        environ = ascend_env.load(environ)
        environ.update(devices.runtime_device_env(environ))
    launch = render(config, python=sys.executable)
    env = server_environment(launch, environ)
    if not fetch.is_complete(config):
        fetch.fetch(config)
    findings = preflight.run_checks(config, environ=env)
    preflight.save_report(findings, preflight.report_path(config))
    preflight.raise_on_failure(findings)
    create_cache_dirs(launch)
    return launch, env


def exec_server(config: Config, launch: Launch, env: dict[str, str]) -> None:
    if config.backend == "cpu":
        print(CPU_BANNER.format(model_dir=config.model_dir, served_name=config.model.served_name), file=sys.stderr)
    log.info("exec %s", " ".join(launch.argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(launch.argv[0], launch.argv, env)
