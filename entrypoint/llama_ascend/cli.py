"""`llama-ascend`: a thin layer that parses arguments and hands them to one command module."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import traceback
from types import ModuleType
from typing import NoReturn

from llama_ascend import __version__, commands
from llama_ascend.errors import ExitCode, LlamaAscendError, describe_os_error


def _command_modules() -> dict[str, ModuleType]:
    found = {}
    for info in pkgutil.iter_modules(commands.__path__):
        if not info.name.startswith("_"):
            found[info.name] = importlib.import_module(f"{commands.__name__}.{info.name}")
    return dict(sorted(found.items()))


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one `error:` line (exit 2) like every other error; --help has the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(int(ExitCode.USAGE), f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="llama-ascend",
        description="Serve Llama-3.1-8B-Instruct on Ascend 910B with vLLM + vLLM-Ascend (or its CPU stand-in).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _command_modules().items():
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.debug else logging.WARNING)
    try:
        return int(args.run(args))
    except LlamaAscendError as exc:
        return _report(args.debug, str(exc), exc.exit_code)
    except OSError as exc:
        # A path or port the command could not use (unwritable, read-only, full, in use, a file in the way): the
        # code that knows more raises a LlamaAscendError with a better message; this is the generic net.
        return _report(args.debug, describe_os_error(exc), ExitCode.FAILED)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


def _report(debug: bool, message: str, code: ExitCode) -> int:
    """One `error:` line per problem on stderr (the traceback before them with --debug); the exit code."""
    if debug:
        traceback.print_exc()
    for line in message.splitlines():
        print(f"error: {line}", file=sys.stderr)
    return int(code)
