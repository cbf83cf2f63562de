"""Allocated cards (device plugin annotation / ASCEND_VISIBLE_DEVICES) -> ASCEND_RT_VISIBLE_DEVICES for the runtime."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llama_ascend import devices


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("0", [0]),
        ("0,1", [0, 1]),
        ("0-3,6", [0, 1, 2, 3, 6]),
        ("Ascend910-14,Ascend910-15", [14, 15]),
        ("Ascend910-2 Ascend910-0", [0, 2]),
        ("Ascend910B-1", [1]),
        (" 3 , 3 ", [3]),
    ],
)
def test_parse_ids(value: str, ids: list[int]) -> None:
    assert devices.parse_ids(value) == ids


@pytest.mark.parametrize("value", ["all", "3-1", "davinci0", "0;1"])
def test_parse_ids_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        devices.parse_ids(value)


def node(root: Path, *cards: int) -> Path:
    (root / "dev").mkdir(parents=True, exist_ok=True)
    for card in cards:
        (root / "dev" / f"davinci{card}").touch()
    (root / "dev" / "davinci_manager").touch()  # not a card
    return root


def annotations(tmp_path: Path, value: str) -> Path:
    path = tmp_path / "annotations"
    path.write_text(f'kubernetes.io/config.source="api"\n{devices.ANNOTATION_KEY}="{value}"\n')
    return path


def test_present_devices_ignores_management_nodes(tmp_path: Path) -> None:
    assert devices.present_devices(node(tmp_path, 3, 1, 12)) == [1, 3, 12]
    assert devices.present_devices(tmp_path / "nowhere") == []


def test_kubernetes_allocation_maps_to_logical_ids(tmp_path: Path) -> None:
    # The device plugin gave cards 14 and 15; the Ascend Docker Runtime mounted only those: logical 0 and 1.
    root = node(tmp_path / "root", 14, 15)
    env = devices.runtime_device_env({}, annotations(tmp_path, "Ascend910-14,Ascend910-15"), root)
    assert env == {"ASCEND_RT_VISIBLE_DEVICES": "0,1"}


def test_privileged_container_sees_all_cards(tmp_path: Path) -> None:
    # All eight nodes visible (privileged / hostPath /dev): the allocated cards keep their positions.
    root = node(tmp_path / "root", *range(8))
    env = devices.runtime_device_env({"ASCEND_VISIBLE_DEVICES": "4-5"}, tmp_path / "no-annotations", root)
    assert env == {"ASCEND_RT_VISIBLE_DEVICES": "4,5"}


def test_annotation_wins_over_a_stale_variable(tmp_path: Path) -> None:
    root = node(tmp_path / "root", 2, 3)
    env = devices.runtime_device_env({"ASCEND_VISIBLE_DEVICES": "0,1"}, annotations(tmp_path, "Ascend910-3"), root)
    assert env == {"ASCEND_RT_VISIBLE_DEVICES": "1"}


def test_annotations_path_from_the_environment(tmp_path: Path) -> None:
    root = node(tmp_path / "root", 6, 7)
    path = annotations(tmp_path, "Ascend910-6,Ascend910-7")
    env = devices.runtime_device_env({devices.ANNOTATIONS_ENV: str(path)}, None, root)
    assert env == {"ASCEND_RT_VISIBLE_DEVICES": "0,1"}


@pytest.mark.parametrize(
    ("environ", "why"),
    [
        ({"ASCEND_RT_VISIBLE_DEVICES": "1", "ASCEND_VISIBLE_DEVICES": "2,3"}, "the user's choice is kept"),
        ({}, "nothing says which cards were allocated"),
        ({"ASCEND_VISIBLE_DEVICES": "2,9"}, "card 9 is not mounted: preflight reports it"),
        ({"ASCEND_VISIBLE_DEVICES": "all"}, "malformed: preflight reports it"),
    ],
)
def test_left_alone(tmp_path: Path, environ: dict[str, str], why: str) -> None:
    root = node(tmp_path / "root", 2, 3)
    assert devices.runtime_device_env(environ, tmp_path / "no-annotations", root) == {}, why


def test_no_dev_to_look_at_numbers_from_zero(tmp_path: Path) -> None:
    env = devices.runtime_device_env({"ASCEND_VISIBLE_DEVICES": "5,6,7"}, tmp_path / "none", tmp_path / "empty")
    assert env == {"ASCEND_RT_VISIBLE_DEVICES": "0,1,2"}


def test_read_annotation_unquotes(tmp_path: Path) -> None:
    path = tmp_path / "annotations"
    path.write_text('a="1"\nhuawei.com/AscendReal="Ascend910-0,Ascend910-1"\nb=plain\n')
    assert devices.read_annotation(path) == "Ascend910-0,Ascend910-1"
    assert devices.read_annotation(path, "b") == "plain"
    assert devices.read_annotation(path, "missing") is None
    assert devices.read_annotation(tmp_path / "absent") is None


def test_malformed_annotation_is_an_error_for_allocation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("huawei.com/AscendReal='Ascend910-x'")):
        devices.allocation({}, annotations(tmp_path, "Ascend910-x"))
