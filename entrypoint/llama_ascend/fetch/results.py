"""What a fetch returns, and how it fails: FetchResult, FetchFailed (with the reason the metrics count)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llama_ascend.errors import CheckFailed, ConfigError


@dataclass
class FetchResult:
    model_dir: Path
    source: str
    model_id: str
    revision: str
    commit: str | None
    files: int
    bytes_total: int
    bytes_downloaded: int
    seconds: float
    already_complete: bool
    waited_seconds: float = 0.0
    files_downloaded: int = 0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_downloaded / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        what = f"{self.model_id}@{self.revision}" if self.source != "local" else "local model"
        if self.already_complete and not self.bytes_downloaded:
            state = "verified" if self.source == "local" else "already complete"
            size = gb(self.bytes_total)
            return f"fetch: {what} {state} in {self.model_dir}: {self.files} files, {size} ({self.seconds:.2f} s)"
        return (
            f"fetch: {what} complete in {self.model_dir}: {self.files} files, {gb(self.bytes_total)} "
            f"({gb(self.bytes_downloaded)} downloaded) in {self.seconds:.1f} s, {self.mb_per_s:.1f} MB/s"
        )


class FetchFailed(CheckFailed):
    """The fetch failed for a reason outside the config (network, hub, integrity, disk); exit code 1."""

    def __init__(self, message: str, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason


def config_error(message: str, reason: str) -> ConfigError:
    exc = ConfigError(message)
    exc.reason = reason  # type: ignore[attr-defined]
    return exc


def gb(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{int(n)} B"
