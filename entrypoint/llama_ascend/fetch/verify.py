"""Is a file, or a model dir, what it should be: digests against the hub's listing, safetensors structure, shards."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from llama_ascend.durable import read_json


def digest_file(file: Path, record: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, hexdigest) of the strongest digest the record has for this file, or None when it has none."""
    if record.get("sha256"):
        h = hashlib.sha256()
        kind = "sha256"
    elif record.get("git_oid"):
        h = hashlib.sha1(b"blob %d\0" % file.stat().st_size)
        kind = "git_oid"
    else:
        return None
    with file.open("rb") as fh:
        while block := fh.read(8 << 20):
            h.update(block)
    return kind, h.hexdigest()


def content_matches(file: Path, record: Mapping[str, Any]) -> bool:
    """Size, then digest (when the hub gave one)."""
    try:
        if file.stat().st_size != record.get("size"):
            return False
    except OSError:
        return False
    digest = digest_file(file, record)
    return digest is None or digest[1] == record.get(digest[0])


def safetensors_problem(file: Path) -> str | None:
    """Why `file` is not a complete safetensors file (header length, JSON header, data size), or None."""
    try:
        size = file.stat().st_size
        with file.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{size} bytes, too short for a safetensors header"
            n = int.from_bytes(head, "little")
            if n <= 1 or 8 + n > size or n > 100 << 20:
                return f"header length {n} does not fit the file size {size}"
            header = json.loads(fh.read(n))
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    except ValueError:
        return "the header is not valid JSON"
    if not isinstance(header, dict):
        return "the header is not a JSON object"
    tensors = [v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    ends = [v["data_offsets"][1] for v in tensors]
    expected = 8 + n + (max(ends) if ends else 0)
    if expected != size:
        return f"the header describes {expected} bytes but the file has {size} (truncated or padded)"
    return None


def weights_problems(locate: Callable[[str], Path], paths: list[str]) -> list[str]:
    """Structural checks that catch a wrong selection or a broken upload: safetensors present, shards complete.
    `locate` maps a model path to the file on disk."""
    problems = []
    tensors = [p for p in paths if p.endswith(".safetensors")]
    if not tensors:
        problems.append("no *.safetensors weights (check model.allow_patterns / model.ignore_patterns)")
    for p in tensors:
        why = safetensors_problem(locate(p))
        if why:
            problems.append(f"{p}: {why}")
    for index in (p for p in paths if p.endswith(".safetensors.index.json")):
        data = read_json(locate(index))
        if data is None or not isinstance(data.get("weight_map"), dict):
            problems.append(f"{index}: not a JSON object with a weight_map")
            continue
        base = str(Path(index).parent) if "/" in index else ""
        for shard in sorted(set(map(str, data["weight_map"].values()))):
            shard_path = f"{base}/{shard}" if base else shard
            if shard_path not in paths:
                problems.append(f"{index}: shard {shard} is missing")
    return problems


def local_problems(directory: Path) -> list[str]:
    """What keeps `directory` from being a loadable model dir (config, tokenizer, whole safetensors, shards)."""
    if not directory.is_dir():
        return [f"{directory} is not a directory"]
    paths = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    problems = []
    if "config.json" not in paths:
        problems.append("config.json is missing")
    elif read_json(directory / "config.json") is None:
        problems.append("config.json is not a JSON object")
    if not any(p in paths for p in ("tokenizer.json", "tokenizer.model")):
        problems.append("no tokenizer (tokenizer.json or tokenizer.model)")
    return problems + weights_problems(lambda p: directory / p, [p for p in paths if not p.startswith("original/")])
