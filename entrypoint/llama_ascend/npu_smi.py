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


@dataclass
class _PendingNpu:
    """An NPU row (name, health, power, temperature) waiting for its chip row(s) below it."""

    npu_id: int
    name: str
    health: str
    power: float | None
    temperature: float | None
    line: int
    used: bool = False


class _TableReader:
    """Reads the table row by row: header rows set the section and the layout, then each row is a process row, a chip
    row (it has the Bus-Id) or an NPU row. A row that cannot be read raises ValueError/IndexError."""

    def __init__(self) -> None:
        self.chips: list[Chip] = []
        self.processes: list[Process] = []
        self.process_table = False  # npu-smi printed a process table (empty counts)
        self.layout = _Layout()
        self.section = "chips"
        self.pending: _PendingNpu | None = None

    def header(self, cells: list[str], line: str) -> bool:
        """True when the row is a header (or the 'no running processes' line) and was taken as one."""
        first = cells[0]
        if re.match(r"NPU\s+Name\b", first) or "Health" in cells[1:2]:
            self.section = "chips"
        elif len(cells) > 1 and re.search(r"Process\s+id", cells[1], re.IGNORECASE):
            self.section, self.process_table = "processes", True
        elif re.match(r"Chip\b", first) and len(cells) >= 3 and "Bus-Id" in cells[1]:
            self.layout = _Layout.from_header(cells[2])
        elif _IDLE.search(line):
            self.section, self.process_table = "processes", True
        else:
            return False
        return True

    def process_row(self, cells: list[str]) -> None:
        ids = _ints(cells[0])
        memory = _int(cells[3].split()[0] if cells[3] else None)
        self.processes.append(Process(ids[0], ids[1] if len(ids) > 1 else 0, int(cells[1]), cells[2], memory))

    def chip_row(self, cells: list[str]) -> None:
        npu = self.pending
        if npu is None:
            raise ValueError("a chip row (with the Bus-Id) without the NPU row above it")
        ids = _ints(cells[0])
        scalars, fractions = _split_readings(cells[2])
        readings: dict[str, tuple[str, str]] = dict(zip(self.layout.fractions, fractions, strict=False))
        memory, hbm = readings.get("memory"), readings.get("hbm")
        self.chips.append(
            Chip(
                npu_id=npu.npu_id,
                chip_id=ids[0] if ids else 0,
                device_id=ids[1] if len(ids) > 1 else None,
                name=npu.name,
                health=npu.health,
                bus_id=cells[1].split()[0],
                power_w=npu.power,
                temperature_c=npu.temperature,
                aicore_percent=_number(scalars[0]) if scalars else None,
                memory_used_mb=_int(memory[0]) if memory else None,
                memory_total_mb=_int(memory[1]) if memory else None,
                hbm_used_mb=_int(hbm[0]) if hbm else None,
                hbm_total_mb=_int(hbm[1]) if hbm else None,
            )
        )
        npu.used = True

    def npu_row(self, tokens: list[str], cells: list[str], number: int) -> None:
        """ "<npu id> <name>" | health | power temperature hugepages."""
        if self.pending is not None and not self.pending.used:
            raise ValueError(f"NPU {self.pending.npu_id} (line {self.pending.line}) has no chip row below it")
        scalars, _ = _split_readings(cells[2])
        power = _number(scalars[0]) if scalars else None
        temperature = _number(scalars[1]) if len(scalars) > 1 else None
        self.pending = _PendingNpu(
            int(tokens[0]), " ".join(tokens[1:]), cells[1] or "UNKNOWN", power, temperature, number
        )
        self.section = "chips"

    def row(self, cells: list[str], line: str, number: int, notes: list[str]) -> None:
        if self.header(cells, line):
            return
        if self.section == "processes" and len(cells) >= 4:
            self.process_row(cells)
        elif len(cells) < 3:
            notes.append(f"line {number}: unexpected row: {line[:80]}")
        elif _BUS_ID.match(cells[1].split()[0] if cells[1] else ""):
            self.chip_row(cells)
        elif (tokens := cells[0].split()) and tokens[0].isdigit():
            self.npu_row(tokens, cells, number)
        else:
            notes.append(f"line {number}: unexpected row: {line[:80]}")


def parse(text: str) -> NpuSmiInfo:
    """Parse `npu-smi info` output. Raises NpuSmiError (with cause and fix) when it has no readable chip table."""
    reader = _TableReader()
    version = None
    notes: list[str] = []
    for number, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if banner := _BANNER.search(line):
            version = banner[2]
        elif not line.startswith("|"):
            if not line.startswith("+"):
                notes.append(f"line {number}: not part of a table: {line[:80]}")
        else:
            try:
                reader.row([cell.strip() for cell in line.strip("|").split("|")], line, number, notes)
            except (ValueError, IndexError) as exc:
                raise NpuSmiError(
                    f"npu-smi output line {number}: cannot read {line[:100]!r}: {exc}",
                    cause="the table is truncated or in a layout this version of llama-ascend does not know",
                    fix="run `npu-smi info` by hand and compare; pass the saved output with --npu-smi-output to "
                    "reproduce",
                ) from None
    pending = reader.pending
    if pending is not None and not pending.used:
        raise NpuSmiError(
            f"npu-smi output: NPU {pending.npu_id} (line {pending.line}) has no chip row below it: the output is "
            "truncated",
            cause="npu-smi was interrupted, or the output was cut when it was saved",
            fix="run `npu-smi info` again",
        )
    if not reader.chips:
        raise error_from_output(text)
    processes = reader.processes if reader.process_table else None
    return NpuSmiInfo(chips=reader.chips, processes=processes, version=version, notes=notes)


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
