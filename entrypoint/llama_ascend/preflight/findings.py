"""One check's outcome (Finding), and the report serve leaves for the exporter."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from llama_ascend.config import Config
from llama_ascend.durable import read_json, write_json_atomic
from llama_ascend.errors import PreflightFailed

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One check's outcome. `message` says what was found; a failure also says the likely cause and the fix."""

    check: str
    ok: bool
    message: str
    cause: str = ""
    fix: str = ""
    severity: Severity = "error"

    @property
    def failed(self) -> bool:
        return not self.ok and self.severity == "error"

    @property
    def status(self) -> str:
        return "ok" if self.ok else ("FAIL" if self.severity == "error" else "warn")

    def describe(self) -> str:
        text = f"{self.check}: {self.message}"
        if not self.ok and self.cause:
            text += f"; likely cause: {self.cause}"
        if not self.ok and self.fix:
            text += f"; fix: {self.fix}"
        return text


def ok(check: str, message: str) -> Finding:
    return Finding(check, True, message)


def fail(check: str, message: str, cause: str = "", fix: str = "", severity: Severity = "error") -> Finding:
    return Finding(check, False, message, cause, fix, severity)


def failures(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.failed]


def raise_on_failure(findings: Iterable[Finding]) -> None:
    """Raise PreflightFailed (exit 3) that lists every failure, each with its cause and fix."""
    failed = failures(findings)
    if failed:
        lines = [f"preflight: {len(failed)} check(s) failed"] + [f"  {f.describe()}" for f in failed]
        raise PreflightFailed("\n".join(lines))


def report(findings: Iterable[Finding]) -> dict[str, Any]:
    findings = list(findings)
    return {
        "time": time.time(),
        "ok": not failures(findings),
        "findings": [asdict(f) for f in findings],
    }


def report_path(config: Config) -> Path:
    """Where serve leaves the last preflight report for the exporter sidecar: on the volume, next to the caches."""
    return config.cache_dir / "preflight.json"


def save_report(findings: Iterable[Finding], path: str | os.PathLike[str]) -> None:
    """Write the findings as JSON (atomically); the exporter publishes them as metrics."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target, report(findings))


def load_report(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    data = read_json(Path(path))
    return data if data is not None and isinstance(data.get("findings"), list) else None
