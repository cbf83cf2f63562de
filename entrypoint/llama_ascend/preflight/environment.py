"""The environment the server will really get (this process's, then the config's `env`) against the combinations
vLLM-Ascend 0.18.0 refuses: the config check sees only the config's own `env`, a container can bring more."""

from __future__ import annotations

from collections.abc import Mapping

from llama_ascend.combinations import conflicts
from llama_ascend.config import Config
from llama_ascend.preflight.findings import Finding, fail, ok


def check_environment(config: Config, environ: Mapping[str, str]) -> list[Finding]:
    found = [c for c in conflicts(config, environ) if c.key.startswith("env.")]
    if not found:
        return [ok("environment", "no variable vLLM-Ascend 0.18.0 refuses with this config")]
    return [
        fail(
            "environment",
            c.message,
            cause=f"{c.key.removeprefix('env.')} comes from the container's or the shell's environment",
            fix="unset it there (docker run -e, the pod's env), or change the config as the message says",
        )
        for c in found
    ]
