"""The acceptance tier of an Ascend host (`make test-npu`): the profile in $LLAMA_ASCEND_NPU_CONFIG (default the
reference) must pass preflight on the live node, serve from the volume, answer the smoke requests, match
transformers on the CPU and finish a short bench; the record goes to bench/results/npu-<host>.json.

Where no /dev/davinci* exist these tests skip with "no NPU on this host" (`make test`); `make test-npu` refuses to
run there instead. Never run here: unverified until the first 910B host runs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import PROD_CONFIG, ROOT
from llama_ascend import devices
from llama_ascend_dev import acceptance

pytestmark = [
    pytest.mark.npu,
    pytest.mark.skipif(not devices.present_devices(), reason="no NPU on this host (/dev/davinci* absent)"),
]


def test_this_node_serves_the_profile_correctly_and_records_it() -> None:
    config = Path(os.environ.get("LLAMA_ASCEND_NPU_CONFIG") or PROD_CONFIG)
    out = acceptance.default_out(ROOT)
    record = acceptance.run(config, out)
    failed = {step.name: step.result for step in record.steps if not step.ok}
    assert record.passed and not failed, f"{out}: {failed}"
    assert [step.name for step in record.steps] == ["preflight", "serve", "smoke", "verify", "bench"]
