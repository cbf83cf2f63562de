"""Where a fetch puts things on the volume, the completion marker, and `is_complete` (a marker check, no hashing)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_ascend.config import Config
from llama_ascend.durable import read_json
from llama_ascend.fetch.verify import local_problems

MARKER = ".llama-ascend-fetch.json"
JOURNAL = ".llama-ascend-staging.json"  # inside the .partial dir: what the files there were fetched as
MARKER_FORMAT = 1
INCOMPLETE = ".incomplete"


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None = None
    git_oid: str | None = None  # git blob id (sha1 over "blob <size>\0" + content): HuggingFace's id of non-LFS files

    def record(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256, "git_oid": self.git_oid}


@dataclass
class Manifest:
    commit: str | None
    files: list[RemoteFile]


def selected(files: list[RemoteFile], allow: list[str], ignore: list[str]) -> list[RemoteFile]:
    """The files vLLM needs: matching any allow glob and no ignore glob (fnmatch; `*` also crosses `/`)."""
    return [
        f
        for f in files
        if (not allow or any(fnmatch.fnmatchcase(f.path, p) for p in allow))
        and not any(fnmatch.fnmatchcase(f.path, p) for p in ignore)
    ]


@dataclass(frozen=True)
class Layout:
    final: Path

    @property
    def staging(self) -> Path:
        return self.final.parent / f".{self.final.name}.partial"

    @property
    def lease(self) -> Path:
        return self.final.parent / f".{self.final.name}.lease"

    @property
    def marker(self) -> Path:
        return self.final / MARKER


def same_model(marker: Mapping[str, Any], config: Config) -> bool:
    m = config.model
    return (
        marker.get("format") == MARKER_FORMAT
        and marker.get("source") == m.source
        and marker.get("id") == m.id
        and marker.get("revision") == m.effective_revision
        and isinstance(marker.get("files"), dict)
        and bool(marker["files"])
    )


def same_selection(marker: Mapping[str, Any], config: Config) -> bool:
    return marker.get("allow_patterns") == list(config.model.allow_patterns) and marker.get("ignore_patterns") == list(
        config.model.ignore_patterns
    )


def stat_matches(directory: Path, path: str, record: Mapping[str, Any]) -> bool:
    try:
        st = (directory / path).stat()
    except OSError:
        return False
    return st.st_size == record.get("size") and st.st_mtime_ns == record.get("mtime_ns")


def is_complete(config: Config) -> bool:
    """True when the weights the config names are complete on disk: a marker check, no network, no hashing."""
    if config.model.source == "local":
        return not local_problems(config.model_dir)
    marker = read_json(Layout(config.model_dir).marker)
    if marker is None or not same_model(marker, config) or not same_selection(marker, config):
        return False
    return all(stat_matches(config.model_dir, p, rec) for p, rec in marker["files"].items())
