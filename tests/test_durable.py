"""Atomic JSON files on a volume several processes write (replicas sharing a ReadWriteMany claim)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llama_ascend import durable


def test_a_second_writer_between_anothers_write_and_rename_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer B runs whole while writer A sits between its write and its rename (two servers starting at once, each
    PID 1 in its container): both renames succeed, the file is one whole document, no temporary is left."""
    target = tmp_path / "preflight.json"
    rename = os.replace
    interleaved = []

    def replace_after_the_other_writer(src: str, dst: Path) -> None:
        if not interleaved:
            interleaved.append(src)
            durable.write_json_atomic(target, {"writer": "B"})
        rename(src, dst)

    monkeypatch.setattr(durable.os, "replace", replace_after_the_other_writer)
    durable.write_json_atomic(target, {"writer": "A"})
    assert interleaved, "the interleaving did not happen"
    assert json.loads(target.read_text()) == {"writer": "A"}  # the last rename wins
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preflight.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "marker.json"
    durable.write_json_atomic(target, {"version": 1})

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable.os, "fsync", no_space)
    with pytest.raises(OSError):
        durable.write_json_atomic(target, {"version": 2})
    assert json.loads(target.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["marker.json"]
