"""Prometheus metrics for the NPUs (from npu-smi), the last preflight, the weights and the fetch on the volume.

Metric and label names are those of Huawei's npu-exporter (MindCluster `component/npu-exporter`), so Ascend
dashboards and alerts work unchanged: `npu_chip_info_*{id, model_name, vdie_id, pcie_bus_info, namespace,
pod_name, container_name}`, `id` the physical chip id, memory in MB, `npu_chip_info_health_status` 1 healthy,
0 unhealthy, -1 unknown. Ours are prefixed `llama_ascend_`. The chart runs this as a sidecar next to the server.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from llama_ascend import npu_smi
from llama_ascend.errors import ConfigError

log = logging.getLogger(__name__)

CARD_LABELS = ("id", "model_name", "vdie_id", "pcie_bus_info", "namespace", "pod_name", "container_name")
# npu_chip_info_name carries the name in `name` instead of `model_name`, as npu-exporter does.
NAME_LABELS = ("id", "name", "vdie_id", "pcie_bus_info", "namespace", "pod_name", "container_name")
PROCESS_LABELS = (*CARD_LABELS, "process_id", "container_id")
HEALTH_CODES = {"OK": 1.0, "UNKNOWN": -1.0}  # Warning, Alarm, Critical: 0

DEFAULT_PORT = 8082  # npu-exporter's default, so existing scrape configs find it


def health_code(health: str) -> float:
    return HEALTH_CODES.get(health.upper(), 0.0)


@dataclass(frozen=True)
class PodIdentity:
    """Who uses the cards: the pod this sidecar runs in (downward API env), empty outside Kubernetes."""

    namespace: str = ""
    pod_name: str = ""
    container_name: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PodIdentity:
        return cls(
            environ.get("POD_NAMESPACE", ""),
            environ.get("POD_NAME", ""),
            environ.get("LLAMA_ASCEND_CONTAINER_NAME", ""),
        )


@dataclass(frozen=True)
class BoardInfo:
    model_name: str  # name-type-version, e.g. 910B3-Ascend-V1, as npu-exporter builds it from DCMI
    vdie_id: str


def board_info(text: str) -> BoardInfo | None:
    """From `npu-smi info -t board -i N -c C`; None when it lacks the chip name (a board-level-only answer)."""
    fields = npu_smi.parse_board(text)
    name = fields.get("Chip Name")
    if not name or name.upper() == "NA":
        return None
    parts = [name, fields.get("Chip Type", ""), fields.get("Chip Version", "")]
    model = "-".join(parts) if all(parts) else name
    vdie = "-".join(fields.get("VDie ID", "").split())
    return BoardInfo(model, vdie)


def live_board_reader(binary: str | None = None) -> Callable[[npu_smi.Chip], str | None]:
    def read(chip: npu_smi.Chip) -> str | None:
        try:
            return npu_smi.run(("info", "-t", "board", "-i", str(chip.npu_id), "-c", str(chip.chip_id)), binary=binary)
        except npu_smi.NpuSmiError as exc:
            log.info("npu-smi board info for NPU %s chip %s unavailable: %s", chip.npu_id, chip.chip_id, exc)
            return None

    return read


class NpuCollector(Collector):
    """Reads npu-smi at most every `min_interval` seconds; a scrape in between gets the cached reading."""

    def __init__(
        self,
        read_table: Callable[[], npu_smi.NpuSmiInfo],
        read_board: Callable[[npu_smi.Chip], str | None] | None = None,
        pod: PodIdentity = PodIdentity(),
        min_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_table = read_table
        self._read_board = read_board
        self._pod = pod
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, npu_smi.NpuSmiInfo | None, str, float] | None = None
        self._boards: dict[tuple[int, int], BoardInfo | None] = {}

    def _reading(self) -> tuple[npu_smi.NpuSmiInfo | None, str, float]:
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._cached[0] >= self._min_interval:
                start = time.perf_counter()
                try:
                    info, error = self._read_table(), ""
                except npu_smi.NpuSmiError as exc:
                    info, error = None, str(exc)
                    log.warning("npu-smi: %s (%s)", exc, exc.cause)
                self._cached = (now, info, error, time.perf_counter() - start)
            return self._cached[1], self._cached[2], self._cached[3]

    def _board(self, chip: npu_smi.Chip) -> BoardInfo | None:
        key = (chip.npu_id, chip.chip_id)
        if key not in self._boards:  # static: asked once per chip
            text = self._read_board(chip) if self._read_board else None
            self._boards[key] = board_info(text) if text else None
        return self._boards[key]

    def _labels(self, chip: npu_smi.Chip) -> list[str]:
        board = self._board(chip)
        return [
            str(chip.phy_id),
            board.model_name if board else chip.name,
            board.vdie_id if board else "",
            chip.bus_id,
            self._pod.namespace,
            self._pod.pod_name,
            self._pod.container_name,
        ]

    def describe(self) -> Iterable[Metric]:
        return []  # collected on demand; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        info, _error, duration = self._reading()
        up = GaugeMetricFamily("llama_ascend_npu_smi_up", "1 if the last `npu-smi info` was read and parsed, else 0")
        up.add_metric([], 0.0 if info is None else 1.0)
        yield up
        took = GaugeMetricFamily("llama_ascend_npu_smi_duration_seconds", "time the last npu-smi read took")
        took.add_metric([], duration)
        yield took
        if info is None:
            return

        def family(name: str, doc: str, labels: tuple[str, ...] = CARD_LABELS) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=list(labels))

        count = GaugeMetricFamily("machine_npu_nums", "Amount of npu installed on the machine.")
        count.add_metric([], float(len(info.chips)))
        yield count
        names = family("npu_chip_info_name", "the Ascend npu name with value '1'", NAME_LABELS)
        health = family("npu_chip_info_health_status", "the npu health status (1 healthy, 0 unhealthy, -1 unknown)")
        power = family("npu_chip_info_power", "the npu power, unit is 'W'")
        temperature = family("npu_chip_info_temperature", "the npu temperature, unit is 'C'")
        utilization = family("npu_chip_info_utilization", "the ai core utilization, unit is '%'")
        hbm_used = family("npu_chip_info_hbm_used_memory", "the npu hbm used memory, unit is 'MB'")
        hbm_total = family("npu_chip_info_hbm_total_memory", "the npu hbm total memory, unit is 'MB'")
        ddr_used = family("npu_chip_info_used_memory", "the npu used memory (DDR), unit is 'MB'")
        ddr_total = family("npu_chip_info_total_memory", "the npu total memory (DDR), unit is 'MB'")
        proc_num = family("npu_chip_info_process_info_num", "the npu process num")
        proc_info = family(
            "npu_chip_info_process_info",
            "the npu process info, unit is 'MB'. if process run on host, container_id and container_name will be empty",
            PROCESS_LABELS,
        )
        for chip in info.chips:
            labels = self._labels(chip)
            names.add_metric(labels, 1.0)
            health.add_metric(labels, health_code(chip.health))
            for metric, value in (
                (power, chip.power_w),
                (temperature, chip.temperature_c),
                (utilization, chip.aicore_percent),
                (hbm_used, chip.hbm_used_mb),
                (hbm_total, chip.hbm_total_mb),
            ):
                if value is not None:
                    metric.add_metric(labels, float(value))
            if chip.memory_total_mb:  # 910B has no DDR (npu-smi shows 0 / 0): not reported, as npu-exporter does
                ddr_used.add_metric(labels, float(chip.memory_used_mb or 0))
                ddr_total.add_metric(labels, float(chip.memory_total_mb))
            processes = info.processes_on(chip)
            if processes is not None:
                proc_num.add_metric(labels, float(len(processes)))
                if not processes:  # npu-exporter reports an idle chip as one empty series with value 0
                    proc_info.add_metric([*labels, "", ""], 0.0)
                for process in processes:
                    proc_info.add_metric([*labels, str(process.pid), ""], float(process.memory_mb or 0))
        yield from (
            names,
            health,
            power,
            temperature,
            utilization,
            hbm_used,
            hbm_total,
            ddr_used,
            ddr_total,
            proc_num,
            proc_info,
        )


class DeploymentCollector(Collector):
    """The last preflight (the report serve leaves on the volume) and the state of the weights on the volume."""

    def __init__(self, report_path: Path | None, weights_check: Callable[[], object] | None = None) -> None:
        self._report_path = report_path
        self._weights_check = weights_check

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from llama_ascend import preflight

        report = preflight.load_report(self._report_path) if self._report_path else None
        present = GaugeMetricFamily("llama_ascend_preflight_report_present", "1 if a preflight report was found")
        present.add_metric([], 0.0 if report is None else 1.0)
        yield present
        if report is not None:
            passed = GaugeMetricFamily("llama_ascend_preflight_passed", "1 if the last preflight had no failure")
            passed.add_metric([], 1.0 if report.get("ok") else 0.0)
            yield passed
            when = GaugeMetricFamily("llama_ascend_preflight_timestamp_seconds", "when the last preflight ran")
            when.add_metric([], float(report.get("time") or 0))
            yield when
            checks = GaugeMetricFamily(
                "llama_ascend_preflight_check_failed",
                "1 if the check failed in the last preflight, 0 if it passed (warnings count as passed)",
                labels=["check"],
            )
            failed: dict[str, bool] = {}
            for item in report["findings"]:
                name = str(item.get("check", ""))
                is_failure = not item.get("ok") and item.get("severity", "error") == "error"
                failed[name] = failed.get(name, False) or is_failure
            for name, value in sorted(failed.items()):
                checks.add_metric([name], 1.0 if value else 0.0)
            yield checks
        if self._weights_check is not None:
            finding = self._weights_check()
            complete = GaugeMetricFamily(
                "llama_ascend_model_weights_complete",
                "1 if every safetensors shard of the model is on the volume and no download is half-done",
            )
            complete.add_metric([], 1.0 if getattr(finding, "ok", False) else 0.0)
            yield complete


class TextfileCollector(Collector):
    """Re-publishes Prometheus text files other steps leave on the volume (fetch's llama_ascend_fetch.prom)."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._paths = list(paths)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.parser import text_string_to_metric_families

        seen: set[str] = set()
        for path in self._paths:
            try:
                text = path.read_text(encoding="utf-8")
                families = list(text_string_to_metric_families(text))
            except FileNotFoundError:
                continue  # nothing fetched yet
            except (OSError, ValueError) as exc:
                log.warning("textfile %s: %s", path, exc)
                continue
            for family in families:
                if family.name not in seen:  # the first file wins a name
                    seen.add(family.name)
                    yield family


def build_registry(
    read_table: Callable[[], npu_smi.NpuSmiInfo],
    read_board: Callable[[npu_smi.Chip], str | None] | None = None,
    pod: PodIdentity = PodIdentity(),
    report_path: Path | None = None,
    weights_check: Callable[[], object] | None = None,
    min_interval: float = 5.0,
    textfiles: Iterable[Path] = (),
) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(NpuCollector(read_table, read_board, pod, min_interval))
    registry.register(DeploymentCollector(report_path, weights_check))
    registry.register(TextfileCollector(textfiles))
    return registry


def serve_forever(
    registry: CollectorRegistry, host: str, port: int, ready: Callable[[int], None] | None = None
) -> None:
    """Serve /metrics until SIGTERM/SIGINT."""
    import signal

    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise _listen_error(host, port, exc) from None
    bound = server.server_address[1]
    if ready:
        ready(bound)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join(timeout=5)


def _listen_error(host: str, port: int, exc: OSError) -> ConfigError:
    """A ConfigError (exit 2) for a --host / --port the exporter cannot listen on."""
    where = f"exporter: cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            f"{where}: the port is already in use; fix: stop what listens there (`ss -ltnp | grep :{port}`) or "
            "choose another port: --port N (env LLAMA_ASCEND_EXPORTER_PORT; 0 picks a free one)"
        )
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(exc, socket.gaierror):
        return ConfigError(
            f"{where}: {host} is not an address of this machine; fix: --host 0.0.0.0 (all interfaces) or 127.0.0.1 "
            "(env LLAMA_ASCEND_EXPORTER_HOST)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ConfigError(
            f"{where}: {exc.strerror}; fix: ports below 1024 need privileges: choose --port 1024 or above"
        )
    return ConfigError(f"{where}: {exc.strerror or exc}; fix: choose another --host / --port")


def table_reader(
    npu_smi_output: str | os.PathLike[str] | None, binary: str | None = None
) -> Callable[[], npu_smi.NpuSmiInfo]:
    """Re-reads the saved output file on every call (so it can be replaced), or runs npu-smi."""
    return lambda: npu_smi.read(npu_smi_output, binary=binary)
