"""Progress of a fetch: a rich bar on a terminal, a log line every few seconds otherwise (pod logs)."""

from __future__ import annotations

import logging
import threading
import time

from llama_ascend.fetch.results import gb

log = logging.getLogger("llama_ascend.fetch")


class Progress:
    """Bytes done of the whole fetch. A rich bar on a terminal, a log line every few seconds otherwise (pods)."""

    def __init__(self, label: str, total: int, initial: int, mode: str, interval: float = 15.0) -> None:
        self.label = label
        self.total = total
        self.done = initial
        self.moved = 0
        self.mode = mode  # "bar" | "log" | "off"
        self.interval = interval
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, done: int, moved: int | None = None) -> None:
        with self._lock:
            self.done += done
            self.moved += done if moved is None else moved

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.moved / elapsed
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_s = "?" if eta == float("inf") else f"{int(eta // 60)}m{int(eta % 60):02d}s"
        return f"{self.label}: {gb(self.done)} / {gb(self.total)} ({pct:.0f}%), {rate / 1e6:.1f} MB/s, ETA {eta_s}"

    def __enter__(self) -> Progress:
        if self.mode == "bar":
            self._thread = threading.Thread(target=self._bar, daemon=True)
        elif self.mode == "log":
            self._thread = threading.Thread(target=self._log, daemon=True)
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _log(self) -> None:
        while not self._stop.wait(self.interval):
            log.info("%s", self.line())

    def _bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import (
            Progress as Bar,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Bar(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(self.label, total=self.total, completed=self.done)
            while not self._stop.wait(0.2):
                bar.update(task, completed=self.done)
            bar.update(task, completed=self.done)
