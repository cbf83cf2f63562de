"""Read `npu-smi info`: the per-chip table (name, health, power, temperature, AICore %, HBM) and the process table.

The parser works on cells between `|` and on whitespace-separated tokens, never on column offsets, so it takes the
layouts of the npu-smi versions seen in the field: 910B (`Chip` header, `910B3` names), the newer `Chip Phy-ID`
header with `Ascend910` names, Atlas A3 (two chips per NPU), 310P (`Chip Device`, DDR only), with or without the
version banner and the process table, CRLF line endings, and tables whose whitespace was collapsed by a copy/paste.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Where npu-smi lives when it is not on PATH (the host's copy mounted into the container, or the driver's tools).
NPU_SMI_PATHS = ("/usr/local/bin/npu-smi", "/usr/local/sbin/npu-smi", "/usr/local/Ascend/driver/tools/npu-smi")
NPU_SMI_ENV = "LLAMA_ASCEND_NPU_SMI"  # path of the npu-smi binary to run, when it is somewhere else

HEALTH_OK = "OK"
_BUS_ID = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]$")
_FRACTION = re.compile(r"(\S+?)\s*/\s*(\S+)")
_IDLE = re.compile(r"No running processes found in NPU\s+(\d+)", re.IGNORECASE)
_BANNER = re.compile(r"npu-smi\s+(\S+)\s+Version:\s*(\S+)", re.IGNORECASE)


class NpuSmiError(Exception):
    """npu-smi could not be run or its output is not a table we can read. `cause` and `fix` are for humans."""

    def __init__(self, message: str, cause: str = "", fix: str = "") -> None:
        super().__init__(message)
        self.cause = cause
        self.fix = fix


@dataclass(frozen=True)
class Chip:
    """One chip (a 910B card has one, an A3 NPU or a 310P Duo two). Readings npu-smi shows as NA/- are None."""

    npu_id: int
    chip_id: int
    name: str
    health: str
    bus_id: str
    device_id: int | None = None  # the `Phy-ID` / `Device` column, when the layout has one
    power_w: float | None = None
    temperature_c: float | None = None
    aicore_percent: float | None = None
    memory_used_mb: int | None = None  # DDR (`Memory-Usage`); 0 / 0 on 910B, the only memory on 310P
    memory_total_mb: int | None = None
    hbm_used_mb: int | None = None
    hbm_total_mb: int | None = None

    @property
    def phy_id(self) -> int:
        """The physical chip id: /dev/davinci<phy_id>, the `id` label of Huawei's npu-exporter."""
        return self.device_id if self.device_id is not None else self.npu_id

    @property
    def healthy(self) -> bool:
        return self.health.upper() == HEALTH_OK


@dataclass(frozen=True)
class Process:
    npu_id: int
    chip_id: int
    pid: int
    name: str
    memory_mb: int | None


@dataclass
class NpuSmiInfo:
    chips: list[Chip]
    # None when the output has no process table (then nobody can tell whether a card is busy).
    processes: list[Process] | None
    version: str | None = None
    notes: list[str] = field(default_factory=list)  # lines we skipped, for --debug

    def chip_by_phy_id(self, phy_id: int) -> Chip | None:
        return next((chip for chip in self.chips if chip.phy_id == phy_id), None)

    def processes_on(self, chip: Chip) -> list[Process] | None:
        if self.processes is None:
            return None
        return [p for p in self.processes if p.npu_id == chip.npu_id and p.chip_id == chip.chip_id]


def _number(token: str | None) -> float | None:
    if token is None or token.upper() in ("NA", "N/A", "-", "--", ""):
        return None
    try:
        return float(token)
    except ValueError:
        raise ValueError(f"{token!r} is not a number") from None


def _int(token: str | None) -> int | None:
    value = _number(token)
    return None if value is None else int(value)


def _ints(cell: str) -> list[int]:
    try:
        return [int(token) for token in cell.split()]
    except ValueError:
        raise ValueError(f"{cell!r} is not a list of ids") from None


def _split_readings(cell: str) -> tuple[list[str], list[tuple[str, str]]]:
    """'0 0 / 0 59678/ 65536' -> (['0'], [('0', '0'), ('59678', '65536')]): scalars, then 'used / total' pairs."""
    fractions = [(m[1], m[2]) for m in _FRACTION.finditer(cell)]
    scalars = _FRACTION.sub(" ", cell).split()
    return scalars, fractions


@dataclass
class _Layout:
    """Which 'used / total' pairs the chip row carries, in order, from the second header line."""

    fractions: tuple[str, ...] = ("memory", "hbm")

    @classmethod
    def from_header(cls, cell: str) -> _Layout:
        names = []
        for match in re.finditer(r"(Memory|HBM)-Usage", cell, re.IGNORECASE):
            names.append("hbm" if match[1].upper() == "HBM" else "memory")
        return cls(tuple(names) or ("memory", "hbm"))


