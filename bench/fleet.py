"""`make bench-fleet`: routing policies side by side on one fleet, in one run.

Two replicas of the config (pinned to their own cores where the host has enough) behind two routers, vLLM's
router with `cache_aware` and with `round_robin`, and, as the baseline, one replica called directly. The workload is
multi-turn chat: each conversation has a long system prompt of its own and several turns, more conversations in
flight than replicas, so round-robin scatters a conversation's turns while cache-aware keeps them where the prefix
is cached. Measured per setup: time to first token of the later turns (2..N, where a prefix hit pays off) p50/p99,
of the first turns, output throughput, errors; each setup's conversations are new (no cache carries over), and the
setups alternate over the rounds. Results: bench/results/fleet.{json,md,png}, with the machine's load.

The system prompt is long (1,200 words) so that its prefill dominates a turn's time to first token: with 300 words
(a few hundred tokens, under a second of prefill on one core of the 2-core development machine) the queueing of four
conversations on two one-core replicas was as large as the prefix hit, and one run gave cache_aware / round_robin
1.14 (2026-12-02).

    python bench/fleet.py --config config/dev-cpu.yaml [--conversations 4] [--turns 4] [--words 1200] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from llama_ascend.bench import percentile
from llama_ascend_dev import plots
from llama_ascend_dev.fleet import Fleet
from llama_ascend_dev.server_process import free_port, free_ports

ROOT = Path(__file__).resolve().parent.parent
SETUPS = ("cache_aware", "round_robin", "one replica")
WORDS = [
    "parcel",
    "carrier",
    "invoice",
    "customs",
    "warehouse",
    "route",
    "driver",
    "depot",
    "refund",
    "claim",
    "signature",
    "weekend",
    "express",
    "address",
    "label",
    "tracking",
    "pallet",
    "freight",
    "priority",
    "damage",
    "insurance",
    "schedule",
    "holiday",
    "return",
    "pickup",
]


@dataclass
class Turn:
    conversation: int
    turn: int
    ttft_s: float
    seconds: float
    output_tokens: int
    error: str = ""


def system_prompt(rng: random.Random, words: int) -> str:
    rules = " ".join(rng.choice(WORDS) for _ in range(words))
    return f"You are the assistant of a shipping company. Follow these notes exactly: {rules}."


def chat_turn(url: str, model: str, messages: list[dict[str, str]], max_tokens: int) -> tuple[float, float, str, int]:
    """One streamed chat turn: (seconds to the first token, seconds in all, the reply, output tokens)."""
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}  # fmt: skip
    started = time.monotonic()
    first = None
    text, tokens = [], 0
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                content = choice.get("delta", {}).get("content")
                if content:
                    first = first or time.monotonic()
                    text.append(content)
    ended = time.monotonic()
    return (first or ended) - started, ended - started, "".join(text), tokens


def conversation(url: str, model: str, index: int, seed: int, turns: int, words: int, out: list[Turn]) -> None:
    rng = random.Random(seed)
    messages = [{"role": "system", "content": system_prompt(rng, words)}]
    for turn in range(1, turns + 1):
        messages.append({"role": "user", "content": f"Question {turn}: what about the {rng.choice(WORDS)}?"})
        try:
            ttft, seconds, reply, tokens = chat_turn(url, model, messages, max_tokens=24)
        except httpx.HTTPError as exc:
            out.append(Turn(index, turn, float("nan"), float("nan"), 0, type(exc).__name__))
            return
        messages.append({"role": "assistant", "content": reply})
        out.append(Turn(index, turn, ttft, seconds, tokens))


def run_setup(url: str, model: str, conversations: int, turns: int, words: int, seed: int) -> dict[str, Any]:
    """Every conversation at once (each its turns in order); the summary of the turns."""
    turns_done: list[Turn] = []
    threads = [
        threading.Thread(target=conversation, args=(url, model, i, seed * 1000 + i, turns, words, turns_done))
        for i in range(conversations)
    ]
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    ok = [t for t in turns_done if not t.error]
    later = [t.ttft_s * 1000 for t in ok if t.turn > 1]
    first = [t.ttft_s * 1000 for t in ok if t.turn == 1]
    return {
        "conversations": conversations,
        "turns": turns,
        "requests": conversations * turns,
        "completed": len(ok),
        "errors": conversations * turns - len(ok),
        "wall_s": wall,
        "output_throughput": sum(t.output_tokens for t in ok) / wall,
        "later_ttft_p50_ms": percentile(later, 50) if later else None,
        "later_ttft_p99_ms": percentile(later, 99) if later else None,
        "first_ttft_p50_ms": percentile(first, 50) if first else None,
        "load_1m": [load_before, os.getloadavg()[0]],
        "turn_log": [asdict(t) for t in turns_done],
    }


def summarize(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per setup: the median over the rounds of each figure."""
    out = {}
    for setup in SETUPS:
        runs = [r[setup] for r in rounds]

        def median(key: str, runs: list[dict[str, Any]] = runs) -> float | None:
            values = [r[key] for r in runs if r[key] is not None]
            return statistics.median(values) if values else None

        out[setup] = {
            "later_ttft_p50_ms": median("later_ttft_p50_ms"),
            "later_ttft_p99_ms": median("later_ttft_p99_ms"),
            "first_ttft_p50_ms": median("first_ttft_p50_ms"),
            "output_throughput": median("output_throughput"),
            "errors": sum(r["errors"] for r in runs),
            "requests": sum(r["requests"] for r in runs),
        }
    return out


