"""`llama-ascend fetch` from HuggingFace: huggingface_hub against the local test hub (HF_ENDPOINT), through the CLI.

huggingface_hub can be pointed at any endpoint (HF_ENDPOINT or `endpoint=`), so the same guarantees are tested for
real here: gated repos and tokens, resume after a dropped connection or a kill, 5xx, corrupted bytes, errors.
"""

from __future__ import annotations

import json
import os
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
    write_config,
)
from llama_ascend_dev.hub import HubServer

pytest_plugins = ["fetch_fixtures"]  # source_dir, hub, volume
REPO = "meta-llama/Tiny-Llama-3.1-Instruct"


@pytest.fixture
def config_file(tmp_path: Path, volume: Path) -> Path:
    """No endpoint in the config: the tests point huggingface_hub at the test hub with HF_ENDPOINT."""
    return write_config(tmp_path / "hf.yaml", "huggingface", REPO, volume, None)


def env_for(hub: HubServer, **extra: str) -> dict[str, str]:
    return clean_env(HF_ENDPOINT=hub.url, **extra)


def final_dir(volume: Path) -> Path:
    return volume / "huggingface" / REPO / "main"


def test_fetch_through_hf_endpoint_is_byte_identical_and_verified(
    config_file: Path, hub: HubServer, source_dir: Path, volume: Path
):
    proc = run_fetch(config_file, env=env_for(hub))
    assert proc.returncode == 0, proc.stderr
    final = final_dir(volume)
    assert digests(final) == expected(source_dir)
    marker = json.loads((final / MARKER).read_text())
    assert marker["commit"] == hub.repos[REPO].commit  # the branch was resolved to its commit once
    assert marker["files"][BIG]["sha256"] == expected(source_dir)[BIG]  # LFS files: sha256
    assert marker["files"]["config.json"]["git_oid"] == hub.repos[REPO].files["config.json"].git_oid  # others: git id
    assert all(f"/resolve/{hub.repos[REPO].commit}/" in r.path for r in hub.file_requests())
    assert not any(r.file and r.file.startswith("original/") for r in hub.requests)
    assert f"fetch: {REPO}@main complete in {final}: 8 files" in proc.stdout
    assert fetch.is_complete(load_config(config_file))
    assert not (volume / ".cache" / "huggingface" / "hub").exists()  # no second copy in an HF cache


def test_gated_repo_needs_the_token_and_it_is_never_printed(
    tmp_path: Path, source_dir: Path, volume: Path, config_file: Path
):
    secret = "hf_" + os.urandom(12).hex()
    with HubServer(token=secret) as hub:
        hub.add_repo(REPO, source_dir)
        anonymous = run_fetch(config_file, env=env_for(hub))
        assert anonymous.returncode == 2
        assert f"huggingface model {REPO} revision main: access denied" in anonymous.stderr
        assert "export $HF_TOKEN or mount it and set model.token_file" in anonymous.stderr
        wrong = run_fetch(config_file, env=env_for(hub, HF_TOKEN="hf_wrong"))
        assert wrong.returncode == 2
        assert "HTTP 403" in wrong.stderr and "accept the model's license" in wrong.stderr
        token_file = tmp_path / "hf-token"
        token_file.write_text(secret)
        by_file = write_config(tmp_path / "f.yaml", "huggingface", REPO, volume, None, token_file=str(token_file))
        ok = run_fetch(by_file, env=env_for(hub))
        assert ok.returncode == 0, ok.stderr
        assert digests(final_dir(volume)) == expected(source_dir)
        for proc in (anonymous, wrong, ok):
            assert secret not in proc.stdout + proc.stderr


def test_token_from_the_configured_variable(tmp_path: Path, source_dir: Path, volume: Path):
    secret = "hf_" + os.urandom(12).hex()
    with HubServer(token=secret) as hub:
        hub.add_repo(REPO, source_dir)
        config = write_config(tmp_path / "v.yaml", "huggingface", REPO, volume, hub.url, token_env="MY_HF_TOKEN")
        proc = run_fetch(config, env=clean_env(MY_HF_TOKEN=secret, HF_TOKEN="hf_not_this_one"))
        assert proc.returncode == 0, proc.stderr
        assert secret not in proc.stdout + proc.stderr


