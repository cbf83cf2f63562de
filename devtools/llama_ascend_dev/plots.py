"""PNG plots of the benchmark results, written beside their tables (matplotlib, no display needed).

- `plot_sweep(document, path)`: a sweep document (`bench/results/sweep.json`, also `summary.json`'s `sweep`) as three
  panels over concurrency, one line per dataset: output throughput; TTFT p50 and p99; TPOT p50 and p99.
- `plot_fleet(document, path)`: the setups of `make bench-fleet` side by side (`bench/results/fleet.json`: its
  `summary`, per setup: `later_ttft_p50_ms`, `later_ttft_p99_ms`, `first_ttft_p50_ms`, `output_throughput`), as bars:
  later-turn TTFT p50 and p99, first-turn TTFT p50, output throughput.

Both return the series drawn per panel (panel title -> line labels), which the tests count.

    python -m llama_ascend_dev.plots                 # bench/results/sweep.json -> sweep.png (and fleet.json -> fleet.png)
    python -m llama_ascend_dev.plots --results DIR
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt

from llama_ascend_dev import ROOT

RESULTS = ROOT / "bench" / "results"
Series = dict[str, list[str]]


def _value(run: dict[str, Any], key: str) -> float:
    value = run.get(key)
    return math.nan if value is None else float(value)


def _by(runs: Iterable[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(str(run[key]), []).append(run)
    return {name: sorted(items, key=lambda r: r["concurrency"]) for name, items in groups.items()}


def _draw(
    path: Path,
    title: str,
    groups: dict[str, list[dict[str, Any]]],
    panels: list[tuple[str, str, list[tuple[str, str]]]],
) -> Series:
    """One figure, a panel per (title, y label, [(run field, line suffix)]), one line per group and field; `_ms`
    fields on a panel labelled "s" are drawn in seconds."""
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), constrained_layout=True)
    drawn: Series = {}
    for ax, (panel, ylabel, fields) in zip(axes, panels, strict=True):
        for index, (group, runs) in enumerate(groups.items()):
            color = f"C{index}"
            x = [r["concurrency"] for r in runs]
            for field, suffix in fields:
                style = "--" if suffix == "p99" else "-"
                label = f"{group} {suffix}".strip()
                scale = 1000.0 if ylabel == "s" and field.endswith("_ms") else 1.0
                ax.plot(x, [_value(r, field) / scale for r in runs], style, marker="o", color=color, label=label)
        ax.set_title(panel)
        ax.set_xlabel("concurrency")
        ax.set_ylabel(ylabel)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["concurrency"] for runs in groups.values() for r in runs}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        drawn[panel] = [str(line.get_label()) for line in ax.get_lines()]
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return drawn


def plot_sweep(document: dict[str, Any], path: Path) -> Series:
    runs = [r for r in document["runs"] if r.get("completed")]
    title = (
        f"llama-ascend bench {str(document.get('time', ''))[:10]}: {document.get('config', '')}, "
        f"{document.get('input_len')} in / {document.get('output_len')} out"
    )
    return _draw(
        path,
        title,
        _by(runs, "dataset"),
        [
            ("Output throughput", "output tokens / s", [("output_throughput", "")]),
            ("Time to first token", "s", [("ttft_p50_ms", "p50"), ("ttft_p99_ms", "p99")]),
            ("Time per output token", "ms", [("tpot_p50_ms", "p50"), ("tpot_p99_ms", "p99")]),
        ],
    )


def plot_fleet(document: dict[str, Any], path: Path) -> Series:
    summary = document["summary"]
    setups = list(summary)
    panels = [
        ("Later turns: time to first token", "s", ["later_ttft_p50_ms", "later_ttft_p99_ms"]),
        ("First turns: time to first token", "s", ["first_ttft_p50_ms"]),
        ("Output throughput", "output tokens / s", ["output_throughput"]),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), constrained_layout=True)
    drawn: Series = {}
    for ax, (panel, ylabel, fields) in zip(axes, panels, strict=True):
        width = 0.8 / len(fields)
        for offset, field in enumerate(fields):
            scale = 1000.0 if field.endswith("_ms") else 1.0
            values = [_value(summary[s], field) / scale for s in setups]
            label = field.removesuffix("_ms").split("_")[-1] if len(fields) > 1 else panel
            ax.bar([i + offset * width for i in range(len(setups))], values, width, label=label)
        ax.set_xticks([i + width * (len(fields) - 1) / 2 for i in range(len(setups))], setups)
        ax.set_title(panel)
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
        if len(fields) > 1:
            ax.legend(fontsize="small")
        drawn[panel] = setups
    figure.suptitle(
        f"llama-ascend bench-fleet: {document.get('replicas')} replicas, {document.get('conversations')} "
        f"conversations x {document.get('turns')} turns"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS), help="the directory with sweep.json (and fleet.json)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    wrote = 0
    for name, plot in (("sweep", plot_sweep), ("fleet", plot_fleet)):
        source = results / f"{name}.json"
        if source.is_file():
            plot(json.loads(source.read_text()), results / f"{name}.png")
            print(f"wrote {results / f'{name}.png'}")
            wrote += 1
    if not wrote:
        print(f"error: no sweep.json or fleet.json in {results}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
