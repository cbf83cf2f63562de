"""bench: tiny sweeps against the real dev server with both clients; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, cli
from llama_ascend import bench


def test_percentile_interpolates_like_numpy() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert bench.percentile(values, 50) == 25.0
    assert bench.percentile(values, 0) == 10.0 and bench.percentile(values, 100) == 40.0
    assert bench.percentile(values, 99) == pytest.approx(39.7)
    assert bench.percentile([5.0], 99) == 5.0


def test_num_prompts_scale_with_concurrency() -> None:
    assert [bench.num_prompts_for(c) for c in bench.CONCURRENCY] == [8, 16, 32, 32]


def test_markdown_table_marks_failures() -> None:
    run = bench.Run("random", 4, 16, 15, 1, 10.0, 960, 96.0, 1.5, 100.0, 200.0, 30.0, 40.0, bench.BUILTIN_CLIENT)
    table = bench.markdown_table([run])
    assert table.splitlines()[0].startswith("| dataset | concurrency |")
    assert "| random | 4 | 15/16 (1 failed) | 96.0 | 1.50 | 100 | 200 | 30.0 | 40.0 |" in table


def test_vllm_batch_entry_needs_a_plan() -> None:
    done = subprocess.run([sys.executable, "-m", "llama_ascend.bench"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and "usage: python -m llama_ascend.bench vllm-batch" in done.stderr


def test_unknown_dataset_is_a_usage_error() -> None:
    done = cli("bench", "--url", "http://127.0.0.1:9", "--datasets", "sharegpt")
    assert done.returncode == 2 and "unknown sharegpt" in done.stderr


def _sweep(dev_server, tmp_path: Path, *extra: str) -> dict:
    done = cli("bench", "--url", dev_server.url, "--api-key", dev_server.api_key, "--concurrency", "1,2",
               "--num-prompts", "2", "--input-len", "16", "--output-len", "8", "--out", str(tmp_path), *extra,
               timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| dataset | concurrency |" in done.stdout
    assert (tmp_path / "sweep.md").read_text().count("\n| ") == 5  # header + 4 runs
    return json.loads((tmp_path / "sweep.json").read_text())


def _check_runs(data: dict, client: str) -> None:
    runs = data["runs"]
    assert [(r["dataset"], r["concurrency"]) for r in runs] == [("random", 1), ("random", 2), ("reference", 1), ("reference", 2)]
    for r in runs:
        assert r["client"] == client
        assert (r["completed"], r["failed"]) == (2, 0)
        assert r["output_tokens"] == 16  # 2 requests x 8 tokens: ignore_eos holds the length
        assert r["output_throughput"] > 0 and r["request_throughput"] > 0
        assert r["ttft_p99_ms"] >= r["ttft_p50_ms"] > 0
        assert r["tpot_p99_ms"] >= r["tpot_p50_ms"] > 0


@pytest.mark.e2e
def test_builtin_client_sweep(dev_server, tmp_path: Path) -> None:
    _check_runs(_sweep(dev_server, tmp_path, "--client", "builtin"), bench.BUILTIN_CLIENT)


@pytest.mark.e2e
def test_vllm_benchmark_sweep(dev_server, standin_model_dir: Path, tmp_path: Path) -> None:
    if not bench.vllm_bench_available():
        pytest.skip("this vLLM has no vllm.benchmarks")
    _check_runs(_sweep(dev_server, tmp_path, "--tokenizer", str(standin_model_dir)), bench.VLLM_CLIENT)
