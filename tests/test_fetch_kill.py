"""A fetch killed with SIGKILL at random points, 20 times in a row, ends byte-identical to the source.

$FETCH_KILLS overrides the number of kills, $FETCH_KILL_SEED replays a run (the seed is in every failure message).

Real processes, real kills: at start-up or listing (a random time), or mid-transfer (after a random number of the
bytes still missing). After every kill the model dir must not exist or be complete (nothing a `serve` could load
half-way), and the bytes moved over all runs stay close to the model's size (resumes, not restarts).
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from fetch_support import (
    SELECTED,
    clean_env,
    expected,
    loadable_partial_state,
    make_model,
    run_fetch,
    start_fetch,
    wait_for,
    write_config,
)
from hubserver import HubServer

# The reference source gets the full 20; the HuggingFace path (our own resumable stream) 10, to keep the suite short.
KILLS = {"modelscope": 20, "huggingface": 10}
REPOS = {"modelscope": ("LLM-Research/Kill-Me", "master"), "huggingface": ("meta-llama/Kill-Me", "main")}


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("hub") / "Kill-Me", big=3 << 20, small=1 << 20)


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
    with HubServer() as hub:
        hub.add_repo(repo, source_dir)
        hub.inject("slow", None, times=-1, rate=3_000_000)  # so that a kill lands before the bytes run out
        config = write_config(tmp_path / "kill.yaml", source, repo, volume, hub.url)
        env = clean_env()
        kills = []
        kill_count = int(os.environ.get("FETCH_KILLS", KILLS[source]))
        for i in range(kill_count):
            on_disk = sum(
                p.stat().st_size for p in staging.rglob("*") if p.is_file() and p.name != ".llama-ascend-staging.json"
            )
            remaining = max(1, total - on_disk)
            mark = hub.mark()
            proc = start_fetch(config, env=env)
            if rng.random() < 0.25:  # start-up, config, lease, listing
                delay = rng.uniform(0.05, 1.0)
                point = f"after {delay:.2f}s"
                wait_for(lambda p=proc: p.poll() is not None, timeout=delay)
            else:
                target = rng.randint(1, remaining // 3 + 1)
                point = f"after {target} more bytes"
                reached = lambda p=proc, m=mark, t=target: hub.sent(since=m) >= t or p.poll() is not None  # noqa: E731
                assert wait_for(reached, timeout=60, interval=0.005)
            assert proc.poll() is None, f"seed {seed}: run {i} finished before its kill ({point})"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills.append(point)
            problem = loadable_partial_state(final, want)
            assert problem is None, f"seed {seed}: after kill {i} ({point}): {problem}"
        hub.clear_faults()
        done = run_fetch(config, env=env)
        assert done.returncode == 0, f"seed {seed}: {done.stderr}"
        moved = hub.sent()
    assert expected(final) == want, f"seed {seed}"
    assert not staging.exists() and not list(final.parent.glob(".*.lease"))
    # each kill may lose what was in flight (socket buffers, the last chunk), never a whole file's worth
    assert len(kills) == kill_count
    assert moved < total + kill_count * (1 << 20), (
        f"seed {seed}: {moved} bytes moved for a {total}-byte model; kills: {kills}"
    )
