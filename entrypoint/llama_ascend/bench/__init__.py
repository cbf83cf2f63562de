"""How fast is it: a concurrency sweep against a running server.

The sweep drives the server with vLLM's own benchmark (`vllm.benchmarks.serve`, what `vllm bench serve` runs) when
the installed vLLM has it and a tokenizer is at hand, else with our async client (httpx, streamed completions).
Datasets: `random` (random tokens, fixed input/output lengths, as vLLM's) and `reference` (the verify prompts).
Reported per run: output tok/s, requests/s, TTFT and TPOT p50/p99.

One module per concern: `runs` (the workload's defaults, a run's figures, percentiles, the table and the JSON
document), `builtin_client` (our async client), `vllm_client` (vLLM's benchmark in a subprocess, and its entry
`python -m llama_ascend.bench vllm-batch`); the sweep itself is here.
"""

from __future__ import annotations

from collections.abc import Sequence

from llama_ascend.bench.builtin_client import builtin_run
from llama_ascend.bench.runs import (
    BUILTIN_CLIENT,
    CONCURRENCY,
    DATASETS,
    INPUT_LEN,
    OUTPUT_LEN,
    VLLM_CLIENT,
    Run,
    markdown_table,
    num_prompts_for,
    percentile,
    runs_document,
    write_results,
)
from llama_ascend.bench.vllm_client import vllm_bench_available, vllm_runs
from llama_ascend.errors import ConfigError

CLIENTS = ("auto", "vllm", "builtin")

__all__ = [
    "BUILTIN_CLIENT",
    "CLIENTS",
    "CONCURRENCY",
    "DATASETS",
    "INPUT_LEN",
    "OUTPUT_LEN",
    "VLLM_CLIENT",
    "Run",
    "builtin_run",
    "markdown_table",
    "num_prompts_for",
    "percentile",
    "resolve_model",
    "runs_document",
    "sweep",
    "vllm_bench_available",
    "write_results",
]


def resolve_model(url: str, api_key: str | None, model: str | None) -> str:
    from llama_ascend.client import ServerClient
    from llama_ascend.smoke import resolve_model as resolve

    return resolve(ServerClient(url, api_key), model)[0]


def sweep(
    url: str,
    model: str | None = None,
    tokenizer: str | None = None,
    concurrencies: Sequence[int] = CONCURRENCY,
    datasets: Sequence[str] = DATASETS,
    num_prompts: int | None = None,
    input_len: int = INPUT_LEN,
    output_len: int = OUTPUT_LEN,
    api_key: str | None = None,
    client: str = "auto",
) -> list[Run]:
    """Every dataset at every concurrency; `num_prompts` None scales them with the concurrency."""
    if client not in CLIENTS:
        raise ConfigError(f"--client {client!r}: choose one of {', '.join(CLIENTS)}")
    unknown = set(datasets) - set(DATASETS)
    if unknown:
        raise ConfigError(f"--datasets: unknown {', '.join(sorted(unknown))} (choose from {', '.join(DATASETS)})")
    model = resolve_model(url, api_key, model)
    plan = [(d, c, num_prompts or num_prompts_for(c)) for d in datasets for c in concurrencies]
    use_vllm = client == "vllm" or (client == "auto" and vllm_bench_available() and tokenizer is not None)
    if use_vllm:
        if tokenizer is None:
            raise ConfigError("--client vllm needs --tokenizer (the model dir) for its random prompts")
        if not vllm_bench_available():
            raise ConfigError("--client vllm: this Python has no vllm.benchmarks; use --client builtin")
        return vllm_runs(url, model, tokenizer, plan, input_len, output_len, api_key)
    return [builtin_run(url, model, api_key, d, c, n, input_len, output_len) for d, c, n in plan]
