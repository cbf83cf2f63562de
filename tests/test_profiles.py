"""The profiles beside the reference (low-latency, W8A8): what they render, how preflight sizes them on a 910B, and
what their keys refuse. Rendered argv against vLLM 0.18.0's own parser: `make check-pins` and the in-image check."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import PROD_CONFIG, cli
from llama_ascend import preflight
from llama_ascend.config import load_config
from llama_ascend.preflight.sizing import footprint
from test_preflight import CANN_ENV, LLAMA_8B, NPU_SMI, by_check, make_node

LOW_LATENCY = PROD_CONFIG.with_name("llama-3.1-8b-instruct-low-latency.yaml")
W8A8 = PROD_CONFIG.with_name("llama-3.1-8b-instruct-w8a8.yaml")
# RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w8a8's quantization_config, the fields the sizing reads.
COMPRESSED_TENSORS_W8A8 = {
    "quant_method": "compressed-tensors",
    "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "int"}}},
    "ignore": ["lm_head"],
}


def test_the_low_latency_profile_differs_from_the_reference_only_in_how_it_captures_and_schedules() -> None:
    reference = load_config(PROD_CONFIG, environ={}).model_dump()
    low = load_config(LOW_LATENCY, environ={}).model_dump()
    changed = {k: (reference["server"][k], v) for k, v in low["server"].items() if reference["server"][k] != v}
    assert changed == {
        "compilation": ("PIECEWISE", "FULL_DECODE_ONLY"),
        "cudagraph_capture_sizes": (None, [1, 2, 3, 4, 5, 6, 7, 8]),
        "async_scheduling": (None, True),
    }
    assert {k: v for k, v in low.items() if k != "server"} == {k: v for k, v in reference.items() if k != "server"}


def test_the_w8a8_profile_is_sized_at_about_half_the_reference_weights_before_anything_is_fetched() -> None:
    reference = footprint(load_config(PROD_CONFIG, environ={}))
    w8a8 = footprint(load_config(W8A8, environ={}))
    # bf16: 8.03 B parameters x 2 bytes. W8A8: the 6.98 B linear weights at 1 byte, embeddings and lm_head
    # (2 x 128256 x 4096) and norms at 2.
    assert reference.weight_bytes == 16_060_522_496
    assert w8a8.weight_bytes == 6_979_321_856 + 2 * (2 * 128256 * 4096 + 65 * 4096)
    assert not w8a8.assumed and "8-bit" in w8a8.weights_from
    assert w8a8.kv_bytes_per_token == reference.kv_bytes_per_token == 128 * 1024  # the KV cache stays bf16


def test_a_quantized_checkpoints_config_json_says_its_weight_bits(tmp_path: Path) -> None:
    model = tmp_path / "w4"
    model.mkdir()
    w4 = json.loads(json.dumps(COMPRESSED_TENSORS_W8A8))
    w4["config_groups"]["group_0"]["weights"]["num_bits"] = 4
    (model / "config.json").write_text(json.dumps({**LLAMA_8B, "quantization_config": w4}))
    config = load_config(
        W8A8, ["model.source=local", f"model.path={model}", "server.quantization=compressed-tensors"], environ={}
    )
    sized = footprint(config)
    assert sized.weight_bytes == 6_979_321_856 // 2 + 2 * (2 * 128256 * 4096 + 65 * 4096)
    assert "4-bit linear weights (config.json quantization_config)" in sized.weights_from


def test_preflight_gives_the_w8a8_profile_its_hbm_budget_on_a_910b(tmp_path: Path) -> None:
    model = tmp_path / "w8a8"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({**LLAMA_8B, "quantization_config": COMPRESSED_TENSORS_W8A8}))
    (model / "tokenizer.json").write_text("{}")
    sets = ["model.source=local", f"model.path={model}", f"server.cache_dir={tmp_path / 'cache'}"]
    config = load_config(W8A8, sets, environ={})
    root = make_node(tmp_path / "root", cards=(0, 1))
    findings = preflight.run_checks(
        config, root, NPU_SMI / "910b3-2cards-idle-crlf.txt", environ=CANN_ENV, skip={"port", "weights"}
    )
    [hbm] = by_check(findings, "hbm")
    assert hbm.ok, hbm.describe()
    assert "weights 8.5 GiB" in hbm.message and "KV cache for 8 x 4096 tokens 4.0 GiB" in hbm.message


def test_each_profile_renders_with_its_flags() -> None:
    low = json.loads(cli("render", "--json", "--config", str(LOW_LATENCY)).stdout)["argv"]
    assert json.loads(low[low.index("--compilation-config") + 1]) == {
        "cudagraph_mode": "FULL_DECODE_ONLY",
        "cudagraph_capture_sizes": [1, 2, 3, 4, 5, 6, 7, 8],
    }
    assert "--async-scheduling" in low
    w8a8 = json.loads(cli("render", "--json", "--config", str(W8A8)).stdout)["argv"]
    assert w8a8[w8a8.index("--quantization") + 1] == "compressed-tensors"
    assert (
        w8a8[w8a8.index("--model") + 1] == "/models/huggingface/RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w8a8/main"
    )


def test_lowering_max_num_seqs_keeps_the_low_latency_capture_sizes_valid_raising_it_is_refused() -> None:
    assert cli("render", "--config", str(LOW_LATENCY), "--set", "server.max_num_seqs=4").returncode == 0
    raised = cli("render", "--config", str(LOW_LATENCY), "--set", "server.max_num_seqs=16")
    assert raised.returncode == 2
    assert "the largest size 8 is below server.max_num_seqs 16" in raised.stderr and "add 16" in raised.stderr
