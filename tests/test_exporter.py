"""The exporter scraped over loopback: npu-exporter metric names/labels from real npu-smi text, preflight, weights."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import DEV_CONFIG, ROOT
from llama_ascend import exporter, npu_smi, preflight

NPU_SMI = Path(__file__).parent / "fixtures" / "npu-smi"
CARD_LABELS = {"id", "model_name", "vdie_id", "pcie_bus_info", "namespace", "pod_name", "container_name"}


def scrape(url: str) -> dict[str, list]:
    """{metric name: [(labels, value), ...]} from a real HTTP scrape."""
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def by_id(samples: list) -> dict[str, float]:
    return {labels["id"]: value for labels, value in samples}


@pytest.fixture
def running_exporter(tmp_path: Path):
    """`llama-ascend exporter` as a subprocess on a free loopback port, reading a copy of a saved table."""
    table = tmp_path / "npu-smi.txt"
    shutil.copy(NPU_SMI / "910b3-8cards-one-busy.txt", table)
    report = tmp_path / "preflight.json"
    textfile = tmp_path / "llama_ascend_fetch.prom"
    cmd = [
        sys.executable,
        "-m",
        "llama_ascend",
        "exporter",
        "--config",
        str(DEV_CONFIG),
        "--port",
        "0",
        "--interval",
        "0",
        "--npu-smi-output",
        str(table),
        "--preflight-report",
        str(report),
        "--textfile",
        str(textfile),
    ]
    env = {
        "POD_NAMESPACE": "llm",
        "POD_NAME": "llama-0",
        "LLAMA_ASCEND_CONTAINER_NAME": "server",
        "PATH": "/usr/bin:/bin",
    }
    process = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        line = process.stderr.readline()
        assert "serving http://127.0.0.1:" in line, line
        url = line.split("serving ", 1)[1].strip()
        yield url, table, report, textfile
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_npu_metrics_with_npu_exporter_names(running_exporter) -> None:
    url, *_ = running_exporter
    metrics = scrape(url)
    assert metrics["llama_ascend_npu_smi_up"][0][1] == 1.0
    assert metrics["machine_npu_nums"][0][1] == 8.0
    for name in (
        "npu_chip_info_hbm_used_memory",
        "npu_chip_info_hbm_total_memory",
        "npu_chip_info_utilization",
        "npu_chip_info_power",
        "npu_chip_info_temperature",
        "npu_chip_info_health_status",
    ):
        assert len(metrics[name]) == 8, name
        assert set(metrics[name][0][0]) == CARD_LABELS, name
    assert by_id(metrics["npu_chip_info_hbm_used_memory"])["2"] == 41052.0
    assert set(by_id(metrics["npu_chip_info_hbm_total_memory"]).values()) == {65536.0}
    assert by_id(metrics["npu_chip_info_power"])["0"] == 93.6
    assert by_id(metrics["npu_chip_info_temperature"])["0"] == 40.0
    assert set(by_id(metrics["npu_chip_info_health_status"]).values()) == {1.0}
    labels = metrics["npu_chip_info_health_status"][0][0]
    assert (labels["model_name"], labels["pcie_bus_info"]) == ("910B3", "0000:C1:00.0")  # no board info from a file
    assert (labels["namespace"], labels["pod_name"], labels["container_name"]) == ("llm", "llama-0", "server")
    names = metrics["npu_chip_info_name"]
    assert {labels["name"] for labels, _ in names} == {"910B3"} and "model_name" not in names[0][0]
    # 910B has no DDR: npu-exporter reports no npu_chip_info_used_memory for it, and neither do we.
    assert "npu_chip_info_used_memory" not in metrics
    processes = metrics["npu_chip_info_process_info"]
    busy = [(labels["process_id"], value) for labels, value in processes if labels["id"] == "2"]
    assert busy == [("1333928", 37709.0)]
    assert by_id(metrics["npu_chip_info_process_info_num"]) == {str(i): (1.0 if i == 2 else 0.0) for i in range(8)}


def test_reads_npu_smi_again_and_reports_failures(running_exporter) -> None:
    url, table, *_ = running_exporter
    shutil.copy(NPU_SMI / "910b3-degraded-health.txt", table)
    metrics = scrape(url)
    assert by_id(metrics["npu_chip_info_health_status"]) == {"0": 0.0, "1": 0.0}
    assert "1" not in by_id(metrics["npu_chip_info_power"])  # NA is left out, not reported as 0
    shutil.copy(NPU_SMI / "error-dcmi-8005.txt", table)
    metrics = scrape(url)
    assert metrics["llama_ascend_npu_smi_up"][0][1] == 0.0
    assert "npu_chip_info_health_status" not in metrics


def test_preflight_and_weights_metrics(running_exporter, standin_model_dir: Path) -> None:
    url, _, report, _ = running_exporter
    metrics = scrape(url)
    assert metrics["llama_ascend_preflight_report_present"][0][1] == 0.0
    assert metrics["llama_ascend_model_weights_complete"][0][1] == 1.0  # the dev profile's stand-in
    findings = [
        preflight.Finding("port", True, "free"),
        preflight.Finding("hbm", False, "too small", "cause", "fix"),
        preflight.Finding("card-busy", False, "no process table", severity="warning"),
    ]
    preflight.save_report(findings, report)
    metrics = scrape(url)
    assert metrics["llama_ascend_preflight_passed"][0][1] == 0.0
    failed = {labels["check"]: value for labels, value in metrics["llama_ascend_preflight_check_failed"]}
    assert failed == {"port": 0.0, "hbm": 1.0, "card-busy": 0.0}
    recorded = json.loads(report.read_text())["time"]  # the report's own time, not the wall clock
    assert metrics["llama_ascend_preflight_timestamp_seconds"][0][1] == recorded


def test_fetch_textfile_is_republished(running_exporter, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

    url, _, _, textfile = running_exporter
    assert not any(name.startswith("llama_ascend_fetch") for name in scrape(url))  # nothing fetched yet
    registry = CollectorRegistry()  # what fetch.write_metrics leaves on the volume
    key = {"source": "modelscope", "model": "LLM-Research/Meta-Llama-3.1-8B-Instruct@master"}
    Counter("llama_ascend_fetch_downloaded_bytes", "bytes", list(key), registry=registry).labels(**key).inc(16060522240)
    Gauge("llama_ascend_fetch_duration_seconds", "s", list(key), registry=registry).labels(**key).set(812.5)
    write_to_textfile(str(textfile), registry)
    metrics = scrape(url)
    assert metrics["llama_ascend_fetch_downloaded_bytes_total"] == [(key, 16060522240.0)]
    assert metrics["llama_ascend_fetch_duration_seconds"] == [(key, 812.5)]
    assert metrics["machine_npu_nums"][0][1] == 8.0  # alongside the NPU metrics


def test_board_info_gives_npu_exporter_model_name_and_vdie_id() -> None:
    board_text = (NPU_SMI / "board-910b3-npu0-chip0.txt").read_text()
    info = npu_smi.parse((NPU_SMI / "910b3-2cards-idle-crlf.txt").read_text())
    asked: list[tuple[int, int]] = []

    def read_board(chip: npu_smi.Chip) -> str | None:
        asked.append((chip.npu_id, chip.chip_id))
        return board_text if chip.npu_id == 0 else None  # card 1: board query unsupported

    collector = exporter.NpuCollector(lambda: info, read_board, min_interval=60)
    for _ in range(2):
        families = {f.name: f for f in collector.collect()}
    labels = {s.labels["id"]: s.labels for s in families["npu_chip_info_health_status"].samples}
    assert labels["0"]["model_name"] == "910B3-Ascend-V1"
    assert labels["0"]["vdie_id"] == "42C711D4-20B03704-4A10C8D4-14CC040A-D2102003"
    assert (labels["1"]["model_name"], labels["1"]["vdie_id"]) == ("910B3", "")
    assert asked == [(0, 0), (1, 0)]  # static: asked once per chip, not per scrape


def test_npu_smi_is_read_at_most_once_per_interval() -> None:
    info = npu_smi.parse((NPU_SMI / "910b-reference-vllm.txt").read_text())
    reads: list[int] = []
    now = [100.0]

    def read_table() -> npu_smi.NpuSmiInfo:
        reads.append(1)
        return info

    collector = exporter.NpuCollector(read_table, min_interval=5, clock=lambda: now[0])
    list(collector.collect())
    list(collector.collect())
    now[0] += 5
    list(collector.collect())
    assert len(reads) == 2


def test_a3_chips_and_310p_ddr() -> None:
    a3 = npu_smi.parse((NPU_SMI / "a3-2npus-4chips.txt").read_text())
    families = {f.name: f for f in exporter.NpuCollector(lambda: a3).collect()}
    ids = [s.labels["id"] for s in families["npu_chip_info_hbm_used_memory"].samples]
    assert ids == ["0", "1", "2", "3"]  # physical chip ids, two per NPU
    duo = npu_smi.parse((NPU_SMI / "310p3-duo.txt").read_text())
    families = {f.name: f for f in exporter.NpuCollector(lambda: duo).collect()}
    assert [s.value for s in families["npu_chip_info_total_memory"].samples] == [21534.0, 21534.0]
    assert families["npu_chip_info_hbm_total_memory"].samples == []


def test_health_codes() -> None:
    assert [exporter.health_code(h) for h in ("OK", "Warning", "Alarm", "Critical", "UNKNOWN")] == [1, 0, 0, 0, -1]
