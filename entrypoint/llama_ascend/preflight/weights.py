"""The weights on the volume: the served model dir has its files, complete as `fetch` defines it."""

from __future__ import annotations

from llama_ascend.config import Config
from llama_ascend.preflight.findings import Finding, fail, ok
from llama_ascend.preflight.sizing import gib


def fetch_fix(config: Config) -> str:
    if config.model.source == "local":
        return "point model.path at a HuggingFace-format model dir (the CPU stand-in: run `llama-ascend standin`)"
    return "run `llama-ascend fetch` with the same config (it resumes and verifies the download)"


def check_model_files(config: Config) -> Finding:
    """The served model dir has config.json and a tokenizer."""
    model_dir = config.model_dir
    if not model_dir.is_dir():
        return fail(
            "model-files",
            f"model dir {model_dir} does not exist",
            cause="the weights were never downloaded to this volume, or model.path points elsewhere",
            fix=fetch_fix(config),
        )
    missing = []
    if not (model_dir / "config.json").is_file():
        missing.append("config.json")
    tokenizer = [n for n in ("tokenizer.json", "tokenizer.model") if (model_dir / n).is_file()]
    if not tokenizer:
        missing.append("a tokenizer (tokenizer.json or tokenizer.model)")
    if missing:
        return fail(
            "model-files",
            f"{model_dir} lacks {' and '.join(missing)}",
            cause="the download is incomplete, or allow_patterns leave these files out",
            fix=fetch_fix(config),
        )
    return ok("model-files", f"{model_dir} has config.json and {tokenizer[0]}")


def check_weights(config: Config) -> Finding:
    """Complete as `fetch` defines it: its marker matches (hub sources), or every shard is whole (local)."""
    from llama_ascend import fetch

    model_dir = config.model_dir
    shards = sorted(model_dir.glob("*.safetensors")) if model_dir.is_dir() else []
    if fetch.is_complete(config):
        total = sum(p.stat().st_size for p in shards)
        how = "every shard whole" if config.model.source == "local" else "the fetch marker matches"
        return ok("weights", f"{len(shards)} safetensors shard(s), {gib(total)}, complete ({how})")
    if not model_dir.is_dir():
        return fail(
            "weights",
            f"no weights: {model_dir} does not exist",
            cause="the weights were never downloaded to this volume, or model.path points elsewhere",
            fix=fetch_fix(config),
        )
    problems = fetch.local_problems(model_dir)  # what is wrong with the files themselves
    if config.model.source != "local":
        problems.insert(
            0,
            "no matching completion marker from `llama-ascend fetch` (not fetched for this "
            "id/revision/patterns, or files changed since)",
        )
    shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
    return fail(
        "weights",
        f"{model_dir}: {shown}",
        cause="the download was interrupted or the files were changed after it",
        fix=fetch_fix(config),
    )
