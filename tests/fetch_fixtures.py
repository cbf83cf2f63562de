"""Fixtures of the fetch tests, loaded with `pytest_plugins = ["fetch_fixtures"]`: `hub` serves `source_dir` (a fresh
make_model dir per test module) as the test module's REPO on 127.0.0.1; `volume` is where the weights go."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_ascend_dev.fetch_helpers import make_model
from llama_ascend_dev.hub import HubServer


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("hub") / "model")


@pytest.fixture
def hub(request: pytest.FixtureRequest, source_dir: Path):
    with HubServer() as server:
        server.add_repo(request.module.REPO, source_dir)
        yield server


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    return tmp_path / "models"