def parse(text: str) -> NpuSmiInfo:
    """Parse `npu-smi info` output. Raises NpuSmiError (with cause and fix) when it has no readable chip table."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    chips: list[Chip] = []
    processes: list[Process] | None = None
    version = None
    notes: list[str] = []
    layout = _Layout()
    section = None  # "chips" | "processes"
    pending: dict | None = None  # the NPU row waiting for its chip row(s)
    pending_line = 0

    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        banner = _BANNER.search(line)
        if banner:
            version = banner[2]
            continue
        if not line.startswith("|"):
            if not line.startswith("+"):
                notes.append(f"line {number}: not part of a table: {line[:80]}")
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        first = cells[0]
        # Header rows switch the section.
        if re.match(r"NPU\s+Name\b", first) or "Health" in cells[1:2]:
            section = "chips"
            continue
        if len(cells) > 1 and re.search(r"Process\s+id", cells[1], re.IGNORECASE):
            section = "processes"
            processes = processes if processes is not None else []
            continue
        if re.match(r"Chip\b", first) and len(cells) >= 3 and "Bus-Id" in cells[1]:
            layout = _Layout.from_header(cells[2])
            continue
        idle = _IDLE.search(line)
        if idle:
            section = "processes"
            processes = processes if processes is not None else []
            continue
        try:
            if section == "processes" and len(cells) >= 4:
                assert processes is not None
                ids = _ints(cells[0])
                processes.append(
                    Process(
                        npu_id=ids[0],
                        chip_id=ids[1] if len(ids) > 1 else 0,
                        pid=int(cells[1]),
                        name=cells[2],
                        memory_mb=_int(cells[3].split()[0] if cells[3] else None),
                    )
                )
                continue
            if len(cells) < 3:
                notes.append(f"line {number}: unexpected row: {line[:80]}")
                continue
            if _BUS_ID.match(cells[1].split()[0] if cells[1] else ""):
                if pending is None:
                    raise ValueError("a chip row (with the Bus-Id) without the NPU row above it")
                ids = _ints(cells[0])
                scalars, fractions = _split_readings(cells[2])
                readings: dict[str, tuple[str, str]] = dict(zip(layout.fractions, fractions, strict=False))
                memory, hbm = readings.get("memory"), readings.get("hbm")
                chips.append(
                    Chip(
                        npu_id=pending["npu_id"],
                        chip_id=ids[0] if ids else 0,
                        device_id=ids[1] if len(ids) > 1 else None,
                        name=pending["name"],
                        health=pending["health"],
                        bus_id=cells[1].split()[0],
                        power_w=pending["power"],
                        temperature_c=pending["temp"],
                        aicore_percent=_number(scalars[0]) if scalars else None,
                        memory_used_mb=_int(memory[0]) if memory else None,
                        memory_total_mb=_int(memory[1]) if memory else None,
                        hbm_used_mb=_int(hbm[0]) if hbm else None,
                        hbm_total_mb=_int(hbm[1]) if hbm else None,
                    )
                )
                pending["used"] = True
                continue
            # An NPU row: "<npu id> <name>" | health | power temp hugepages.
            tokens = cells[0].split()
            if not tokens or not tokens[0].isdigit():
                notes.append(f"line {number}: unexpected row: {line[:80]}")
                continue
            if pending is not None and not pending["used"]:
                raise ValueError(f"NPU {pending['npu_id']} (line {pending_line}) has no chip row below it")
            scalars, _ = _split_readings(cells[2])
            pending = {
                "npu_id": int(tokens[0]),
                "name": " ".join(tokens[1:]),
                "health": cells[1] or "UNKNOWN",
                "power": _number(scalars[0]) if scalars else None,
                "temp": _number(scalars[1]) if len(scalars) > 1 else None,
                "used": False,
            }
            pending_line = number
            section = "chips"
        except (ValueError, IndexError, AssertionError) as exc:
            raise NpuSmiError(
                f"npu-smi output line {number}: cannot read {line[:100]!r}: {exc}",
                cause="the table is truncated or in a layout this version of llama-ascend does not know",
                fix="run `npu-smi info` by hand and compare; pass the saved output with --npu-smi-output to reproduce",
            ) from None

    if pending is not None and not pending["used"]:
        raise NpuSmiError(
            f"npu-smi output: NPU {pending['npu_id']} (line {pending_line}) has no chip row below it: the output is truncated",
            cause="npu-smi was interrupted, or the output was cut when it was saved",
            fix="run `npu-smi info` again",
        )
    if not chips:
        raise error_from_output(text)
    return NpuSmiInfo(chips=chips, processes=processes, version=version, notes=notes)


# What npu-smi prints instead of the table, and what it means in a container.
_KNOWN_ERRORS = (
    (
        re.compile(r"error while loading shared libraries: ([^:\s]+)"),
        "the driver libraries are not mounted into the container ({0} not found)",
        "mount the host's driver: -v /usr/local/Ascend/driver:/usr/local/Ascend/driver:ro "
        "(Kubernetes: a hostPath volume), and keep its lib64 dirs on LD_LIBRARY_PATH",
    ),
    (
        re.compile(r"ret is -8005"),
        "DCMI could not open the card: it is held by another container, or this container lacks the management "
        "devices / privileges",
        "check `npu-smi info` on the host for processes on the card; start the container with --device "
        "/dev/davinci_manager --device /dev/devmm_svm --device /dev/hisi_hdc and the card's /dev/davinciN",
    ),
    (
        re.compile(r"ret is -8020|device is used", re.IGNORECASE),
        "the card is in use by another process or container",
        "stop the other workload (see `npu-smi info` on the host) or request another card",
    ),
    (
        re.compile(r"dcmi.*(initiali[sz]e|init).*fail", re.IGNORECASE),
        "npu-smi could not initialise DCMI (driver/firmware mismatch, or the management devices are missing)",
        "check that /dev/davinci_manager and /dev/hisi_hdc exist in the container and the driver version matches",
    ),
    (
        re.compile(r"permission denied", re.IGNORECASE),
        "npu-smi may not open the devices as this user",
        "run as a user in the HwHiAiUser group, or as root in the container",
    ),
)


def error_from_output(text: str) -> NpuSmiError:
    """An NpuSmiError for output that has no chip table, explaining the known driver/container errors."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    for pattern, cause, fix in _KNOWN_ERRORS:
        matched = next((line for line in lines if pattern.search(line)), None)
        if matched:
            match = pattern.search(matched)
            detail = match.group(1) if match and match.groups() else ""
            return NpuSmiError(f"npu-smi printed no NPU table: {matched[:160]!r}", cause.format(detail), fix)
    shown = repr(first[:160]) if first else "nothing"
    return NpuSmiError(
        f"npu-smi printed no NPU table (first line: {shown})",
        cause="no NPU is visible here, or the output is not from `npu-smi info`",
        fix="run `npu-smi info` by hand; on a container, pass the card with --device /dev/davinciN",
    )


