"""Where llama-ascend keeps its own files, and how a configured path is expanded. Light: stdlib only."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

CACHE_ENV = "LLAMA_ASCEND_CACHE"


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where llama-ascend keeps downloads, the stand-in model and tools: $LLAMA_ASCEND_CACHE or ~/.cache/llama-ascend."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(CACHE_ENV) or Path.home() / ".cache" / "llama-ascend").expanduser()


def expand_path(value: str, environ: Mapping[str, str] | None = None) -> Path:
    """Expand ~ and $VARS in a configured path; $LLAMA_ASCEND_CACHE always has its default."""
    environ = dict(os.environ if environ is None else environ)
    environ.setdefault(CACHE_ENV, str(cache_root(environ)))
    expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: environ.get(m[1] or m[2], m[0]), value)
    return Path(expanded).expanduser()
