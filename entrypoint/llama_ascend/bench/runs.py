"""One run of the sweep: the workload's defaults, what a run measures, its statistics and the report (a Markdown table
and a JSON document). Light: no HTTP client, no vLLM."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CONCURRENCY = (1, 4, 8, 16)
DATASETS = ("random", "reference")
INPUT_LEN = 128
OUTPUT_LEN = 64
VLLM_CLIENT = "vllm bench serve"
BUILTIN_CLIENT = "llama-ascend async client"


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
