"""A rendered process — argv, its environment, secrets resolved by name at exec time — and the exec that replaces
us with it, so nothing of ours stays running (the vLLM server, the router)."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from llama_ascend.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    # Variables the server needs whose values are secrets: {variable the server reads: variable we read it from}.
    secret_env: dict[str, str] = field(default_factory=dict)
    secret_key: str = "server.api_key_env"  # the config key that names the secrets' variable, for messages

    def shell(self) -> str:
        assignments = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        assignments += [f'{k}="${v}"' for k, v in self.secret_env.items()]
        return " \\\n  ".join([*assignments, shlex.join(self.argv)])

    def as_json(self) -> str:
        return json.dumps({"argv": self.argv, "env": self.env, "secret_env": self.secret_env}, indent=2)


def environment(launch: Launch, environ: Mapping[str, str]) -> dict[str, str]:
    """The child's explicit environment: ours, then the rendered variables, then secrets resolved by name."""
    env = {**environ, **launch.env}
    for target, source in launch.secret_env.items():
        value = environ.get(source)
        if not value:
            raise ConfigError(
                f"{launch.secret_key} names ${source}, but it is unset or empty: export it (or set the key to null)"
            )
        env[target] = value
    return env


def exec_launch(launch: Launch, env: dict[str, str]) -> None:
    """Replace this process with the rendered one (it keeps our PID, so a supervisor sees it directly)."""
    log.info("exec %s", " ".join(launch.argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(launch.argv[0], launch.argv, env)
