"""`make bench`: the whole benchmark in one run, one vLLM server at a time, results under bench/results/.

1. sweep: `llama-ascend serve` with the config, then `llama-ascend bench` logic (vLLM's benchmark when installed):
   random 128 in / 64 out and the reference prompts, concurrency 1, 4, 8, 16;
2. launcher overhead: raw `python -m vllm.entrypoints.openai.api_server` (the rendered command) vs
   `llama-ascend serve`, same flags, alternating, `--rounds` times each; throughput ratio (target >= 0.99);
3. cold vs warm: time-to-ready of `llama-ascend serve` with torch.compile on (server.enforce_eager=false) and an
   empty compile cache (server.cache_dir), then again with the cache it left (target warm <= 0.5 x cold).

The logic lives in llama_ascend.bench; this script only orders the steps and writes the summary.
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

from llama_ascend import bench
from llama_ascend.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "dev-cpu.yaml"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--rounds", type=int, default=3, help="overhead rounds (each starts both servers once)")
    parser.add_argument("--skip", action="append", default=[], choices=("sweep", "overhead", "cold-warm"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="llama-ascend-bench-logs-"))
    config = load_config(args.config)
    summary: dict = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": args.config,
        "backend": config.backend,
        "model_dir": str(config.model_dir),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "server_logs": str(logs),
    }
    sections = []

    if "sweep" not in args.skip:
        _, server = bench.raw_and_ours(args.config, [], bench._free_port(), logs / "sweep-server.log")
        log(f"sweep: starting {server.name}")
        ready = server.start()
        try:
            concurrencies = [int(c) for c in args.concurrency.split(",")]
            log(f"sweep: ready in {ready:.1f} s; concurrency {concurrencies}, datasets {list(bench.DATASETS)}")
            runs = bench.sweep(server.url, tokenizer=str(config.model_dir), concurrencies=concurrencies)
        finally:
            server.stop()
        table = bench.markdown_table(runs)
        document = bench.runs_document(server.url, runs, input_len=bench.INPUT_LEN, output_len=bench.OUTPUT_LEN,
                                       config=args.config)  # fmt: skip
        bench.write_results(out, "sweep", document, f"# Concurrency sweep ({runs[0].client})\n\n{table}")
        summary["sweep"] = document
        sections.append(f"## Concurrency sweep ({runs[0].client}, {bench.INPUT_LEN} in / {bench.OUTPUT_LEN} out)\n\n{table}")

    if "overhead" not in args.skip:
        result = bench.overhead(args.config, rounds=args.rounds, log_dir=logs, progress=log)
        summary["overhead"] = result
        rows = []
        for name, samples in result["samples"].items():
            per_round = ", ".join(format(sample["output_tok_s"], ".1f") for sample in samples)
            median_tps, median_ready = result["median_output_tok_s"][name], result["median_ready_s"][name]
            rows.append(f"| {name} | {per_round} | {median_tps:.1f} | {median_ready:.1f} |")
        rows = "\n".join(rows)
        sections.append(
            f"## Launcher overhead (random {bench.INPUT_LEN}/{bench.OUTPUT_LEN}, concurrency {result['concurrency']}, "
            f"{result['num_prompts']} requests, {result['rounds']} alternating rounds)\n\n"
            "| launcher | output tok/s per round | median tok/s | median time to ready (s) |\n|---|---|---:|---:|\n"
            f"{rows}\n\nthroughput ratio llama-ascend / raw = **{result['throughput_ratio']:.3f}** (target >= 0.99)"
        )

    if "cold-warm" not in args.skip:
        result = bench.cold_warm(args.config, ["server.enforce_eager=false"], log_dir=logs, progress=log)
        summary["cold_warm"] = result
        sections.append(
            "## Cold vs warm start (torch.compile on, compile cache in server.cache_dir)\n\n"
            "| start | time to ready (s) |\n|---|---:|\n"
            f"| cold (empty cache) | {result['cold_ready_s']:.1f} |\n| warm (cache from the cold start) | "
            f"{result['warm_ready_s']:.1f} |\n\nwarm / cold = **{result['warm_over_cold']:.2f}** (target <= 0.5); "
            f"cache size {result['cache_bytes'] / 2**20:.1f} MiB"
        )

    header = (f"# llama-ascend bench: {config.backend} backend, {config.model.served_name}\n\n"
              f"{summary['time']}, config `{args.config}`, {summary['machine']['cpus']} CPUs "
              f"({summary['machine']['platform']}). One run of `make bench`; one server at a time.\n")  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print((out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
