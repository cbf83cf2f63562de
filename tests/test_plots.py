"""llama_ascend_dev.plots: plots from small hand-made result documents; the file is a PNG and has the series asked for."""

from __future__ import annotations

from pathlib import Path

from llama_ascend_dev import ROOT, plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(dataset: str, concurrency: int, tok_s: float) -> dict[str, object]:
    return {
        "dataset": dataset,
        "concurrency": concurrency,
        "num_prompts": 4 * concurrency,
        "completed": 4 * concurrency,
        "failed": 0,
        "output_throughput": tok_s,
        "ttft_p50_ms": 100.0 * concurrency,
        "ttft_p99_ms": 150.0 * concurrency,
        "tpot_p50_ms": 20.0 + concurrency,
        "tpot_p99_ms": 30.0 + concurrency,
    }


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_SIGNATURE


def test_sweep_plot_has_a_line_per_dataset_and_percentile(tmp_path: Path) -> None:
    document = {
        "time": "2026-12-01T00:00:00+0000",
        "config": "config/dev-cpu.yaml",
        "input_len": 128,
        "output_len": 64,
        "runs": [
            _run("random", 1, 10.0),
            _run("random", 8, 18.0),
            _run("reference", 1, 15.0),
            _run("reference", 8, 30.0),
        ],
    }
    path = tmp_path / "sweep.png"
    series = plots.plot_sweep(document, path)
    assert _is_png(path)
    assert series == {
        "Output throughput": ["random", "reference"],
        "Time to first token": ["random p50", "random p99", "reference p50", "reference p99"],
        "Time per output token": ["random p50", "random p99", "reference p50", "reference p99"],
    }


def test_a_run_that_completed_nothing_is_left_out(tmp_path: Path) -> None:
    failed = {**_run("random", 16, 0.0), "completed": 0}
    series = plots.plot_sweep({"runs": [_run("random", 1, 10.0), failed]}, tmp_path / "sweep.png")
    assert series["Output throughput"] == ["random"]


def test_fleet_plot_puts_the_setups_side_by_side(tmp_path: Path) -> None:
    def setup(later: float, tok_s: float) -> dict[str, float]:
        return {"later_ttft_p50_ms": later, "later_ttft_p99_ms": 2 * later, "first_ttft_p50_ms": 900.0,
                "output_throughput": tok_s}  # fmt: skip

    document = {
        "replicas": 2,
        "conversations": 4,
        "turns": 4,
        "summary": {
            "cache_aware": setup(200.0, 30.0),
            "round_robin": setup(700.0, 28.0),
            "one replica": setup(900.0, 15.0),
        },
    }
    path = tmp_path / "fleet.png"
    series = plots.plot_fleet(document, path)
    assert _is_png(path)
    assert list(series) == ["Later turns: time to first token", "First turns: time to first token", "Output throughput"]
    assert all(bars == ["cache_aware", "round_robin", "one replica"] for bars in series.values())


def test_cli_renders_the_committed_results(tmp_path: Path) -> None:
    """`python -m llama_ascend_dev.plots --results DIR` on a copy of the committed sweep.json."""
    import shutil

    shutil.copy(ROOT / "bench" / "results" / "sweep.json", tmp_path / "sweep.json")
    assert plots.main(["--results", str(tmp_path)]) == 0
    assert _is_png(tmp_path / "sweep.png")
    assert not (tmp_path / "fleet.png").exists()
