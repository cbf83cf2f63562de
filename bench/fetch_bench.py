"""`make bench-fetch`: how fast `llama-ascend fetch` moves weights compared with a raw HTTP copy of the same bytes.

Everything runs on this machine: the test hub (llama_ascend_dev.hub) serves the stand-in model (~270 MB, from
`llama-ascend standin`; a generated model of the same size when it is missing) in its own process, on 127.0.0.1.

Measured, for ModelScope (the real modelscope client) and HuggingFace (huggingface_hub + our resumable stream):
1. fetch throughput vs a raw copy of the same files from the same hub, in the same run: `curl` and httpx
   (target: fetch ≥ 0.9× the raw copy);
2. the complete-cache re-check: `fetch.is_complete` and `fetch.fetch` on a complete dir, and the whole CLI;
3. a fetch killed (SIGKILL) at ~50 % of the bytes, then re-run: bytes moved again vs the bytes that were missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx

from llama_ascend import fetch
from llama_ascend.config import load_config
from llama_ascend.fetch.settings import ENV_WORKERS, env_number
from llama_ascend_dev.fetch_helpers import clean_env, digests, fetch_cmd, make_model, write_config

ROOT = Path(__file__).resolve().parent.parent
REPOS = {"modelscope": ("LLM-Research/Bench-Llama", "master"), "huggingface": ("meta-llama/Bench-Llama", "main")}


class Hub:
    """The test hub (llama_ascend_dev.hub) in its own process (so its threads do not share our GIL)."""

    def __init__(self, model_dir: Path) -> None:
        args = [f"--repo={repo}={model_dir}" for repo, _ in REPOS.values()]
        command = [sys.executable, "-m", "llama_ascend_dev.hub", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"the test hub did not start: {self.url!r}")

    def sent(self) -> int:
        return int(httpx.get(f"{self.url}/_hub/stats", timeout=10).json()["sent"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def model_source(scratch: Path, size_mb: int | None) -> tuple[Path, str]:
    if size_mb is None:
        from llama_ascend import standin

        directory = standin.standin_dir()
        if standin.is_complete(directory):
            return directory, f"the stand-in model {directory}"
        size_mb = 270
    directory = make_model(scratch / "generated-model", big=(size_mb - 16) << 20, small=16 << 20)
    return directory, f"a generated {size_mb} MB model (run `llama-ascend standin` to use the real stand-in)"


def file_urls(source: str, hub: str, repo: str, revision: str, files: list[str]) -> list[str]:
    if source == "modelscope":
        return [f"{hub}/api/v1/models/{repo}/repo?Revision={revision}&FilePath={quote(f)}" for f in files]
    return [f"{hub}/{repo}/resolve/{revision}/{quote(f)}" for f in files]


def raw_curl(urls: list[str], out: Path, workers: int, durable: bool = False) -> float:
    """curl, `workers` files at a time; `durable`: and fsync every file, as fetch does before its marker."""
    out.mkdir(parents=True, exist_ok=True)

    def get(item: tuple[int, str]) -> None:
        target = out / f"f{item[0]}"
        subprocess.run(["curl", "-sSf", "-o", str(target), item[1]], check=True)
        if durable:
            fd = os.open(target, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(get, enumerate(urls)))
    return time.perf_counter() - started


def raw_httpx(urls: list[str], out: Path, workers: int) -> float:
    out.mkdir(parents=True, exist_ok=True)

    def get(item: tuple[int, str]) -> None:
        with client.stream("GET", item[1]) as resp, (out / f"f{item[0]}").open("wb") as fh:
            resp.raise_for_status()
            for chunk in resp.iter_bytes():
                fh.write(chunk)

    started = time.perf_counter()
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(workers) as pool:
        list(pool.map(get, enumerate(urls)))
    return time.perf_counter() - started


def bench_source(source: str, hub: Hub, model_dir: Path, scratch: Path, runs: int) -> dict:
    repo, revision = REPOS[source]
    workers = int(env_number(ENV_WORKERS, 4))
    result: dict = {"source": source}

    def fresh_config(tag: str) -> Path:
        volume = scratch / f"{source}-{tag}"
        shutil.rmtree(volume, ignore_errors=True)
        return write_config(scratch / f"{source}-{tag}.yaml", source, repo, volume, hub.url)

    config_path = fresh_config("probe")
    config = load_config(config_path)
    first = fetch.fetch(config, progress=False)
    files = sorted(json.loads((config.model_dir / fetch.MARKER).read_text())["files"])
    total = first.bytes_total
    assert digests(config.model_dir) == {k: v for k, v in digests(model_dir).items() if k in files}
    result.update(files=len(files), bytes=total)

    # 1. throughput: fetch vs raw copies of the same files, each the best of `runs`
    urls = file_urls(source, hub.url, repo, revision, files)

    def timed_fetch(i: int) -> float:
        cfg = load_config(fresh_config(f"run{i}"))
        started = time.perf_counter()
        fetch.fetch(cfg, progress=False)
        return time.perf_counter() - started

    times: dict[str, list[float]] = {"fetch": [], "curl": [], "httpx": [], "durable": []}
    for i in range(runs):  # interleaved, so that a burst of load elsewhere hits all of them alike
        times["fetch"].append(timed_fetch(i))
        times["curl"].append(raw_curl(urls, scratch / f"curl-{source}-{i}", workers))
        times["httpx"].append(raw_httpx(urls, scratch / f"httpx-{source}-{i}", workers))
        times["durable"].append(raw_curl(urls, scratch / f"curl-sync-{source}-{i}", workers, durable=True))
    t_fetch, t_curl, t_httpx, t_durable = (min(times[k]) for k in ("fetch", "curl", "httpx", "durable"))
    for pattern in (f"curl-*{source}-*", f"httpx-{source}-*", f"{source}-run*"):
        for path in scratch.glob(pattern):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
    mbps = lambda seconds: total / 1e6 / seconds  # noqa: E731
    result.update(
        fetch_MBps=round(mbps(t_fetch), 1),
        curl_MBps=round(mbps(t_curl), 1),
        httpx_MBps=round(mbps(t_httpx), 1),
        curl_fsync_MBps=round(mbps(t_durable), 1),
        fetch_vs_curl=round(t_curl / t_fetch, 2),
        fetch_vs_httpx=round(t_httpx / t_fetch, 2),
        fetch_vs_curl_fsync=round(t_durable / t_fetch, 2),
    )

    # 2. the complete-cache re-check
    checks = []
    for _ in range(200):
        started = time.perf_counter()
        assert fetch.is_complete(config)
        checks.append(time.perf_counter() - started)
    fast = []
    for _ in range(20):
        started = time.perf_counter()
        assert fetch.fetch(config, progress=False).already_complete
        fast.append(time.perf_counter() - started)
    started = time.perf_counter()
    subprocess.run(fetch_cmd(config_path, "--offline"), check=True, capture_output=True, env=clean_env(), cwd=ROOT)
    cli = time.perf_counter() - started
    result.update(
        is_complete_ms=round(statistics.median(checks) * 1000, 3),
        fetch_complete_ms=round(statistics.median(fast) * 1000, 3),
        cli_offline_complete_s=round(cli, 2),
    )

    # 3. killed at ~50 %, then re-run
    kill_path = fresh_config("kill")
    kill_config = load_config(kill_path)
    staging = fetch.Layout(kill_config.model_dir).staging
    proc = subprocess.Popen(
        fetch_cmd(kill_path, "--no-progress"),
        env=clean_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def on_disk() -> int:
        size = 0
        for path in staging.rglob("*") if staging.exists() else ():
            if not path.name.startswith((fetch.JOURNAL, f".{fetch.JOURNAL}")):  # the journal and its temporary file
                with contextlib.suppress(FileNotFoundError):  # renamed into place just now
                    size += path.stat().st_size
        return size

    while proc.poll() is None and on_disk() < total // 2:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = on_disk()
    before = hub.sent()
    rerun = fetch.fetch(kill_config, progress=False)
    moved_again = hub.sent() - before
    assert digests(kill_config.model_dir) == {k: v for k, v in digests(model_dir).items() if k in files}
    result.update(
        killed_at_pct=round(100 * kept / total, 1),
        missing_after_kill=total - kept,
        moved_by_rerun=moved_again,
        rerun_reported=rerun.bytes_downloaded,
        extra_bytes=moved_again - (total - kept),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", default="modelscope,huggingface")
    parser.add_argument("--runs", type=int, default=5, help="best of N interleaved runs per throughput measurement")
    parser.add_argument("--size-mb", type=int, help="generate a model of this size instead of using the stand-in")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    for key in [
        k for k in os.environ if k.startswith(("MODELSCOPE_", "HF_", "LLAMA_ASCEND_FETCH", "LLAMA_ASCEND_OFFLINE"))
    ]:
        del os.environ[key]
    with tempfile.TemporaryDirectory(prefix="bench-fetch-", dir=os.environ.get("BENCH_TMP")) as tmp:
        scratch = Path(tmp)
        model_dir, what = model_source(scratch, args.size_mb)
        hub = Hub(model_dir)
        try:
            results = [bench_source(s.strip(), hub, model_dir, scratch, args.runs) for s in args.sources.split(",")]
        finally:
            hub.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    load = os.getloadavg()[0]
    print(
        f"bench-fetch: {what}, served by llama_ascend_dev.hub on 127.0.0.1; best of {args.runs} runs; load {load:.1f}"
    )
    for r in results:
        print(f"\n{r['source']}: {r['files']} files, {r['bytes'] / 1e6:.1f} MB")
        print(
            f"  throughput   fetch {r['fetch_MBps']} MB/s | curl {r['curl_MBps']} | httpx {r['httpx_MBps']} | "
            f"curl+fsync {r['curl_fsync_MBps']} MB/s"
        )
        print(
            f"               fetch/curl {r['fetch_vs_curl']}x, fetch/httpx {r['fetch_vs_httpx']}x, "
            f"fetch/(curl+fsync) {r['fetch_vs_curl_fsync']}x  (target >= 0.9x; fetch verifies sha256 and fsyncs)"
        )
        print(
            f"  complete     is_complete {r['is_complete_ms']} ms | fetch() {r['fetch_complete_ms']} ms | "
            f"CLI --offline {r['cli_offline_complete_s']} s (with Python start-up)"
        )
        print(
            f"  kill at {r['killed_at_pct']}%  missing {r['missing_after_kill'] / 1e6:.1f} MB, re-run moved "
            f"{r['moved_by_rerun'] / 1e6:.1f} MB ({r['extra_bytes']:+d} bytes vs missing; "
            f"fetch reported {r['rerun_reported']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
