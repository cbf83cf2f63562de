"""A fetch killed with SIGKILL at random points, 20 times in a row, ends byte-identical to the source.

$FETCH_KILLS overrides the number of kills, $FETCH_KILL_SEED replays a run (the seed is in every failure message).

Real processes, real kills, at points the test hub makes certain: it *holds* every connection at the chosen point
(on the arrival of the k-th request: start-up, listing, the first file; or after N more body bytes) until the kill
has landed, so no kill can come too late on a fast machine or too early on a slow one. A quarter of the kills come at a
random time during start-up instead (config, lease, the clients' imports), the hold on the first request
guaranteeing that the fetch cannot have finished by then. After every kill the model dir must not exist or be
complete (nothing a `serve` could load half-way); every run resumes each file from exactly the bytes on disk and
asks for no file that is already whole; the last run moves exactly the missing bytes.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from llama_ascend_dev.fetch_helpers import (
    SELECTED,
    clean_env,
    expected,
    loadable_partial_state,
    make_model,
    run_fetch,
    staged_bytes,
    staged_files,
    start_fetch,
    write_config,
)
from llama_ascend_dev.hub import HubServer

# The reference source gets the full 20; the HuggingFace path (our own resumable stream) 10, to keep the suite short.
KILLS = {"modelscope": 20, "huggingface": 10}
REPOS = {"modelscope": ("LLM-Research/Kill-Me", "master"), "huggingface": ("meta-llama/Kill-Me", "main")}


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("hub") / "Kill-Me", big=3 << 20, small=1 << 20)


def first_range_starts(hub: HubServer, since: int) -> dict[str, int]:
    """{file: the byte its first download since `since` asked to start at}."""
    starts: dict[str, int] = {}
    for request in hub.requests[since:]:
        if request.file is not None and request.method == "GET":
            starts.setdefault(request.file, request.range_start)
    return starts


def requests_before_files(hub: HubServer, source: str, repo: str, tmp_path: Path) -> int:
    """How many requests (info, listing) a fetch makes before its first file: a hold on any of them, or on the first
    file request, is certain to be reached while something is left to fetch."""
    mark = hub.mark()
    probe = write_config(tmp_path / "probe.yaml", source, repo, tmp_path / "probe", hub.url)
    assert run_fetch(probe).returncode == 0
    return next(i for i, r in enumerate(hub.requests[mark:]) if r.file is not None)


@pytest.mark.parametrize("source", sorted(REPOS))
def test_fetch_killed_at_random_points_ends_byte_identical(source: str, source_dir: Path, tmp_path: Path):
    seed = int(os.environ.get("FETCH_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    repo, revision = REPOS[source]
    volume = tmp_path / "models"
    final = volume / source / repo / revision
    staging = final.parent / f".{revision}.partial"
    want = expected(source_dir)
    total = sum((source_dir / name).stat().st_size for name in SELECTED)
    kills: list[str] = []
    with HubServer() as hub:
        hub.add_repo(repo, source_dir)
        listing = requests_before_files(hub, source, repo, tmp_path)
        config = write_config(tmp_path / "kill.yaml", source, repo, volume, hub.url)
        env = clean_env()
        for i in range(int(os.environ.get("FETCH_KILLS", KILLS[source]))):
            remaining = total - staged_bytes(staging)
            assert remaining > 0, f"seed {seed}: after kill {i - 1} ({kills[-1]}) nothing is left to fetch"
            kind = rng.random()
            if kind < 0.25:  # start-up: config, lease, the clients' imports
                hold = hub.hold(at_request=0)
                delay = rng.uniform(0.05, 1.0)
                point = f"{delay:.2f}s into start-up (or on its first request)"
            elif kind < 0.4:  # on the arrival of a listing / info / file request
                hold = hub.hold(at_request=rng.randint(0, listing))
                point = f"on request {hold.at_request}"
            else:  # mid-transfer
                hold = hub.hold(after_bytes=rng.randint(1, remaining - 1))
                point = f"after {hold.after_bytes} more bytes"
            on_disk, mark = staged_files(staging), hub.mark()
            proc = start_fetch(config, env=env)
            try:
                if hold.at_request == 0 and kind < 0.25:
                    hold.reached.wait(delay)
                else:
                    assert hold.wait_reached(alive=lambda p=proc: p.poll() is None), (
                        f"seed {seed}: run {i} exited ({proc.poll()}) before the hub held it {point}"
                    )
                proc.send_signal(signal.SIGKILL)
                assert proc.wait() == -signal.SIGKILL, f"seed {seed}: run {i} ended before its kill {point}"
            finally:
                hub.release()
            kills.append(point)
            problem = loadable_partial_state(final, want)
            assert problem is None, f"seed {seed}: after kill {i} ({point}): {problem}"
            starts = first_range_starts(hub, mark)
            resumed_from = {name: size for name, (size, whole) in on_disk.items() if not whole and name in starts}
            assert {name: starts[name] for name in resumed_from} == resumed_from, f"seed {seed}: run {i} ({point})"
            whole = {name for name, (_, done) in on_disk.items() if done}
            assert not whole & set(starts), (
                f"seed {seed}: run {i} ({point}) fetched whole files again: {whole & set(starts)}"
            )
        missing, mark = total - staged_bytes(staging), hub.mark()
        done = run_fetch(config, env=env)
        assert done.returncode == 0, f"seed {seed}: {done.stderr}"
        last_run = [(r.file, r.range_start, r.sent) for r in hub.requests[mark:] if r.file]
        assert hub.sent(since=mark) == missing, f"seed {seed}: {missing} bytes were missing, the last run: {last_run}"
    assert expected(final) == want, f"seed {seed}"
    assert not staging.exists() and not list(final.parent.glob(".*.lease*"))