def test_dropped_connection_resumes_and_5xx_are_retried(
    config_file: Path, hub: HubServer, source_dir: Path, volume: Path
):
    hub.inject("drop", BIG, after=3_000_000)
    hub.inject("status", SMALL_SHARD, times=2, status=502)
    proc = run_fetch(config_file, env=env_for(hub))
    assert proc.returncode == 0, proc.stderr
    assert [r.range_start for r in hub.file_requests(BIG)] == [0, 3_000_000]
    assert hub.sent(BIG) == (source_dir / BIG).stat().st_size
    assert [r.status for r in hub.file_requests(SMALL_SHARD)] == [502, 502, 200]
    assert digests(final_dir(volume)) == expected(source_dir)


def test_corruption_is_refetched_once_then_fails_clearly(
    config_file: Path, hub: HubServer, source_dir: Path, volume: Path
):
    hub.inject("corrupt", "tokenizer.json", after=100, times=1)  # a non-LFS file: checked by its git blob id
    assert run_fetch(config_file, env=env_for(hub)).returncode == 0
    assert len(hub.file_requests("tokenizer.json")) == 2
    assert digests(final_dir(volume)) == expected(source_dir)

    other = write_config(config_file.parent / "rev.yaml", "huggingface", REPO, volume / "again", None)
    hub.inject("corrupt", BIG, after=5, times=-1)
    proc = run_fetch(other, env=env_for(hub))
    assert proc.returncode == 1
    assert f"huggingface model {REPO} revision main: {BIG}: sha256 mismatch" in proc.stderr
    assert "after 2 downloads" in proc.stderr
    assert len(hub.file_requests(BIG)) == 3  # 1 good above + 2 corrupted here
    assert not (volume / "again" / "huggingface" / REPO / "main").exists()


def test_missing_repo_and_revision(tmp_path: Path, hub: HubServer, volume: Path):
    missing = run_fetch(write_config(tmp_path / "m.yaml", "huggingface", "meta-llama/Nope", volume, hub.url))
    assert missing.returncode == 2
    assert "huggingface model meta-llama/Nope revision main not found" in missing.stderr
    assert "model or revision not found" in missing.stderr
    bad_rev = run_fetch(write_config(tmp_path / "r.yaml", "huggingface", REPO, volume, hub.url, revision="v0.0"))
    assert bad_rev.returncode == 2
    assert f"huggingface model {REPO} revision v0.0 not found" in bad_rev.stderr


def test_unreachable_hub_says_so_after_the_retries(tmp_path: Path, volume: Path):
    with HubServer() as hub:
        dead = hub.url  # nothing listens here once the hub is stopped
    proc = run_fetch(
        write_config(tmp_path / "d.yaml", "huggingface", REPO, volume, dead),
        env=clean_env(LLAMA_ASCEND_FETCH_RETRIES="2"),
    )
    assert proc.returncode == 1
    assert f"huggingface model {REPO} revision main: (listing): failed after 2 retries" in proc.stderr
    assert f"check the network and the endpoint {dead}" in proc.stderr


def test_killed_fetch_resumes_with_only_the_missing_bytes(
    config_file: Path, hub: HubServer, source_dir: Path, volume: Path
):
    total = sum((source_dir / name).stat().st_size for name in SELECTED)
    killed_halfway(config_file, hub, total // 2, final_dir(volume).parent / ".main.partial", env=env_for(hub))
    assert not final_dir(volume).exists()
    on_disk = staged_bytes(final_dir(volume).parent / ".main.partial")
    assert on_disk > 0
    mark = hub.mark()
    rerun = run_fetch(config_file, env=env_for(hub))
    assert rerun.returncode == 0, rerun.stderr
    assert hub.sent(since=mark) == total - on_disk
    assert digests(final_dir(volume)) == expected(source_dir)


def test_offline_mode_of_huggingface_needs_no_endpoint(config_file: Path, hub: HubServer, volume: Path):
    assert run_fetch(config_file, env=env_for(hub)).returncode == 0
    hub.stop()
    proc = main_fetch(config_file, HF_HUB_OFFLINE="1")
    assert proc.returncode == 0, proc.stderr
    assert "already complete" in proc.stdout
