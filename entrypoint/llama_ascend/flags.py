"""The one table of config key → vLLM server flag: what `render` writes, what `server.extra_args` may not repeat,
what check-pins renders against the 0.18.0 sources and what README's flag table shows. A new managed flag is one
row here."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_ascend.config import Config

BOTH = ("ascend", "cpu")


@dataclass(frozen=True)
class Flag:
    key: str  # the config key that manages the flag
    flag: str  # vLLM's spelling
    value: Callable[[Config], str | bool | None]  # a string: `flag value`; True: the bare flag; None/False: left out
    backends: tuple[str, ...] = BOTH
    aliases: tuple[str, ...] = ()  # other spellings `server.extra_args` may not use either (-tp, -O, -q)
    # A --set that makes the row render with the reference profile, so check-pins sees the flag (None: it renders).
    example: str | None = None
    rendered: bool = True  # False: managed, but reaches the server another way (the API key: an environment variable)
    written: str = ""  # how the value is written, for the docs, when "always" / "when set" says too little
    off: str | None = None  # the spelling written for False (`--no-...`), when False is not vLLM's default

    def argv(self, config: Config) -> list[str]:
        if not self.rendered or config.backend not in self.backends:
            return []
        value = self.value(config)
        if value is False and self.off:
            return [self.off]
        if value is None or value is False:
            return []
        return [self.flag] if value is True else [self.flag, value]


def _compilation(config: Config) -> str | None:
    server = config.server
    if server.enforce_eager:
        return None
    compilation: dict[str, object] = {"cudagraph_mode": server.compilation}
    if server.cudagraph_capture_sizes:
        compilation["cudagraph_capture_sizes"] = sorted(set(server.cudagraph_capture_sizes))
    return json.dumps(compilation)


FLAGS: tuple[Flag, ...] = (
    Flag("model.path / model.id", "--model", lambda c: str(c.model_dir)),
    Flag("model.served_name", "--served-model-name", lambda c: c.model.served_name),
    Flag("server.host", "--host", lambda c: c.server.host),
    Flag("server.port", "--port", lambda c: str(c.server.port)),
    Flag("server.dtype", "--dtype", lambda c: c.server.dtype),
    Flag(
        "server.tensor_parallel_size",
        "--tensor-parallel-size",
        lambda c: str(c.server.tensor_parallel_size),
        aliases=("-tp",),
    ),
    Flag("server.max_model_len", "--max-model-len", lambda c: str(c.server.max_model_len)),
    Flag("server.max_num_seqs", "--max-num-seqs", lambda c: str(c.server.max_num_seqs)),
    Flag("server.shutdown_timeout", "--shutdown-timeout", lambda c: str(c.server.shutdown_timeout)),
    Flag(
        "server.gpu_memory_utilization",
        "--gpu-memory-utilization",
        lambda c: str(c.server.gpu_memory_utilization),
        backends=("ascend",),
    ),
    Flag(
        "server.compilation / server.cudagraph_capture_sizes",
        "--compilation-config",
        _compilation,
        backends=("ascend",),
        aliases=("-O",),
        example="server.compilation=FULL_DECODE_ONLY",
        written='`{"cudagraph_mode": ..., "cudagraph_capture_sizes": [...]}` unless `server.enforce_eager`',
    ),
    Flag(
        "server.enforce_eager", "--enforce-eager", lambda c: c.server.enforce_eager, example="server.enforce_eager=true"
    ),
    Flag(
        "server.async_scheduling",
        "--async-scheduling",
        lambda c: c.server.async_scheduling,
        off="--no-async-scheduling",
        example="server.async_scheduling=true",
        written="`--async-scheduling` for true, `--no-async-scheduling` for false, nothing for null",
    ),
    Flag(
        "server.additional_config",
        "--additional-config",
        lambda c: json.dumps(c.server.additional_config) if c.server.additional_config else None,
        backends=("ascend",),
        example='server.additional_config={"weight_prefetch_config": {"enabled": true}}',
        written="as JSON when not empty",
    ),
    Flag(
        "server.quantization",
        "--quantization",
        lambda c: c.server.quantization,
        aliases=("-q",),
        example="server.quantization=ascend",
    ),
    Flag(
        "model.trust_remote_code",
        "--trust-remote-code",
        lambda c: c.model.trust_remote_code,
        example="model.trust_remote_code=true",
    ),
    Flag(
        "server.api_key_env",
        "--api-key",
        lambda c: None,
        rendered=False,
        example="server.api_key_env=LLAMA_API_KEY",
        written="as the environment variable `VLLM_API_KEY`, never in argv",
    ),
)

# Every spelling of a managed flag -> the key that manages it.
MANAGED: dict[str, str] = {spelling: row.key for row in FLAGS for spelling in (row.flag, *row.aliases)}


def managed_key(arg: str) -> str | None:
    """The config key that manages the vLLM flag in `arg` (`--port=9`, `--no-enforce-eager`, `-O3`), or None."""
    if not arg.startswith("-"):
        return None
    flag = arg.split("=", 1)[0]
    flag = "--" + flag[2:].replace("_", "-") if flag.startswith("--") else flag
    base = "--" + flag[5:] if flag.startswith("--no-") else flag
    short = flag[:2] if not flag.startswith("--") else flag  # -O3, -q=awq
    return MANAGED.get(flag) or MANAGED.get(base) or MANAGED.get(short)


def render_argv(config: Config) -> list[str]:
    """The managed flags for `config`, in the table's order."""
    return [item for row in FLAGS for item in row.argv(config)]
