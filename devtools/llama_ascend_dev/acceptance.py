"""The acceptance run of one node and profile, as a user runs it: `preflight` on the live node, `serve` the profile
(weights from the volume), `smoke`, `verify` against transformers on the CPU, a short `bench`, each step's outcome
in one JSON file. `make test-npu` runs it on an Ascend host (bench/results/npu-<host>.json); the test suite runs the
same steps against the CPU stand-in, so the harness itself is proven wherever the suite runs.

    python -m llama_ascend_dev.acceptance --config config/llama-3.1-8b-instruct.yaml --out bench/results/npu-HOST.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llama_ascend.errors import CheckFailed
from llama_ascend_dev import server_process

READY_TIMEOUT_S = 1800  # weights from the volume and graph capture; a cold compile cache on the first run
STEP_TIMEOUT_S = 3600  # verify runs the 8B reference on the host's CPU
# A short sweep: the latency of one stream and of the profile's full batch.
BENCH_ARGS = ("--concurrency", "1,8", "--num-prompts", "16", "--input-len", "128", "--output-len", "64")


@dataclass
class Step:
    name: str
    ok: bool
    seconds: float
    result: Any = None  # the command's JSON output (or its error)


@dataclass
class Acceptance:
    config: str
    sets: list[str]
    host: str = field(default_factory=socket.gethostname)
    machine: str = field(default_factory=platform.machine)
    started: float = field(default_factory=time.time)
    load_1m_start: float = field(default_factory=lambda: os.getloadavg()[0])
    load_1m_end: float | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def as_json(self) -> str:
        return json.dumps({**asdict(self), "passed": self.passed}, indent=2) + "\n"


def default_out(root: Path) -> Path:
    return root / "bench" / "results" / f"npu-{socket.gethostname()}.json"


def _llama(*args: str) -> list[str]:
    return [sys.executable, "-m", "llama_ascend", *args]


def _json_step(name: str, argv: list[str], ok_codes: Sequence[int] = (0,)) -> Step:
    """Run one CLI command that prints JSON; the step passes on an expected exit code."""
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False)
    try:
        result: Any = json.loads(done.stdout)
    except ValueError:
        result = {"stdout": done.stdout[-4000:]}
    if done.returncode not in ok_codes:
        result = {"exit": done.returncode, "stderr": done.stderr[-4000:], "output": result}
    return Step(name, done.returncode in ok_codes, time.monotonic() - started, result)


def run(
    config: Path,
    out: Path,
    sets: Sequence[str] = (),
    *,
    port: int | None = None,
    ready_timeout: float = READY_TIMEOUT_S,
    bench_args: Sequence[str] = BENCH_ARGS,
    progress: Any = print,
) -> Acceptance:
    """Every step in order; a failed preflight or server start ends the run (what follows needs them)."""
    port = port or server_process.free_port()
    sets = [*sets, f"server.port={port}"]
    overrides = [arg for item in sets for arg in ("--set", item)]
    url = f"http://127.0.0.1:{port}"
    record = Acceptance(str(config), list(sets))
    out.parent.mkdir(parents=True, exist_ok=True)

    def done(step: Step) -> Step:
        record.steps.append(step)
        progress(f"{step.name}: {'ok' if step.ok else 'FAILED'} ({step.seconds:.0f} s)")
        out.write_text(record.as_json())
        return step

    if not done(_json_step("preflight", _llama("preflight", "--config", str(config), *overrides, "--json"))).ok:
        return _finish(record, out)
    with tempfile.TemporaryDirectory(prefix="llama-ascend-acceptance-") as work:
        server = server_process.ServerProcess(
            "llama-ascend serve",
            _llama("serve", "--config", str(config), *overrides),
            None,
            url,
            Path(work) / "server.log",
        )
        started = time.monotonic()
        try:
            ready_s = server.start(timeout=ready_timeout)
        except CheckFailed as exc:
            done(Step("serve", False, time.monotonic() - started, {"error": str(exc)[-4000:]}))
            return _finish(record, out)
        try:
            done(Step("serve", True, ready_s, {"url": url, "ready_s": ready_s}))
            done(_json_step("smoke", _llama("smoke", "--url", url, "--json")))
            verify = _llama("verify", "--url", url, "--config", str(config), *overrides, "--json")
            done(_json_step("verify", verify))
            bench_dir = Path(work) / "bench"
            bench = _json_step(
                "bench", _llama("bench", "--url", url, *bench_args, "--out", str(bench_dir), "--name", "acceptance")
            )
            if bench.ok:
                bench.result = json.loads((bench_dir / "acceptance.json").read_text())
            done(bench)
        finally:
            server.stop()
    return _finish(record, out)


def _finish(record: Acceptance, out: Path) -> Acceptance:
    record.load_1m_end = os.getloadavg()[0]
    out.write_text(record.as_json())
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llama_ascend_dev.acceptance", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, help="the JSON record (default bench/results/npu-<host>.json)")
    args = parser.parse_args(argv)
    out = args.out or default_out(Path.cwd())
    record = run(args.config, out, args.sets)
    print(f"{'passed' if record.passed else 'FAILED'}: {out}")
    return 0 if record.passed else 1


if __name__ == "__main__":
    sys.exit(main())
