"""How big the model is: weights and KV cache per token, from the files, config.json, or a known architecture."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_ascend.config import Config

GiB = 1024**3
MiB = 1024**2
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}
# Activations, ACL graph pools, HCCL buffers and the torch-npu context per card, on top of weights and KV cache.
# vLLM measures the real peak in its profile run; this is the margin the estimate keeps for it.
ASCEND_RUNTIME_OVERHEAD = 2 * GiB
# Python, torch and vLLM's own processes on the cpu backend.
CPU_RUNTIME_OVERHEAD = 1 * GiB
# Llama-3.1-8B(-Instruct)'s config.json, the fields the sizing reads: 8,030,261,248 parameters, 16.06 GB in bf16,
# 128 KiB of KV cache per token. The deployment's model is sized from this before its config.json is fetched.
LLAMA_31_8B = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 128256,
    "torch_dtype": "bfloat16",
    "tie_word_embeddings": False,
}
# Hub ids (case-insensitive) whose architecture is known without their config.json (quantized ones too: how their
# weights are stored follows from server.quantization).
KNOWN_MODELS = {
    model_id.lower(): ("Llama-3.1-8B", LLAMA_31_8B)
    for model_id in (
        "LLM-Research/Meta-Llama-3.1-8B-Instruct",
        "LLM-Research/Meta-Llama-3.1-8B",
        "meta-llama/Llama-3.1-8B-Instruct",
        "meta-llama/Meta-Llama-3.1-8B-Instruct",
        "meta-llama/Llama-3.1-8B",
        "meta-llama/Meta-Llama-3.1-8B",
        "RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w8a8",
    )
}
# Bits per linear-layer weight of a quantized checkpoint whose config.json does not say (msModelSlim's W8A8 and
# W8A16 both store int8 weights); embeddings, norms and lm_head stay in the dtype.
DEFAULT_QUANTIZED_WEIGHT_BITS = 8
SIZING_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


@dataclass(frozen=True)
class ModelFootprint:
    weight_bytes: int
    kv_bytes_per_token: int
    weights_from: str  # "safetensors files", "config.json", or how the model was sized without them
    # True when the size is an assumption (an unknown model without its config.json): shortfalls are warnings.
    assumed: bool = False

    def kv_bytes(self, tokens: int) -> int:
        return self.kv_bytes_per_token * tokens

    @property
    def note(self) -> str:
        """'' when measured (files, config.json); else how the size was arrived at, for the findings."""
        return "" if self.weights_from in ("safetensors files", "config.json") else f" ({self.weights_from})"


def gib(value: float) -> str:
    return f"{value / GiB:.1f} GiB"


def dtype_bytes(config: Config, model_config: Mapping[str, Any]) -> int:
    dtype: str = config.server.dtype
    if dtype == "auto":
        dtype = str(model_config.get("torch_dtype") or model_config.get("dtype") or "bfloat16")
    return DTYPE_BYTES.get(dtype, 2)


def read_spec(model_dir: Path) -> tuple[dict[str, Any] | None, str]:
    """config.json's text config, or None and why not."""
    try:
        spec = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "config.json is not there yet"
    except (OSError, ValueError) as exc:
        return None, f"config.json is unreadable ({exc.__class__.__name__})"
    spec = spec.get("text_config", spec) if isinstance(spec, dict) else spec
    if not isinstance(spec, dict):
        return None, "config.json is not a mapping"
    missing = [name for name in SIZING_FIELDS if not isinstance(spec.get(name), int)]
    if missing:
        return None, f"config.json lacks {', '.join(missing)}"
    return spec, ""


def linear_weight_bits(config: Config, spec: Mapping[str, Any]) -> tuple[int | None, str]:
    """Bits per linear-layer weight (None: unquantized, the dtype's) and, for a quantized checkpoint, how that was
    found: compressed-tensors' `quantization_config.config_groups.*.weights.num_bits` in config.json, else the
    stated default."""
    if not config.server.quantization:
        return None, ""
    groups = (spec.get("quantization_config") or {}).get("config_groups") or {}
    bits = {g.get("weights", {}).get("num_bits") for g in groups.values() if isinstance(g, dict)} - {None}
    if len(bits) == 1:
        found = int(bits.pop())
        return found, f"{config.server.quantization}: {found}-bit linear weights (config.json quantization_config)"
    return DEFAULT_QUANTIZED_WEIGHT_BITS, (
        f"{config.server.quantization}: linear weights sized as {DEFAULT_QUANTIZED_WEIGHT_BITS}-bit (W8A8/W8A16)"
    )


def known_spec(config: Config, why: str) -> tuple[dict[str, Any], str, bool]:
    """The architecture to size by without a usable config.json: the configured model's when llama-ascend knows its
    id, else Llama-3.1-8B's as a stated assumption."""
    dtype = config.server.dtype if config.server.dtype != "auto" else "bfloat16"
    bits, how = linear_weight_bits(config, {})
    quantized = f"; {how}" if bits else ""
    known = KNOWN_MODELS.get(config.model.id.lower()) if config.model.source != "local" else None
    if known:
        name, spec = known
        return spec, f"sized as {name} in {dtype} from its known architecture: {why}{quantized}", False
    what = (
        "model.path is a local dir"
        if config.model.source == "local"
        else f"model.id {config.model.id} is not one llama-ascend knows"
    )
    return LLAMA_31_8B, f"assumed to be Llama-3.1-8B in {dtype}: {why} and {what}{quantized}", True


def footprint(config: Config) -> ModelFootprint:
    """Weights (the safetensors on disk, else counted from config.json, else from the known architecture of the
    configured model or, stated, Llama-3.1-8B's) and KV bytes per token."""
    model_dir = config.model_dir
    spec, why = read_spec(model_dir)
    sized_from, assumed = "config.json", False
    if spec is None:
        spec, sized_from, assumed = known_spec(config, why)
    width = dtype_bytes(config, spec)
    hidden = int(spec["hidden_size"])
    layers = int(spec["num_hidden_layers"])
    heads = int(spec["num_attention_heads"])
    kv_heads = int(spec.get("num_key_value_heads") or heads)
    head_dim = int(spec.get("head_dim") or hidden // heads)
    kv_per_token = 2 * layers * kv_heads * head_dim * width

    files = sorted(model_dir.glob("*.safetensors")) if sized_from == "config.json" else []
    if files:
        return ModelFootprint(sum(f.stat().st_size for f in files), kv_per_token, "safetensors files")
    vocab = int(spec["vocab_size"])
    inter = int(spec.get("intermediate_size") or 4 * hidden)
    linear = layers * (hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2 + 3 * hidden * inter)
    embeddings = vocab * hidden * (1 if spec.get("tie_word_embeddings") else 2)
    norms = layers * 2 * hidden + hidden
    bits, how = linear_weight_bits(config, spec)
    linear_bytes = linear * bits // 8 if bits else linear * width
    if bits and sized_from == "config.json":
        sized_from = f"config.json, {how}"
    return ModelFootprint(linear_bytes + (embeddings + norms) * width, kv_per_token, sized_from, assumed)