def parse_board(text: str) -> dict[str, str]:
    """`npu-smi info -t board -i N -c C` -> {"Chip Name": "910B3", "Chip Type": "Ascend", ...}."""
    info = {}
    for line in text.replace("\r", "\n").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            info[key.strip()] = value.strip()
    return info


def find_npu_smi(environ: os._Environ[str] | dict[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    explicit = environ.get(NPU_SMI_ENV)
    if explicit:
        return explicit
    found = shutil.which("npu-smi", path=environ.get("PATH"))
    if found:
        return found
    return next((path for path in NPU_SMI_PATHS if Path(path).is_file() and os.access(path, os.X_OK)), None)


def run(args: Sequence[str] = ("info",), binary: str | None = None, timeout: float = 20.0) -> str:
    """Run npu-smi and return its stdout (+stderr on failure). Raises NpuSmiError when it cannot run at all."""
    binary = binary or find_npu_smi()
    if not binary:
        raise NpuSmiError(
            "npu-smi not found (not on PATH, nor in " + ", ".join(NPU_SMI_PATHS) + ")",
            cause="the host's npu-smi is not mounted into the container",
            fix="mount it: -v /usr/local/bin/npu-smi:/usr/local/bin/npu-smi:ro (or set $" + NPU_SMI_ENV + ")",
        )
    try:
        done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise NpuSmiError(f"{binary}: not found", fix=f"set ${NPU_SMI_ENV} to the npu-smi binary") from None
    except PermissionError:
        raise NpuSmiError(f"{binary}: not executable", fix=f"chmod +x {binary}, or mount the host's npu-smi") from None
    except subprocess.TimeoutExpired:
        raise NpuSmiError(
            f"`{binary} {' '.join(args)}` did not answer in {timeout:.0f} s",
            cause="the driver is hung or a card is resetting",
            fix="check `dmesg` and `npu-smi info` on the host",
        ) from None
    if done.returncode != 0:
        output = (done.stdout + "\n" + done.stderr).strip()
        error = error_from_output(output)
        error.args = (
            f"`{binary} {' '.join(args)}` exited {done.returncode}: {output.splitlines()[0] if output else ''}",
        )
        raise error
    return done.stdout


def read(path: str | os.PathLike[str] | None = None, binary: str | None = None) -> NpuSmiInfo:
    """Parse a saved `npu-smi info` output when `path` is given, else run npu-smi."""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise NpuSmiError(f"{path}: cannot read the saved npu-smi output ({exc.strerror})") from None
        return parse(text)
    return parse(run(("info",), binary=binary))
