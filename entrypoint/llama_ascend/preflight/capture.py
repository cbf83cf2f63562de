"""Whether the server will capture ACL graphs: the setting the graph-related checks (the driver's HDK version, a
vNPU with PIECEWISE) depend on, read from the config as `flags.py` renders it."""

from __future__ import annotations

from llama_ascend.config import Config


def captures_graphs(config: Config) -> bool:
    """True when vLLM-Ascend will capture ACL graphs: the ascend backend, not `server.enforce_eager` (which leaves
    out `--compilation-config`), and a `server.compilation` other than NONE."""
    server = config.server
    return config.backend == "ascend" and not server.enforce_eager and server.compilation != "NONE"


def graph_setting(config: Config) -> str:
    """The key that decides graph capture, as the user would write it: `server.enforce_eager=true` when set (it wins
    over server.compilation), else `server.compilation=<mode>`."""
    if config.server.enforce_eager:
        return "server.enforce_eager=true"
    return f"server.compilation={config.server.compilation}"
