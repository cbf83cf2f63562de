"""Helpers shared by the fetch tests and the fetch benchmark: real-shaped model dirs, configs, the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from llama_ascend.fetch.layout import JOURNAL, MARKER
from llama_ascend_dev import ROOT

if TYPE_CHECKING:
    from llama_ascend_dev.hub import HubServer

# What the default model.allow_patterns / ignore_patterns select from make_model's files.
SELECTED = {
    "config.json",
    "generation_config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
}
BIG = "model-00001-of-00002.safetensors"
SMALL_SHARD = "model-00002-of-00002.safetensors"


def write_safetensors(path: Path, tensors: dict[str, int]) -> None:
    """A valid safetensors file: an 8-byte header length, a JSON header, then the (random) U8 tensor data."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, size in tensors.items():
        header[name] = {"dtype": "U8", "shape": [size], "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for size in tensors.values():
            fh.write(os.urandom(size))


def make_model(directory: Path, big: int = 6 << 20, small: int = 3 << 20) -> Path:
    """A small HuggingFace-format Llama dir shaped like Meta-Llama-3.1-8B-Instruct's repo (two shards and an index,
    configs, tokenizer, README, and an `original/` consolidated checkpoint that the default patterns must skip)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 2048,
        "torch_dtype": "bfloat16",
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    (directory / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    vocab = {f"tok{i}": i for i in range(2048)}
    tokenizer = {"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": []}}
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer))
    (directory / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 4096}))
    (directory / "README.md").write_text("# tiny test llama\n")
    write_safetensors(
        directory / BIG, {"model.embed_tokens.weight": big // 2, "model.layers.0.mlp.weight": big - big // 2}
    )
    write_safetensors(directory / SMALL_SHARD, {"lm_head.weight": small})
    weight_map = {"model.embed_tokens.weight": BIG, "model.layers.0.mlp.weight": BIG, "lm_head.weight": SMALL_SHARD}
    index = {"metadata": {"total_size": big + small}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (directory / "original").mkdir(exist_ok=True)
    (directory / "original" / "consolidated.00.pth").write_bytes(os.urandom(256 << 10))
    (directory / "original" / "params.json").write_text(json.dumps({"dim": 64}))
    return directory


def digests(directory: Path, skip_marker: bool = True) -> dict[str, str]:
    """{relative path: sha256} of every file under `directory`."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if skip_marker and rel == MARKER:
            continue
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def expected(source_dir: Path, names: set[str] = SELECTED) -> dict[str, str]:
    return {k: v for k, v in digests(source_dir).items() if k in names}


def write_config(path: Path, source: str, repo_id: str, volume: Path, endpoint: str | None, **model: Any) -> Path:
    data = {
        "backend": "cpu",
        "model": {"source": source, "id": repo_id, "path": str(volume), "endpoint": endpoint, **model},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fetch subprocess: none of the caller's hub settings or tokens, fast retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELSCOPE_", "LLAMA_ASCEND", "HUGGING"))}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "LLAMA_ASCEND_FETCH_RETRY_MAX_DELAY": "1",
            "LLAMA_ASCEND_FETCH_LOG_INTERVAL": "0.25",
            "NO_COLOR": "1",
        }
    )
    env.update(extra)
    return env


def fetch_cmd(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "llama_ascend", "fetch", "--config", str(config), *args]


def run_fetch(
    config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fetch_cmd(config, *args), capture_output=True, text=True, timeout=timeout, env=env or clean_env(), cwd=ROOT
    )


def main_fetch(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`llama-ascend fetch` in this process (the real entry point, without a Python start-up): for the paths that
    never reach a hub client (complete, --offline, local). `env` is set on top of clean_env() for the call."""
    import contextlib
    import io

    from llama_ascend.cli import main

    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(clean_env(**env))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["fetch", "--config", str(config), *args])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(
        ["llama-ascend", "fetch", str(config), *args], code, out.getvalue(), err.getvalue()
    )


def start_fetch(
    config: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            fetch_cmd(config, *args), stdout=out, stderr=subprocess.STDOUT, env=env or clean_env(), cwd=ROOT
        )
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]


def staged_files(staging: Path) -> dict[str, tuple[int, bool]]:
    """{model path: (bytes on disk, whole)} of the `.partial` dir: `.incomplete` files are partial, others whole."""
    files = {}
    if staging.is_dir():
        for path in staging.rglob("*"):
            rel = path.relative_to(staging).as_posix()
            if path.is_file() and path.name != JOURNAL and not path.name.endswith(".tmp"):
                partial = rel.endswith(".incomplete")
                files[rel.removesuffix(".incomplete")] = (path.stat().st_size, not partial)
    return files


def staged_bytes(staging: Path) -> int:
    """Bytes of the model in the `.partial` dir, whole files and partial ones."""
    return sum(size for size, _ in staged_files(staging).values())


def killed_halfway(
    config_file: Path, hub: HubServer, after_bytes: int, staging: Path, env: dict[str, str] | None = None
) -> None:
    """A fetch SIGKILLed while the hub holds it after `after_bytes` body bytes, once the client has written some of
    them into `staging` (bytes still in the socket buffers at the kill are lost, as they would be)."""
    hold = hub.hold(after_bytes=after_bytes)
    proc = start_fetch(config_file, env=env)
    try:
        assert hold.wait_reached(alive=lambda: proc.poll() is None), "the fetch ended before the hold"
        assert wait_for(lambda: staged_bytes(staging) > 0 or proc.poll() is not None, timeout=120)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    finally:
        hub.release()


def wait_for(predicate: Any, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def loadable_partial_state(final: Path, want: dict[str, str]) -> str | None:
    """What is wrong if the model dir exists without being complete and identical (the atomicity invariant)."""
    if not final.exists():
        return None
    if not (final / MARKER).is_file():
        return f"{final} exists without a marker: {sorted(p.name for p in final.iterdir())}"
    got = digests(final)
    if got != want:
        return f"{final} differs from the source: {sorted(set(got.items()) ^ set(want.items()))[:4]}"
    return None
