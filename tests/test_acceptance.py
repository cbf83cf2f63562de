"""The acceptance harness (`make test-npu`'s steps) run for real against the CPU stand-in: the same preflight, serve,
smoke, verify and bench commands, the same JSON record. What differs on the NPU host is the profile and the node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DEV_CONFIG
from llama_ascend_dev import acceptance

pytestmark = pytest.mark.e2e


def test_the_harness_passes_every_step_on_the_stand_in_and_records_them(
    standin_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "npu-host.json"
    record = acceptance.run(
        DEV_CONFIG,
        out,
        ["server.host=127.0.0.1"],
        bench_args=(
            "--concurrency",
            "1,2",
            "--datasets",
            "random",
            "--num-prompts",
            "2",
            "--input-len",
            "16",
            "--output-len",
            "8",
        ),
    )
    saved = json.loads(out.read_text())
    assert saved["passed"] is True, saved
    assert [s["name"] for s in saved["steps"]] == ["preflight", "serve", "smoke", "verify", "bench"]
    steps = {s["name"]: s["result"] for s in saved["steps"]}
    assert all(f["ok"] or f["severity"] == "warning" for f in steps["preflight"]["findings"])
    assert steps["serve"]["ready_s"] > 0
    assert steps["verify"]["passed"] is True and len(steps["verify"]["prompts"]) == 3
    runs = steps["bench"]["runs"]
    assert [r["concurrency"] for r in runs] == [1, 2] and all(r["completed"] == 2 and r["failed"] == 0 for r in runs)
    assert record.load_1m_end is not None


def test_a_failed_preflight_ends_the_run_before_a_server_starts(standin_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "npu-host.json"
    record = acceptance.run(DEV_CONFIG, out, [f"model.path={tmp_path / 'no-model'}"])
    saved = json.loads(out.read_text())
    assert saved["passed"] is False and [s["name"] for s in saved["steps"]] == ["preflight"]
    assert saved["steps"][0]["result"]["exit"] == 3
    assert not record.passed
