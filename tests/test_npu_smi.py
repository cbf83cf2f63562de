"""The npu-smi parser on the real table from the original deployment, the other layouts, and broken output."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from llama_ascend import npu_smi

FIXTURES = Path(__file__).parent / "fixtures" / "npu-smi"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_reference_table_from_the_original_deployment() -> None:
    info = npu_smi.parse(fixture("910b-reference-vllm.txt"))
    assert info.version is None  # the README dropped the banner
    [chip] = info.chips
    assert (chip.npu_id, chip.chip_id, chip.phy_id) == (0, 0, 0)
    assert chip.name == "Ascend910" and chip.health == "OK" and chip.healthy
    assert chip.bus_id == "0000:0A:00.0"
    assert (chip.power_w, chip.temperature_c, chip.aicore_percent) == (166.3, 45.0, 0.0)
    assert (chip.hbm_used_mb, chip.hbm_total_mb) == (59678, 65536)
    assert (chip.memory_used_mb, chip.memory_total_mb) == (0, 0)
    [process] = info.processes
    assert (process.pid, process.name, process.memory_mb) == (32596, "VLLMEngineCor", 56624)
    assert info.processes_on(chip) == [process]


def test_eight_910b3_cards_with_one_busy() -> None:
    info = npu_smi.parse(fixture("910b3-8cards-one-busy.txt"))
    assert info.version == "23.0.6"
    assert [c.phy_id for c in info.chips] == list(range(8))
    assert {c.name for c in info.chips} == {"910B3"}
    assert info.chip_by_phy_id(2).hbm_used_mb == 41052  # "41052/ 65536": no space before the slash
    busy = {c.phy_id: info.processes_on(c) for c in info.chips}
    assert [p.pid for p in busy[2]] == [1333928]
    assert all(busy[i] == [] for i in range(8) if i != 2)


def test_crlf_output_parses_like_lf() -> None:
    raw = (FIXTURES / "910b3-2cards-idle-crlf.txt").read_bytes().decode()
    assert "\r\n" in raw
    info = npu_smi.parse(raw)
    assert [c.hbm_total_mb for c in info.chips] == [65536, 65536]
    assert info.processes == [] and info.version == "24.1.rc2"


def test_without_a_process_table_processes_are_unknown_not_empty() -> None:
    info = npu_smi.parse(fixture("910b3-no-process-table.txt"))
    assert len(info.chips) == 1
    assert info.processes is None
    assert info.processes_on(info.chips[0]) is None


def test_a3_two_chips_per_npu_with_phy_ids() -> None:
    info = npu_smi.parse(fixture("a3-2npus-4chips.txt"))
    assert [(c.npu_id, c.chip_id, c.phy_id) for c in info.chips] == [(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3)]
    assert info.chips[1].power_w is None  # "-": power is reported on the first chip only
    assert info.chips[0].aicore_percent == 17.0
    assert [p.pid for p in info.processes_on(info.chips[1])] == [3328327]
    assert [p.pid for p in info.processes_on(info.chips[0])] == [3325989, 3330598]
    assert info.processes_on(info.chips[2]) == []


def test_310p_has_ddr_and_no_hbm() -> None:
    info = npu_smi.parse(fixture("310p3-duo.txt"))
    assert [(c.npu_id, c.chip_id, c.device_id) for c in info.chips] == [(2, 0, 0), (2, 1, 1)]
    chip = info.chips[0]
    assert (chip.memory_used_mb, chip.memory_total_mb) == (1655, 21534)
    assert chip.hbm_total_mb is None and chip.power_w is None


def test_degraded_health_is_kept_verbatim() -> None:
    info = npu_smi.parse(fixture("910b3-degraded-health.txt"))
    assert [(c.health, c.healthy) for c in info.chips] == [("Warning", False), ("Critical", False)]
    assert info.chips[1].power_w is None


def test_noise_around_the_table_is_tolerated() -> None:
    text = (
        "DrvMngGetConsoleLogLevel failed. (g_conLogLevel=3)\n\t\n" + fixture("910b3-8cards-one-busy.txt") + "\nCANN:\n"
    )
    info = npu_smi.parse(text)
    assert len(info.chips) == 8
    assert any("DrvMngGetConsoleLogLevel" in note for note in info.notes)


@pytest.mark.parametrize(
    ("name", "message", "cause"),
    [
        ("error-dcmi-8005.txt", "-8005", "held by another container"),
        ("error-dcmi-8020.txt", "-8020", "in use by another process"),
        ("error-driver-lib-missing.txt", "libdrvdsmi_host.so", "driver libraries are not mounted"),
        ("malformed-not-a-table.txt", "502 Bad Gateway", "no NPU is visible"),
        ("malformed-truncated.txt", "truncated", "interrupted"),
        ("malformed-garbled-numbers.txt", "'9?.6' is not a number", "truncated or in a layout"),
    ],
)
def test_broken_output_names_the_cause_and_a_fix(name: str, message: str, cause: str) -> None:
    with pytest.raises(npu_smi.NpuSmiError) as caught:
        npu_smi.parse(fixture(name))
    assert message in str(caught.value)
    assert cause in caught.value.cause
    assert caught.value.fix


def test_empty_output() -> None:
    with pytest.raises(npu_smi.NpuSmiError, match="first line: nothing"):
        npu_smi.parse("")


def test_board_info() -> None:
    board = npu_smi.parse_board(fixture("board-910b3-npu0-chip0.txt"))
    assert board["Chip Name"] == "910B3"
    assert board["Chip Type"] == "Ascend"
    assert board["VDie ID"] == "42C711D4 20B03704 4A10C8D4 14CC040A D2102003"


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "npu-smi"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_run_reads_stdout_of_the_binary(tmp_path: Path) -> None:
    # npu-smi cannot run here: a shell script prints a saved table in its place.
    binary = _script(tmp_path, f'[ "$1" = info ] && cat "{FIXTURES / "910b3-8cards-one-busy.txt"}"\n')
    info = npu_smi.parse(npu_smi.run(("info",), binary=binary))
    assert len(info.chips) == 8


def test_run_failure_carries_the_known_cause(tmp_path: Path) -> None:
    binary = _script(tmp_path, f'cat "{FIXTURES / "error-dcmi-8005.txt"}"\nexit 1\n')
    with pytest.raises(npu_smi.NpuSmiError) as caught:
        npu_smi.run(("info",), binary=binary)
    assert "exited 1" in str(caught.value)
    assert "held by another container" in caught.value.cause


def test_missing_binary_says_how_to_mount_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(npu_smi.NPU_SMI_ENV, raising=False)
    if any(os.path.exists(p) for p in npu_smi.NPU_SMI_PATHS):
        pytest.skip("an NPU host: npu-smi is installed, so its absence cannot be tested here")
    with pytest.raises(npu_smi.NpuSmiError) as caught:
        npu_smi.run()
    assert "-v /usr/local/bin/npu-smi" in caught.value.fix


def test_read_saved_output_missing_file(tmp_path: Path) -> None:
    with pytest.raises(npu_smi.NpuSmiError, match="cannot read the saved npu-smi output"):
        npu_smi.read(tmp_path / "absent.txt")
