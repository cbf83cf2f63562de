"""The command-line options that have an environment twin, each defined once: its flags, the variable, the default
and the help text. The commands add them from here, `--help` shows the twin, and README's table is generated from
here. Light on purpose: `llama-ascend --help` imports this, not the domain modules."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llama_ascend.devices import ANNOTATIONS_ENV, DEFAULT_ANNOTATIONS_PATH

CONFIG_ENV = "LLAMA_ASCEND_CONFIG"
TRUE_WORDS = ("1", "true", "yes", "on")


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """A boolean environment variable: 1/true/yes/on (any case) is true, anything else false."""
    return (os.environ if environ is None else environ).get(name, "").strip().lower() in TRUE_WORDS


def port_number(value: str) -> int:
    """argparse type for a port (0 picks a free one)."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (0-65535; 0 picks a free one)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535; 0 picks a free one)")
    return port


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    env: str
    help: str
    default: str | None = None  # the default when the variable is unset (what --help and README show)
    switch: bool = False  # a flag without a value; the variable turns it on with 1/true/yes/on
    dest: str | None = None
    metavar: str | None = None
    type: Callable[[str], Any] | None = None  # applied to the variable's value too: a bad one is a usage error
    shown_default: str | None = None  # what the default is, when it is not a literal value (a lookup, a path elsewhere)

    def add(self, parser: argparse.ArgumentParser, help: str | None = None) -> None:
        default = self.shown_default or self.default
        twin = f"env {self.env}" + ("=1" if self.switch else "") + (f"; default {default}" if default else "")
        kwargs: dict[str, Any] = {"help": f"{help or self.help} ({twin})"}
        if self.dest:
            kwargs["dest"] = self.dest
        if self.switch:
            negative = self.flags[0].startswith("--no-")
            kwargs["action"] = "store_false" if negative else "store_true"
            kwargs["default"] = not env_flag(self.env) if negative else env_flag(self.env)
        else:
            kwargs["default"] = os.environ.get(self.env, self.default)
            if self.metavar:
                kwargs["metavar"] = self.metavar
            if self.type:
                kwargs["type"] = self.type
        parser.add_argument(*self.flags, **kwargs)


CONFIG = Option(("-c", "--config"), CONFIG_ENV, "YAML profile, e.g. config/llama-3.1-8b-instruct.yaml")
URL = Option(("--url",), "LLAMA_ASCEND_URL", "server base URL", default="http://127.0.0.1:8000")
MODEL = Option(
    ("--model",), "LLAMA_ASCEND_MODEL", "served model name", shown_default="the first model the server lists"
)
API_KEY = Option(("--api-key",), "LLAMA_ASCEND_API_KEY", "API key if the server needs one")
OFFLINE = Option(
    ("--offline",),
    "LLAMA_ASCEND_OFFLINE",
    "never touch the network: succeed only when the weights are already complete",
    switch=True,
)
NO_PROGRESS = Option(
    ("--no-progress",),
    "LLAMA_ASCEND_NO_PROGRESS",
    "no progress bar or progress log lines, only the summary",
    switch=True,
    dest="progress",
)
NPU_SMI_OUTPUT = Option(
    ("--npu-smi-output",),
    "LLAMA_ASCEND_NPU_SMI_OUTPUT",
    "read a saved `npu-smi info` output instead of running npu-smi",
    metavar="FILE",
)
ANNOTATIONS = Option(
    ("--annotations",),
    ANNOTATIONS_ENV,
    "downward-API pod annotations file with huawei.com/AscendReal",
    metavar="FILE",
    shown_default=DEFAULT_ANNOTATIONS_PATH,
)
EXPORTER_HOST = Option(
    ("--host",),
    "LLAMA_ASCEND_EXPORTER_HOST",
    "address the exporter binds (the chart sets 0.0.0.0)",
    default="127.0.0.1",
)
EXPORTER_PORT = Option(
    ("--port",),
    "LLAMA_ASCEND_EXPORTER_PORT",
    "port of the exporter's /metrics, 8082 like npu-exporter; 0 picks a free one",
    default="8082",
    type=port_number,
)

OPTIONS: tuple[tuple[str, Option], ...] = (
    ("render, serve, fetch, preflight, verify, exporter, router, probe", CONFIG),
    ("smoke, verify, bench", URL),
    ("smoke, verify, bench", MODEL),
    ("smoke, verify, bench", API_KEY),
    ("fetch", OFFLINE),
    ("fetch", NO_PROGRESS),
    ("preflight, exporter", NPU_SMI_OUTPUT),
    ("preflight", ANNOTATIONS),
    ("exporter", EXPORTER_HOST),
    ("exporter", EXPORTER_PORT),
)
