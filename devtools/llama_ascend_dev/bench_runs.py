"""The benchmark steps that start servers of their own (`make bench`): launcher overhead (vLLM's own command line
vs `llama-ascend serve`, same flags, alternating) and cold vs warm start. The sweep against a running server is
`llama_ascend.bench` (also in the image)."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llama_ascend.bench import builtin_run, resolve_model
from llama_ascend.errors import ConfigError
from llama_ascend_dev import server_process


def raw_and_ours(
    config_path: str | Path, sets: Sequence[str], port: int, log_path: Path
) -> tuple[server_process.ServerProcess, server_process.ServerProcess]:
    """The same deployment started as vLLM's own command line (what render gives) and through `llama-ascend serve`."""
    from llama_ascend.config import load_config
    from llama_ascend.launch import environment
    from llama_ascend.render import render
    from llama_ascend.serve import create_cache_dirs

    sets = [*sets, f"server.port={port}", "server.host=127.0.0.1"]
    config = load_config(config_path, sets)
    launch = render(config, python=sys.executable)
    create_cache_dirs(launch)
    url = f"http://127.0.0.1:{port}"
    raw = server_process.ServerProcess("raw vLLM", launch.argv, environment(launch, os.environ), url, log_path)
    ours_argv = [sys.executable, "-m", "llama_ascend", "serve", "--config", str(config_path)]
    for item in sets:
        ours_argv += ["--set", item]
    ours = server_process.ServerProcess("llama-ascend serve", ours_argv, dict(os.environ), url, log_path)
    return raw, ours


def overhead(
    config_path: str | Path,
    sets: Sequence[str] = (),
    rounds: int = 2,
    concurrency: int = 8,
    num_prompts: int = 32,
    log_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """raw `python -m vllm.entrypoints.openai.api_server` vs `llama-ascend serve`, same flags, alternating.

    Each start is timed to ready, then measured with the same random 128/64 load (one warm-up request first).
    """
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="llama-ascend-overhead-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    raw, ours = raw_and_ours(config_path, sets, server_process.free_port(), log_dir / "overhead-servers.log")
    model = None
    samples: dict[str, list[dict[str, float]]] = {raw.name: [], ours.name: []}
    for round_index in range(rounds):
        order = (raw, ours) if round_index % 2 == 0 else (ours, raw)
        for server in order:
            progress(f"overhead round {round_index + 1}/{rounds}: {server.name}")
            ready = server.start()
            try:
                model = model or resolve_model(server.url, None, None)
                builtin_run(server.url, model, None, "random", 1, 1, 16, 8)  # warm-up
                run = builtin_run(server.url, model, None, "random", concurrency, num_prompts)
            finally:
                server.stop()
            samples[server.name].append(
                {
                    "ready_s": ready,
                    "output_tok_s": run.output_throughput,
                    "ttft_p50_ms": run.ttft_p50_ms,
                    "tpot_p50_ms": run.tpot_p50_ms,
                    "load_1m": os.getloadavg()[0],
                }
            )
    return {
        "rounds": rounds,
        "concurrency": concurrency,
        "num_prompts": num_prompts,
        "raw_argv": raw.argv,
        "ours_argv": ours.argv,
        **overhead_statistics(samples, raw.name, ours.name),
    }


def overhead_statistics(samples: dict[str, list[dict[str, float]]], raw: str, ours: str) -> dict[str, Any]:
    """Medians per launcher, and the throughput ratio ours / raw as the median of the per-round ratios: each round
    runs both servers back to back, so a round's ratio cancels the machine's slow drift."""
    round_ratios = [o["output_tok_s"] / r["output_tok_s"] for r, o in zip(samples[raw], samples[ours], strict=True)]
    return {
        "samples": samples,
        "median_output_tok_s": {
            name: statistics.median(s["output_tok_s"] for s in runs) for name, runs in samples.items()
        },
        "median_ready_s": {name: statistics.median(s["ready_s"] for s in runs) for name, runs in samples.items()},
        "round_ratios": round_ratios,
        "throughput_ratio": statistics.median(round_ratios),
        "target_ratio": 0.99,
    }


def cold_warm(
    config_path: str | Path,
    sets: Sequence[str] = (),
    cache_dir: Path | None = None,
    concurrency: int = 8,
    num_prompts: int = 32,
    log_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Time-to-ready of `llama-ascend serve` with an empty compile cache, then again with the one it left; the warm
    server's throughput under the overhead benchmark's load shows what the compile buys."""
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="llama-ascend-coldwarm-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir or tempfile.mkdtemp(prefix="llama-ascend-compile-cache-"))
    if cache.exists() and any(cache.iterdir()):
        raise ConfigError(f"{cache}: the cold start needs an empty compile cache dir")
    sets = [*sets, f"server.cache_dir={cache}"]
    _, server = raw_and_ours(config_path, sets, server_process.free_port(), log_dir / "cold-warm-servers.log")
    times, loads = {}, {}
    for phase in ("cold", "warm"):
        progress(f"time to ready: {phase} compile cache")
        try:
            times[phase] = server.start()
            loads[phase] = os.getloadavg()[0]
            model = resolve_model(server.url, None, None)
            builtin_run(server.url, model, None, "random", 1, 1, 16, 8)  # the server answers, not only lists
            if phase == "warm":
                warm_run = builtin_run(server.url, model, None, "random", concurrency, num_prompts)
        finally:
            server.stop()
    size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    return {
        "cache_dir": str(cache),
        "cache_bytes": size,
        "cold_ready_s": times["cold"],
        "warm_ready_s": times["warm"],
        "warm_over_cold": times["warm"] / times["cold"],
        "load_1m": loads,
        "target_warm_over_cold": 0.5,
        "concurrency": concurrency,
        "num_prompts": num_prompts,
        "warm_output_tok_s": warm_run.output_throughput,
        "argv": server.argv,
    }
