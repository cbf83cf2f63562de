"""`llama-ascend fetch` from ModelScope: the real `modelscope` client against the local test hub, through the real CLI.

Each guarantee of the fetch has a test here: atomic, resumable, verified, idempotent and fast (also offline),
concurrent, disk space; plus the errors users see and the metrics textfile.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from llama_ascend import fetch
from llama_ascend.config import load_config
from llama_ascend_dev.fetch_helpers import (
    BIG,
    MARKER,
    SELECTED,
    SMALL_SHARD,
    clean_env,
    digests,
    expected,
    killed_halfway,
    main_fetch,
    run_fetch,
    staged_bytes,
    start_fetch,
    wait_for,
    write_config,
)
from llama_ascend_dev.hub import HubServer

pytest_plugins = ["fetch_fixtures"]  # source_dir, hub, volume
REPO = "LLM-Research/Tiny-Llama-3.1"


@pytest.fixture
def config_file(tmp_path: Path, hub: HubServer, volume: Path) -> Path:
    return write_config(tmp_path / "fetch.yaml", "modelscope", REPO, volume, hub.url)


def final_dir(volume: Path, revision: str = "master") -> Path:
    return volume / "modelscope" / REPO / revision


def partial_files(volume: Path) -> list[str]:
    return sorted(p.name for p in volume.rglob("*.incomplete"))


# -- the happy path, layout, marker --------------------------------------------------------------------------------
def test_fetch_lays_out_only_what_vllm_loads_byte_identical(
    config_file: Path, hub: HubServer, source_dir: Path, volume: Path
):
    proc = run_fetch(config_file)
    assert proc.returncode == 0, proc.stderr
    final = final_dir(volume)
    assert digests(final) == expected(source_dir)  # no README.md, nothing from original/
    assert not any(r.file and r.file.startswith("original/") for r in hub.requests)
    marker = json.loads((final / MARKER).read_text())
    assert marker["source"] == "modelscope" and marker["id"] == REPO and marker["revision"] == "master"
    assert marker["commit"] == hub.repos[REPO].commit
    assert set(marker["files"]) == SELECTED
    assert marker["files"][BIG]["sha256"] == expected(source_dir)[BIG]
    # nothing of the fetch is left beside the model dir
    assert sorted(p.name for p in final.parent.iterdir()) == ["master"]
    assert f"fetch: {REPO}@master complete in {final}: 8 files" in proc.stdout
    assert "MB/s" in proc.stdout


def test_complete_cache_is_recognised_from_the_marker_without_network_or_hashing(
    config_file: Path, hub: HubServer, volume: Path
):
    assert run_fetch(config_file).returncode == 0
    config = load_config(config_file)
    assert fetch.is_complete(config)
    # Same size and mtime, other bytes: only a re-hash could tell, and the fast path must not hash 16 GB per start.
    shard = final_dir(volume) / BIG
    stat = shard.stat()
    with shard.open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff" * 16)
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fetch.is_complete(config)
    requests_before = len(hub.requests)
    again = main_fetch(config_file)
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stdout
    assert len(hub.requests) == requests_before  # no listing, no download
    hub.stop()  # the hub is gone: a complete cache does not care, online or offline
    for args in ((), ("--offline",)):
        proc = main_fetch(config_file, *args)
        assert proc.returncode == 0, proc.stderr
        assert "already complete" in proc.stdout


def test_offline_without_weights_fails_and_names_the_fix(config_file: Path, hub: HubServer, volume: Path):
    proc = main_fetch(config_file, "--offline")
    assert proc.returncode == 1
    assert f"offline: the weights of {REPO}@master are not complete in {final_dir(volume)}" in proc.stderr
    assert "run `llama-ascend fetch` with network access" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert hub.requests == []
    env_proc = main_fetch(config_file, LLAMA_ASCEND_OFFLINE="1")
    assert env_proc.returncode == 1 and "offline:" in env_proc.stderr


def test_offline_rehashes_a_touched_file_and_catches_a_changed_one(config_file: Path, volume: Path):
    assert run_fetch(config_file).returncode == 0
    final = final_dir(volume)
    os.utime(final / "config.json")  # same bytes, new mtime: the marker no longer matches the stat
    config = load_config(config_file)
    assert not fetch.is_complete(config)
    proc = main_fetch(config_file, "--offline")
    assert proc.returncode == 0, proc.stderr  # re-hashed against the marker's sha256
    data = bytearray((final / SMALL_SHARD).read_bytes())
    data[-1] ^= 0xFF
    (final / SMALL_SHARD).write_bytes(bytes(data))
    bad = main_fetch(config_file, "--offline")
    assert bad.returncode == 1
    assert f"{final / SMALL_SHARD} is missing or changed since it was verified" in bad.stderr


# -- fault injection -----------------------------------------------------------------------------------------------
def test_connection_dropped_mid_file_resumes_from_the_byte_it_had(
    config_file: Path, hub: HubServer, source_dir: Path, volume: Path
):
    hub.inject("drop", BIG, after=2_500_000)
    proc = run_fetch(config_file)
    assert proc.returncode == 0, proc.stderr
    assert digests(final_dir(volume)) == expected(source_dir)
    gets = hub.file_requests(BIG)
    assert [r.range_start for r in gets] == [0, 2_500_000]
    assert hub.sent(BIG) == (source_dir / BIG).stat().st_size  # not one byte twice


def test_server_errors_then_success(config_file: Path, hub: HubServer, source_dir: Path, volume: Path):
    hub.inject("status", BIG, times=2, status=500)
    hub.inject("status", "config.json", times=1, status=503)
    proc = run_fetch(config_file)
    assert proc.returncode == 0, proc.stderr
    assert [r.status for r in hub.file_requests(BIG)] == [500, 500, 200]
    assert [r.status for r in hub.file_requests("config.json")] == [503, 200]
    assert digests(final_dir(volume)) == expected(source_dir)


def test_corrupted_once_is_fetched_again(config_file: Path, hub: HubServer, source_dir: Path, volume: Path):
    hub.inject("corrupt", SMALL_SHARD, after=1234, times=1)
    proc = run_fetch(config_file)
    assert proc.returncode == 0, proc.stderr
    assert len(hub.file_requests(SMALL_SHARD)) == 2
    assert digests(final_dir(volume)) == expected(source_dir)


def test_corrupted_every_time_fails_clearly_after_one_refetch(config_file: Path, hub: HubServer, volume: Path):
    hub.inject("corrupt", SMALL_SHARD, after=1234, times=-1)
    proc = run_fetch(config_file)
    assert proc.returncode == 1
    assert f"modelscope model {REPO} revision master: {SMALL_SHARD}: sha256 mismatch" in proc.stderr
    assert "after 2 downloads" in proc.stderr
    assert len(hub.file_requests(SMALL_SHARD)) == 2
    assert not final_dir(volume).exists()  # nothing a later serve would load
    staging = final_dir(volume).parent / ".master.partial"
    assert not (staging / SMALL_SHARD).exists() and not (staging / f"{SMALL_SHARD}.incomplete").exists()
    assert not fetch.is_complete(load_config(config_file))


def test_missing_repo_and_revision_are_config_errors(tmp_path: Path, hub: HubServer, volume: Path):
    missing = run_fetch(write_config(tmp_path / "a.yaml", "modelscope", "LLM-Research/No-Such-Model", volume, hub.url))
    assert missing.returncode == 2
    assert "modelscope model LLM-Research/No-Such-Model revision master not found" in missing.stderr
    assert "model or revision not found" in missing.stderr and "check model.id and model.revision" in missing.stderr
    bad_rev = run_fetch(write_config(tmp_path / "b.yaml", "modelscope", REPO, volume, hub.url, revision="v9.9"))
    assert bad_rev.returncode == 2
    assert f"modelscope model {REPO} revision v9.9 not found" in bad_rev.stderr
    assert "Traceback" not in missing.stderr + bad_rev.stderr


def progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if f"fetch {REPO}:" in line and "MB/s" in line and "ETA" in line]


def test_a_long_download_reports_progress_lines(
    config_file: Path, hub: HubServer, source_dir: Path, volume: Path, tmp_path: Path
):
    hold = hub.hold(after_bytes=1_000_000)  # the download stays unfinished until a progress line has been logged
    log = tmp_path / "fetch.log"
    proc = start_fetch(config_file, log=log)
    try:
        assert hold.wait_reached(alive=lambda: proc.poll() is None), log.read_text()
        assert wait_for(lambda: progress_lines(log.read_text()) or proc.poll() is not None, timeout=120), (
            log.read_text()
        )
    finally:
        hub.release()
    assert proc.wait(timeout=120) == 0, log.read_text()
    assert progress_lines(log.read_text())  # periodic plain lines, no bar: stderr is not a terminal
    assert digests(final_dir(volume)) == expected(source_dir)


def test_stalled_server_times_out_and_says_how_often_it_retried(config_file: Path, hub: HubServer, volume: Path):
    hub.inject("stall", BIG, times=-1, after=1_000_000, seconds=30)
    env = clean_env(LLAMA_ASCEND_FETCH_TIMEOUT="1", LLAMA_ASCEND_FETCH_RETRIES="1")
    proc = run_fetch(config_file, env=env, timeout=60)
    assert proc.returncode == 1
    assert f"modelscope model {REPO} revision master: {BIG}: timed out after 1 retries" in proc.stderr
    assert "LLAMA_ASCEND_FETCH_TIMEOUT" in proc.stderr
    assert not final_dir(volume).exists()


def test_token_is_used_from_the_token_file_and_never_printed(tmp_path: Path, source_dir: Path, volume: Path):
    secret = "ms-" + os.urandom(8).hex()
    with HubServer(token=secret) as hub:
        hub.add_repo(REPO, source_dir)
        config = write_config(tmp_path / "t.yaml", "modelscope", REPO, volume, hub.url)
        denied = run_fetch(config)
        assert denied.returncode == 2
        assert "access denied" in denied.stderr and "model.token_file" in denied.stderr
        token_file = tmp_path / "token"
        token_file.write_text(secret + "\n")
        config = write_config(tmp_path / "t.yaml", "modelscope", REPO, volume, hub.url, token_file=str(token_file))
        ok = run_fetch(config, env=clean_env(HF_TOKEN="hf-not-for-modelscope"))
        assert ok.returncode == 0, ok.stderr
        assert secret not in ok.stdout + ok.stderr + denied.stdout + denied.stderr


# -- atomic, resumable, concurrent ---------------------------------------------------------------------------------
def test_killed_fetch_leaves_nothing_loadable_and_rerun_moves_only_missing_bytes(
    config_file: Path, hub: HubServer, source_dir: Path, volume: Path, tmp_path: Path
):
    total = sum((source_dir / name).stat().st_size for name in SELECTED)
    killed_halfway(config_file, hub, total // 2, final_dir(volume).parent / ".master.partial")
    final = final_dir(volume)
    assert not final.exists()
    assert not fetch.is_complete(load_config(config_file))
    on_disk = staged_bytes(final.parent / ".master.partial")
    assert on_disk > 0
    mark = hub.mark()
    rerun = run_fetch(config_file)
    assert rerun.returncode == 0, rerun.stderr
    assert hub.sent(since=mark) == total - on_disk  # exactly the missing bytes
    assert digests(final) == expected(source_dir)
    assert f"({(total - on_disk) / 1e6:.1f} MB downloaded)" in rerun.stdout


@pytest.mark.parametrize("pods", [2, 4])
def test_pods_sharing_one_volume_download_each_file_once(
    pods: int, config_file: Path, hub: HubServer, source_dir: Path, volume: Path, tmp_path: Path
):
    """N replicas on one ReadWriteMany claim: one fetches (the hub holds it until every other waits on the lease),
    the others find the weights complete; every file crosses the wire once."""
    hold = hub.hold(after_bytes=1_000_000)
    logs = [tmp_path / f"pod-{i}.log" for i in range(pods)]
    procs = [start_fetch(config_file, log=log) for log in logs]  # at the same time
    try:
        assert hold.wait_reached(alive=lambda: all(p.poll() is None for p in procs)), [log.read_text() for log in logs]
        waiting = lambda: sum("is being fetched by pid" in log.read_text() for log in logs) == pods - 1  # noqa: E731
        assert wait_for(lambda: waiting() or any(p.poll() is not None for p in procs), timeout=120)
    finally:
        hub.release()
    assert [p.wait(timeout=120) for p in procs] == [0] * pods, [log.read_text() for log in logs]
    for name in SELECTED:
        assert len([r for r in hub.file_requests(name) if r.status in (200, 206)]) == 1, name
    assert digests(final_dir(volume)) == expected(source_dir)
    outputs = sorted((log.read_text() for log in logs), key=lambda out: "is being fetched by" in out)
    assert "downloaded)" in outputs[0]  # one of them downloaded ...
    for waited in outputs[1:]:  # ... the others waited for it
        assert "is being fetched by pid" in waited and "completed by another fetcher" in waited


def test_lease_of_a_killed_fetcher_is_taken_over_at_once(
    config_file: Path, hub: HubServer, source_dir: Path, volume: Path, tmp_path: Path
):
    env = clean_env(LLAMA_ASCEND_FETCH_LEASE_STALE="3600")  # so only seeing the dead process can free the lease
    hold = hub.hold(after_bytes=1_000_000)
    first = start_fetch(config_file, env=env, log=tmp_path / "a.log")
    logs = tmp_path / "b.log"
    try:
        assert hold.wait_reached(alive=lambda: first.poll() is None), (tmp_path / "a.log").read_text()
        second = start_fetch(config_file, env=env, log=logs)
        assert wait_for(lambda: "is being fetched by pid" in logs.read_text() or second.poll() is not None, 120)
        first.send_signal(signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
    finally:
        hub.release()
    assert second.wait(timeout=120) == 0, logs.read_text()
    assert f"its process is gone (pid {first.pid} on" in logs.read_text()
    assert digests(final_dir(volume)) == expected(source_dir)


def test_a_frozen_fetcher_loses_its_lease_stops_and_the_other_one_finishes(
    config_file: Path, hub: HubServer, source_dir: Path, volume: Path, tmp_path: Path
):
    env = clean_env(LLAMA_ASCEND_FETCH_LEASE_STALE="1")  # heartbeat every 1/6 s, stale after 1 s
    logs = tmp_path / "a.log", tmp_path / "b.log"
    hold = hub.hold(after_bytes=500_000)  # both stay held until the first one has stopped
    first = start_fetch(config_file, env=env, log=logs[0])
    try:
        assert hold.wait_reached(alive=lambda: first.poll() is None), logs[0].read_text()
        first.send_signal(signal.SIGSTOP)  # a paused VM: alive, holding the lease, not beating
        try:
            second = start_fetch(config_file, env=env, log=logs[1])
            resumed = lambda: "not resuming its partial files" in logs[1].read_text()  # noqa: E731
            assert wait_for(lambda: resumed() or second.poll() is not None, timeout=120), logs[1].read_text()
            assert "taking over" in logs[1].read_text() and "no heartbeat for" in logs[1].read_text()
        finally:
            first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=120) == 1  # it woke up, saw the lease gone and stopped writing
    finally:
        hub.release()
    assert "another fetcher took the lease over while this one was stalled" in logs[0].read_text()
    assert second.wait(timeout=120) == 0, logs[1].read_text()
    assert digests(final_dir(volume)) == expected(source_dir)


# -- disk space ----------------------------------------------------------------------------------------------------
def test_disk_space_is_checked_up_front_against_the_listing(config_file: Path, hub: HubServer, volume: Path):
    hub.repos[REPO].size_overrides[BIG] = 10 * 10**12  # the listing claims 10 TB
    proc = run_fetch(config_file)
    assert proc.returncode == 1
    assert (
        f"modelscope model {REPO} revision master: not enough disk space under {final_dir(volume).parent}"
        in proc.stderr
    )
    assert hub.file_requests() == []  # not one byte downloaded
    assert partial_files(volume) == [] and not final_dir(volume).exists()


@contextlib.contextmanager
def tmpfs(mount: Path, options: str):
    """A real filesystem with the given mount options (size=, ro); the test is skipped where mounting is not allowed."""
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path):
    with tmpfs(tmp_path / "small-disk", "size=14m") as mount:
        yield mount


def test_a_read_only_volume_is_named_with_the_fix(tmp_path: Path, hub: HubServer):
    with tmpfs(tmp_path / "ro-volume", "ro,size=1m") as volume:
        proc = run_fetch(write_config(tmp_path / "ro.yaml", "modelscope", REPO, volume, hub.url))
    assert proc.returncode == 1
    assert f"{REPO}@master: cannot write the weights under {volume}: Read-only file system" in proc.stderr
    assert "model.path must be a writable volume" in proc.stderr and "Traceback" not in proc.stderr


def test_disk_filling_up_midway_fails_clearly_and_leaves_no_partial_file(
    tmp_path: Path, hub: HubServer, small_disk: Path
):
    config = write_config(tmp_path / "d.yaml", "modelscope", REPO, small_disk, hub.url)
    hold = hub.hold(after_bytes=1_000_000)
    proc = start_fetch(
        config, log=tmp_path / "d.log", env=clean_env(LLAMA_ASCEND_FETCH_METRICS=str(tmp_path / "m.prom"))
    )
    try:
        assert hold.wait_reached(alive=lambda: proc.poll() is None), (tmp_path / "d.log").read_text()
        with pytest.raises(OSError), (small_disk / "filler").open("wb") as filler:  # another writer fills the volume
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
    finally:
        hub.release()  # the rest of the bytes arrive on a full disk
    assert proc.wait(timeout=120) == 1
    out = (tmp_path / "d.log").read_text()
    assert f"modelscope model {REPO} revision master: disk full under" in out
    assert "the partial files were removed" in out
    assert partial_files(small_disk) == []
    assert not final_dir(small_disk).exists()


# -- selection changes, pre-populated dirs, local source -----------------------------------------------------------
def test_new_patterns_fetch_only_the_new_files_into_the_live_dir(
    tmp_path: Path, config_file: Path, hub: HubServer, source_dir: Path, volume: Path
):
    assert run_fetch(config_file).returncode == 0
    final = final_dir(volume)
    inode = (final / BIG).stat().st_ino
    more = write_config(
        tmp_path / "more.yaml",
        "modelscope",
        REPO,
        volume,
        hub.url,
        allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.md"],
    )
    before = len(hub.file_requests())
    proc = run_fetch(more)
    assert proc.returncode == 0, proc.stderr
    assert [r.file for r in hub.file_requests()[before:]] == ["README.md"]
    assert (final / BIG).stat().st_ino == inode  # the live files were not touched
    assert digests(final) == expected(source_dir, SELECTED | {"README.md"})
    assert fetch.is_complete(load_config(more)) and not fetch.is_complete(load_config(config_file))


def test_a_dir_filled_by_hand_is_verified_not_downloaded(
    config_file: Path, hub: HubServer, source_dir: Path, volume: Path
):
    final = final_dir(volume)
    final.mkdir(parents=True)
    for name in SELECTED:
        shutil.copy(source_dir / name, final / name)
    data = bytearray((final / "tokenizer.json").read_bytes())
    data[10] ^= 0xFF  # one of them is damaged
    (final / "tokenizer.json").write_bytes(bytes(data))
    proc = run_fetch(config_file)
    assert proc.returncode == 0, proc.stderr
    assert [r.file for r in hub.file_requests()] == ["tokenizer.json"]
    assert digests(final) == expected(source_dir)
    assert (final / MARKER).is_file()


def test_local_source_is_verified(tmp_path: Path, source_dir: Path):
    local = tmp_path / "local-model"
    shutil.copytree(source_dir, local)
    config = tmp_path / "local.yaml"
    config.write_text(f"backend: cpu\nmodel:\n  source: local\n  path: {local}\n")
    ok = main_fetch(config)
    assert ok.returncode == 0, ok.stderr
    assert f"fetch: local model verified in {local}" in ok.stdout
    with (local / BIG).open("r+b") as fh:
        fh.truncate((local / BIG).stat().st_size - 100)
    bad = main_fetch(config)
    assert bad.returncode == 2
    assert f"{BIG}: the header describes" in bad.stderr and "truncated or padded" in bad.stderr


# -- metrics -------------------------------------------------------------------------------------------------------
def test_metrics_textfile_counts_bytes_runs_and_failures_by_source(
    tmp_path: Path, config_file: Path, hub: HubServer, source_dir: Path, volume: Path
):
    from prometheus_client.parser import text_string_to_metric_families

    prom = tmp_path / "metrics" / "fetch.prom"
    env = clean_env(LLAMA_ASCEND_FETCH_METRICS=str(prom))
    nope = write_config(tmp_path / "x.yaml", "modelscope", "LLM-Research/Nope", volume, hub.url)
    assert run_fetch(nope, env=env).returncode == 2
    assert run_fetch(config_file, env=env).returncode == 0
    assert main_fetch(config_file, LLAMA_ASCEND_FETCH_METRICS=str(prom)).returncode == 0  # the fast path: no write
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(prom.read_text())
        for s in family.samples
    }
    ok = (("model", f"{REPO}@master"), ("source", "modelscope"))
    total = sum((source_dir / name).stat().st_size for name in SELECTED)
    assert samples[("llama_ascend_fetch_downloaded_bytes_total", ok)] == total
    assert samples[("llama_ascend_fetch_downloaded_files_total", ok)] == len(SELECTED)
    assert samples[("llama_ascend_fetch_runs_total", ok)] == 1
    assert samples[("llama_ascend_fetch_model_bytes", ok)] == total
    assert samples[("llama_ascend_fetch_duration_seconds", ok)] > 0
    nope = (("model", "LLM-Research/Nope@master"), ("reason", "not_found"), ("source", "modelscope"))
    assert samples[("llama_ascend_fetch_failures_total", nope)] == 1
    assert not (volume / ".metrics").exists()  # all of the above wrote to $LLAMA_ASCEND_FETCH_METRICS


def test_metrics_go_next_to_the_weights_by_default(config_file: Path, volume: Path):
    from prometheus_client.parser import text_string_to_metric_families

    assert run_fetch(config_file).returncode == 0  # no $LLAMA_ASCEND_FETCH_METRICS
    prom = volume / ".metrics" / "llama_ascend_fetch.prom"
    families = text_string_to_metric_families(prom.read_text())
    runs = [s for family in families for s in family.samples if s.name == "llama_ascend_fetch_runs_total"]
    assert [(s.labels, s.value) for s in runs] == [({"model": f"{REPO}@master", "source": "modelscope"}, 1.0)]
    mtime = prom.stat().st_mtime_ns
    assert main_fetch(config_file).returncode == 0  # complete already: the fast path writes nothing
    assert prom.stat().st_mtime_ns == mtime
