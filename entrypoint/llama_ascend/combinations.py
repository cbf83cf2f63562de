"""Settings that are valid one by one but that vLLM-Ascend 0.18.0 refuses, or silently ignores, together.

Each rule is read from that release's source (vllm_ascend/platform.py, vllm_ascend/utils.py) or its release notes,
and yields the key to change, the reason and the fix. `load_config` refuses them (exit 2) with the config's own `env`;
preflight applies the same rules to the environment the server will really get.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_ascend.config import Config

# vllm_ascend/envs.py reads both as `bool(int(os.getenv(name, "0")))`; the second is the old spelling it still honours.
FLASHCOMM_VARIABLES = ("VLLM_ASCEND_ENABLE_FLASHCOMM1", "VLLM_ASCEND_ENABLE_FLASHCOMM")
LAUNCH_BLOCKING = "ASCEND_LAUNCH_BLOCKING"
FLASHCOMM_TP1_ERROR = "Flash Comm v1 is only supported when tp_size > 1"
LAUNCH_BLOCKING_ERROR = "ACL graph is incompatible with ASCEND_LAUNCH_BLOCKING=1"
# What the rules above rest on, as it reads in vLLM-Ascend 0.18.0's source release: `make check-pins` finds each text
# in its file (and none of REMOVED_ADDITIONAL_CONFIG anywhere in the package), so a rule cannot outlive its reason.
UPSTREAM_TEXTS = {
    "vllm_ascend/platform.py": (
        FLASHCOMM_TP1_ERROR,
        LAUNCH_BLOCKING_ERROR,
        'get("ASCEND_LAUNCH_BLOCKING", "0") == "1"',
    ),
    "vllm_ascend/envs.py": (
        '"VLLM_ASCEND_ENABLE_FLASHCOMM1": lambda: bool(int(os.getenv("VLLM_ASCEND_ENABLE_FLASHCOMM1"',
    ),
    "vllm_ascend/utils.py": ('os.getenv("VLLM_ASCEND_ENABLE_FLASHCOMM", "0")',),
}
# additional_config keys that vLLM-Ascend v0.12.0rc1 removed (docs/source/user_guide/release_notes.md: "Ascend
# scheduler is removed", "Torchair graph mode is removed"); 0.18.0 reads them nowhere, so they change nothing.
REMOVED_ADDITIONAL_CONFIG = {
    "ascend_scheduler_config": "the Ascend scheduler was removed in vLLM-Ascend 0.12.0rc1; vLLM's scheduler runs",
    "ascend_scheduler": "the Ascend scheduler was removed in vLLM-Ascend 0.12.0rc1; vLLM's scheduler runs",
    "torchair_graph_config": "torchair graph mode was removed in vLLM-Ascend 0.12.0rc1; ACL graphs replace it "
    "(server.compilation)",
}


@dataclass(frozen=True)
class Conflict:
    key: str  # the dotted config key to change (`env.X` for a variable)
    message: str  # what is wrong and what vLLM-Ascend does with it, then the fix


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


def conflicts(config: Config, environ: Mapping[str, str]) -> Iterator[Conflict]:
    """The known-bad combinations in `config` when the server's environment is `environ`."""
    if config.backend != "ascend":
        return
    server = config.server
    for name in FLASHCOMM_VARIABLES:
        value = environ.get(name)
        if value is None:
            continue
        try:
            enabled = bool(int(value))
        except ValueError:
            yield Conflict(f"env.{name}", f"{name}={value!r}: vLLM-Ascend reads it as an integer; set 0 or 1")
            continue
        if enabled and server.tensor_parallel_size == 1:
            yield Conflict(
                f"env.{name}",
                f"{name}={value} with server.tensor_parallel_size 1: vLLM-Ascend 0.18.0 stops at start-up "
                f'("{FLASHCOMM_TP1_ERROR}"); remove it (it splits TP all-reduces, so it only helps with '
                "tensor_parallel_size >= 2) or raise server.tensor_parallel_size",
            )
    if environ.get(LAUNCH_BLOCKING, "0") == "1" and captures_graphs(config):
        yield Conflict(
            f"env.{LAUNCH_BLOCKING}",
            f"{LAUNCH_BLOCKING}=1 with ACL graphs (server.compilation {server.compilation}): vLLM-Ascend 0.18.0 "
            f'refuses to start ("{LAUNCH_BLOCKING_ERROR}"); unset it, or debug with server.enforce_eager=true',
        )
    for key in sorted(set(server.additional_config) & set(REMOVED_ADDITIONAL_CONFIG)):
        yield Conflict(
            "server.additional_config",
            f"`{key}`: {REMOVED_ADDITIONAL_CONFIG[key]}, and 0.18.0 ignores the key silently; remove it",
        )
    sizes = server.cudagraph_capture_sizes
    if sizes and not captures_graphs(config):
        yield Conflict(
            "server.cudagraph_capture_sizes",
            "no graphs are captured (server.enforce_eager or compilation NONE), so the sizes would change nothing; "
            "remove them or turn capture on",
        )
    elif sizes and max(sizes) < server.max_num_seqs:
        yield Conflict(
            "server.cudagraph_capture_sizes",
            f"the largest size {max(sizes)} is below server.max_num_seqs {server.max_num_seqs}: decode batches of "
            f"{max(sizes) + 1}-{server.max_num_seqs} sequences would run without a graph; add {server.max_num_seqs}",
        )
