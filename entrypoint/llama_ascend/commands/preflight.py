from __future__ import annotations

import argparse
import json
import os

from llama_ascend import options
from llama_ascend.commands._common import add_config_arguments, load_from_args
from llama_ascend.errors import PreflightFailed, unusable_path

HELP = (
    "check that this node can run the deployment (devices, driver, CANN, CPUs, /dev/shm, HBM/RAM, port, weights); "
    "exit 3 on failure"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    options.NPU_SMI_OUTPUT.add(parser)
    parser.add_argument(
        "--root",
        default="/",
        metavar="DIR",
        help="check /dev, the driver, CANN and /proc under another filesystem root (tests)",
    )
    parser.add_argument(
        "--machine",
        metavar="ARCH",
        help="check as on a host of this CPU architecture, e.g. aarch64 (tests, with --root; default: this machine's)",
    )
    options.ANNOTATIONS.add(parser)
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="CHECK",
        help="leave out a check by name, e.g. --skip port when the server already runs (repeatable)",
    )
    parser.add_argument("--report", metavar="FILE", help="also write the findings as JSON (what the exporter reads)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")


def run(args: argparse.Namespace) -> int:
    from llama_ascend import preflight

    config = load_from_args(args)
    if args.report:
        preflight.require_writable_file("--report", args.report)
    environ = dict(os.environ)
    if config.backend == "ascend" and os.path.abspath(args.root) == "/":
        from llama_ascend import ascend_env

        environ = ascend_env.load(environ)  # what serve gives the server: the CANN set_env.sh scripts sourced
    findings = preflight.run_checks(
        config,
        root=args.root,
        npu_smi_output=args.npu_smi_output,
        environ=environ,
        annotations_path=args.annotations,
        skip=args.skip,
        machine=args.machine,
    )
    if args.report:
        try:
            preflight.save_report(findings, args.report)
        except OSError as exc:
            raise unusable_path("--report", args.report, "write the report", exc) from None
    if args.json:
        print(json.dumps(preflight.report(findings), indent=2))
        preflight.raise_on_failure(findings)
        return 0
    _print_table(config.backend, findings)
    failed = preflight.failures(findings)
    if failed:
        names = ", ".join(dict.fromkeys(f.check for f in failed))
        raise PreflightFailed(
            f"preflight: {len(failed)} check(s) failed ({names}); causes and fixes are in the table above"
        )
    return 0


def _print_table(backend: str, findings: list) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"llama-ascend preflight ({backend} backend)", show_lines=False)
    for column in ("check", "result", "finding"):
        table.add_column(column, overflow="fold")
    colour = {"ok": "green", "FAIL": "red", "warn": "yellow"}
    for f in findings:
        detail = escape(f.message)
        if not f.ok and f.cause:
            detail += f"\n[dim]cause:[/] {escape(f.cause)}"
        if not f.ok and f.fix:
            detail += f"\n[dim]fix:[/] {escape(f.fix)}"
        table.add_row(f.check, f"[{colour[f.status]}]{f.status}[/]", detail)
    Console(width=max(120, Console().width), stderr=False).print(table)