def markdown(document: dict[str, Any]) -> str:
    s = document["summary"]
    rows = [
        "| setup | later-turn TTFT p50 (ms) | later-turn TTFT p99 (ms) | first-turn TTFT p50 (ms) | output tok/s | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for setup in SETUPS:
        r = s[setup]
        rows.append(
            f"| {setup} | {r['later_ttft_p50_ms']:.0f} | {r['later_ttft_p99_ms']:.0f} | {r['first_ttft_p50_ms']:.0f} "
            f"| {r['output_throughput']:.1f} | {r['errors']}/{r['requests']} |"
        )
    ratio = s["cache_aware"]["later_ttft_p50_ms"] / s["round_robin"]["later_ttft_p50_ms"]
    per_round = ", ".join(
        f"{r['cache_aware']['later_ttft_p50_ms'] / r['round_robin']['later_ttft_p50_ms']:.2f}"
        for r in document["rounds"]
    )
    loads = [f"{v:.1f}" for r in document["rounds"] for run in r.values() for v in run["load_1m"]]
    return (
        f"# llama-ascend bench-fleet: {document['replicas']} replicas of {document['config']}\n\n"
        f"{document['time']}, {document['machine']['cpus']} CPUs ({document['machine']['platform']}), "
        f"{document['conversations']} conversations in flight x {document['turns']} turns, system prompts of "
        f"{document['words']} words, {len(document['rounds'])} rounds (setups alternating); medians over the rounds; "
        f"1-minute load average during the runs: {min(loads)}-{max(loads)}.\n\n"
        + "\n".join(rows)
        + f"\n\nlater-turn TTFT p50, cache_aware / round_robin = **{ratio:.2f}** (of the medians; round by round: "
        f"{per_round})\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "dev-cpu.yaml"))
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--conversations", type=int, default=4, help="in flight at once (more than replicas)")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--words", type=int, default=1200, help="system prompt length in words")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    logs = Path(tempfile.mkdtemp(prefix="llama-ascend-bench-fleet-logs-"))
    print(f"[bench-fleet] server and router logs in {logs}", file=sys.stderr, flush=True)
    router_port, *replica_ports = free_ports(1 + args.replicas)
    fleet = Fleet(Path(args.config), args.replicas, router_port, replica_ports, log_dir=logs)
    print(f"[bench-fleet] starting {args.replicas} replicas and the routers", file=sys.stderr, flush=True)
    fleet.start()
    try:
        model = httpx.get(f"{fleet.url}/v1/models", timeout=60).json()["data"][0]["id"]
        round_robin = fleet.start_router(free_port(), ["router.policy=round_robin"], name="round-robin router")
        urls = {"cache_aware": fleet.url, "round_robin": round_robin.server.url, "one replica": fleet.replica_urls()[0]}
        chat_turn(urls["one replica"], model, [{"role": "user", "content": "warm up"}], 4)
        rounds = []
        for index in range(args.rounds):
            order = SETUPS[index % len(SETUPS) :] + SETUPS[: index % len(SETUPS)]
            results = {}
            for setup in order:
                print(f"[bench-fleet] round {index + 1}/{args.rounds}: {setup}", file=sys.stderr, flush=True)
                seed = 1 + index * len(SETUPS) + SETUPS.index(setup)  # new conversations: no cache carries over
                results[setup] = run_setup(urls[setup], model, args.conversations, args.turns, args.words, seed)
            rounds.append(results)
    finally:
        fleet.stop()
    document = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": args.config,
        "replicas": args.replicas,
        "conversations": args.conversations,
        "turns": args.turns,
        "words": args.words,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rounds": rounds,
        "summary": summarize(rounds),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(document, indent=2) + "\n")
    text = markdown(document)
    (out / "fleet.md").write_text(text)
    plots.plot_fleet(document, out / "fleet.png")
    print(text)
    return 0 if all(s["errors"] == 0 for s in document["summary"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
