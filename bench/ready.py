"""`make bench-ready`: time to Ready with and without the warm-up, and the first user request after each.

Every round starts `llama-ascend serve` with the config twice, a fresh process each time:

- listening: Ready by the old definitions, the first `/health` 200 (the chart's startup probe before the warm-up,
  the image's old HEALTHCHECK) and then the first `/v1/models` 200 (the readiness probe); the user request follows.
- warm: Ready by `probe warm` polled from the launch, as the startup probe does, until its 1-token completion came
  back; the user request follows.

The user request: random words, 64 in / 32 out, greedy, streamed (time to first token and latency); a second one
with other words right after it gives the server's steady state. The checks are the probe's own functions, asked
every 0.5 s (the kubelet asks every periodSeconds, 10 s in the chart, so its Ready lands up to that much later).
The two starts alternate which goes first. Results: bench/results/ready.{json,md}, with the machine's 1-minute load
beside each start.

    python bench/ready.py --config config/dev-cpu.yaml [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llama_ascend import bench, probe
from llama_ascend.config import load_config
from llama_ascend.errors import CheckFailed
from llama_ascend_dev import bench_runs, server_process

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ("listening", "warm")
INPUT_WORDS, OUTPUT_TOKENS = 64, 32
READY_TIMEOUT = 1800.0
PROBE_TIMEOUT = 28.0  # the chart's startup probe: timeoutSeconds 30, the probe 2 s under it


def log(message: str) -> None:
    print(f"[bench-ready {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def passes(check: Callable[[probe.Target], str], target: probe.Target, took: dict[str, float]) -> Callable[[], bool]:
    """The check as a predicate; `took["s"]`: how long the last attempt took."""

    def attempt() -> bool:
        started = time.monotonic()
        try:
            check(target)
        except CheckFailed:
            return False
        finally:
            took["s"] = time.monotonic() - started
        return True

    return attempt


def user_request(target: probe.Target, seed: int) -> dict[str, float]:
    api_key = os.environ.get(target.api_key_env) if target.api_key_env else None
    assert target.model is not None
    run = bench.builtin_run(target.url, target.model, api_key, "random", 1, 1, INPUT_WORDS, OUTPUT_TOKENS, seed=seed)
    if run.completed != 1:
        raise CheckFailed(f"{target.url}: the user request failed")
    return {"ttft_ms": run.ttft_p50_ms, "latency_ms": run.duration_s * 1000}


def one_start(definition: str, config: str, round_index: int, log_path: Path) -> dict[str, Any]:
    """Launch, wait for Ready by `definition`, then the first user request and a second one."""
    port = server_process.free_port()
    _, server = bench_runs.raw_and_ours(config, [], port, log_path)
    target = probe.resolve_target(
        "warm", config, host="127.0.0.1", port=port, model=None, api_key_env=None, timeout=PROBE_TIMEOUT
    )
    server.launch()
    launched = time.monotonic()

    took: dict[str, float] = {}

    def seconds_until(check: Callable[[probe.Target], str]) -> float:
        server_process.wait_for(
            passes(check, target, took),
            alive=server.alive,
            log_tail=server.log,
            timeout=READY_TIMEOUT,
            name=server.name,
        )
        return time.monotonic() - launched

    sample: dict[str, Any] = {"round": round_index + 1, "definition": definition}
    try:
        if definition == "listening":
            sample["health_s"] = seconds_until(probe.health)
            sample["ready_s"] = seconds_until(probe.ready)  # /v1/models: the last of the old definitions
        else:
            sample["ready_s"] = seconds_until(probe.warm)
            sample["warm_completion_ms"] = took["s"] * 1000  # the server's first completion, paid by the probe
        sample["load_1m"] = os.getloadavg()[0]
        sample["first"] = user_request(target, seed=2 * round_index + 1)
        sample["second"] = user_request(target, seed=2 * round_index + 2)
    finally:
        server.stop()
    return sample


def medians(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    def median(definition: str, pick: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(pick(s) for s in samples if s["definition"] == definition)

    return {
        definition: {
            "ready_s": median(definition, lambda s: s["ready_s"]),
            "first_ttft_ms": median(definition, lambda s: s["first"]["ttft_ms"]),
            "first_latency_ms": median(definition, lambda s: s["first"]["latency_ms"]),
            "second_ttft_ms": median(definition, lambda s: s["second"]["ttft_ms"]),
            "second_latency_ms": median(definition, lambda s: s["second"]["latency_ms"]),
        }
        for definition in DEFINITIONS
    }


def markdown(document: dict[str, Any]) -> str:
    rows = []
    for s in document["samples"]:
        if s["definition"] == "listening":
            ready = f"/health {s['health_s']:.1f}, /v1/models {s['ready_s']:.1f}"
        else:
            ready = f"probe warm {s['ready_s']:.1f} (its completion {s['warm_completion_ms']:.0f} ms)"
        first, second = s["first"], s["second"]
        rows.append(
            f"| {s['round']} | {s['definition']} | {ready} | {first['ttft_ms']:.0f} | {first['latency_ms']:.0f} | "
            f"{second['ttft_ms']:.0f} | {second['latency_ms']:.0f} | {s['load_1m']:.2f} |"
        )
    m = document["medians"]
    return (
        f"# Ready means warm: time to Ready and the first user request ({document['backend']} backend, "
        f"{document['served_name']})\n\n"
        f"{document['time']}, config `{document['config']}`, {document['machine']['cpus']} CPUs "
        f"({document['machine']['platform']}), one server at a time. User request: random words, {INPUT_WORDS} in / "
        f"{OUTPUT_TOKENS} out, greedy, streamed; the second one (other words) follows the first at once.\n\n"
        "| round | Ready by | seconds from launch to Ready | first request TTFT (ms) | first request latency (ms) "
        "| second request TTFT (ms) | second request latency (ms) | load (1 min) at Ready |\n"
        "|---:|---|---|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        "| medians | Ready by | seconds to Ready | first TTFT (ms) | first latency (ms) | second TTFT (ms) | second latency "
        "(ms) |\n|---|---|---:|---:|---:|---:|---:|\n"
        + "\n".join(
            f"| | {d} | {m[d]['ready_s']:.1f} | {m[d]['first_ttft_ms']:.0f} | {m[d]['first_latency_ms']:.0f} | "
            f"{m[d]['second_ttft_ms']:.0f} | {m[d]['second_latency_ms']:.0f} |"
            for d in DEFINITIONS
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "dev-cpu.yaml"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both starts (default 2)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="llama-ascend-bench-ready-"))
    config = load_config(args.config)
    samples = []
    for round_index in range(args.rounds):
        order = DEFINITIONS if round_index % 2 == 0 else DEFINITIONS[::-1]
        for definition in order:
            log(f"round {round_index + 1}/{args.rounds}: Ready by {definition}")
            samples.append(one_start(definition, args.config, round_index, logs / "servers.log"))
            log(f"  {samples[-1]}")
    document = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": args.config,
        "backend": config.backend,
        "served_name": config.model.served_name,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "server_logs": str(logs),
        "samples": samples,
        "medians": medians(samples),
    }
    (out / "ready.json").write_text(json.dumps(document, indent=2) + "\n")
    text = markdown(document)
    (out / "ready.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
