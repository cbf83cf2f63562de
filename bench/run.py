"""`make bench`: the whole benchmark in one run, one vLLM server at a time, results under bench/results/.

1. sweep: `llama-ascend serve` with the config, then `llama-ascend bench` logic (vLLM's benchmark when installed):
   random 128 in / 64 out and the reference prompts, concurrency 1, 4, 8, 16;
2. launcher overhead: raw `python -m vllm.entrypoints.openai.api_server` (the rendered command) vs
   `llama-ascend serve`, same flags, alternating, `--rounds` times each; throughput ratio ours / raw as the median of
   the rounds' ratios (target >= 0.99);
3. cold vs warm: time-to-ready of `llama-ascend serve` with torch.compile on (server.enforce_eager=false) and an
   empty compile cache (server.cache_dir), then again with the cache it left (target warm <= 0.5 x cold), and the
   warm server's throughput under the overhead load.

The summary is rewritten after each step. A step left out with --skip keeps its result from the last summary.json
(marked as such), so a failed step can be re-run alone. The logic lives in llama_ascend.bench.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llama_ascend import bench
from llama_ascend.config import load_config
from llama_ascend_dev import bench_runs, plots, server_process

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("sweep", "overhead", "cold_warm")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sweep_section(document: dict[str, Any]) -> str:
    runs = [
        bench.Run(**{k: (float("nan") if v is None and k != "load_1m" else v) for k, v in r.items()})
        for r in document["runs"]
    ]
    return (
        f"## Concurrency sweep ({runs[0].client}, {document['input_len']} in / {document['output_len']} out)\n\n"
        + bench.markdown_table(runs)
    )


def overhead_section(result: dict[str, Any]) -> str:
    rows = []
    for name, samples in result["samples"].items():
        per_round = ", ".join(format(sample["output_tok_s"], ".1f") for sample in samples)
        ready = ", ".join(format(sample["ready_s"], ".0f") for sample in samples)
        loads = ", ".join(format(sample["load_1m"], ".1f") if "load_1m" in sample else "-" for sample in samples)
        rows.append(f"| {name} | {per_round} | {result['median_output_tok_s'][name]:.1f} | {ready} | {loads} |")
    return (
        f"## Launcher overhead (random {bench.INPUT_LEN}/{bench.OUTPUT_LEN}, concurrency {result['concurrency']}, "
        f"{result['num_prompts']} requests, {result['rounds']} alternating rounds)\n\n"
        "| launcher | output tok/s per round | median tok/s | time to ready per round (s) | load (1 min) per round |\n"
        "|---|---|---:|---|---|\n"
        + "\n".join(rows)
        + f"\n\nthroughput ratio llama-ascend / raw, median of the rounds' ratios "
        f"({', '.join(format(r, '.3f') for r in result['round_ratios'])}) = **{result['throughput_ratio']:.3f}** "
        "(target >= 0.99)"
    )


def cold_warm_section(result: dict[str, Any]) -> str:
    loads = result.get("load_1m") or {}

    def load(phase: str) -> str:
        return format(loads[phase], ".1f") if phase in loads else "-"

    return (
        "## Cold vs warm start (torch.compile on, compile cache in server.cache_dir)\n\n"
        "| start | time to ready (s) | load (1 min) |\n|---|---:|---:|\n"
        f"| cold (empty cache) | {result['cold_ready_s']:.1f} | {load('cold')} |\n"
        f"| warm (the cache the cold start left) | {result['warm_ready_s']:.1f} | {load('warm')} |\n\n"
        f"warm / cold = **{result['warm_over_cold']:.2f}** (target <= 0.5); "
        f"cache {result['cache_bytes'] / 2**20:.1f} MiB. The warm, compiled server under the overhead load (random "
        f"{bench.INPUT_LEN}/{bench.OUTPUT_LEN}, concurrency {result['concurrency']}, {result['num_prompts']} requests): "
        f"{result['warm_output_tok_s']:.1f} output tok/s"
    )


SECTIONS = {"sweep": sweep_section, "overhead": overhead_section, "cold_warm": cold_warm_section}


def write_summary(out: Path, summary: dict[str, Any], config_name: str, served_name: str) -> str:
    parts = []
    for step in STEPS:
        if step in summary:
            text = SECTIONS[step](summary[step])
            if summary[step].get("from_earlier_run"):
                text += f"\n\n(from an earlier run: {summary[step]['from_earlier_run']})"
            parts.append(text)
    header = (
        f"# llama-ascend bench: {summary['backend']} backend, {served_name}\n\n"
        f"{summary['time']}, config `{config_name}`, {summary['machine']['cpus']} CPUs "
        f"({summary['machine']['platform']}), one server at a time.\n"
    )
    text = header + "\n" + "\n\n".join(parts) + "\n"
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "dev-cpu.yaml"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="overhead rounds (each starts both servers once; even: each goes first equally often)",
    )
    parser.add_argument("--overhead-prompts", type=int, default=32, help="requests per overhead measurement")
    parser.add_argument("--skip", action="append", default=[], choices=STEPS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="llama-ascend-bench-logs-"))
    config = load_config(args.config)
    summary: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": args.config,
        "backend": config.backend,
        "model_dir": str(config.model_dir),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "server_logs": str(logs),
    }
    try:
        earlier = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        earlier = {}
    for step in args.skip:
        if step in earlier:
            summary[step] = {
                **earlier[step],
                "from_earlier_run": earlier[step].get("from_earlier_run") or earlier.get("time"),
            }

    def save() -> str:
        return write_summary(out, summary, args.config, config.model.served_name)

    if "sweep" not in args.skip:
        _, server = bench_runs.raw_and_ours(args.config, [], server_process.free_port(), logs / "sweep-server.log")
        log(f"sweep: starting {server.name}")
        ready = server.start()
        try:
            concurrencies = [int(c) for c in args.concurrency.split(",")]
            log(f"sweep: ready in {ready:.1f} s; concurrency {concurrencies}, datasets {list(bench.DATASETS)}")
            runs = bench.sweep(server.url, tokenizer=str(config.model_dir), concurrencies=concurrencies)
        finally:
            server.stop()
        document = bench.runs_document(
            server.url, runs, input_len=bench.INPUT_LEN, output_len=bench.OUTPUT_LEN, config=args.config, ready_s=ready
        )
        bench.write_results(
            out, "sweep", document, f"# Concurrency sweep ({runs[0].client})\n\n{bench.markdown_table(runs)}"
        )
        summary["sweep"] = document
        save()
        plots.plot_sweep(document, out / "sweep.png")  # beside sweep.md; README shows it

    if "overhead" not in args.skip:
        summary["overhead"] = bench_runs.overhead(
            args.config, rounds=args.rounds, num_prompts=args.overhead_prompts, log_dir=logs, progress=log
        )
        save()

    if "cold_warm" not in args.skip:
        summary["cold_warm"] = bench_runs.cold_warm(
            args.config, ["server.enforce_eager=false"], num_prompts=args.overhead_prompts, log_dir=logs, progress=log
        )

    print(save())
    return 0


if __name__ == "__main__":
    sys.exit(main())
