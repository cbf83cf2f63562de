from __future__ import annotations

import argparse

from llama_ascend.commands._common import add_server_arguments, wide_console

HELP = "run the reference requests against a running server: a pass/fail table, exit 0 or 1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    from llama_ascend import smoke

    results = smoke.run_checks(args.url, args.model, args.api_key)
    if args.json:
        print(smoke.results_json(args.url, results))
    else:
        from rich.table import Table

        table = Table(title=f"llama-ascend smoke: {args.url}")
        for column in ("check", "result", "detail"):
            table.add_column(column, overflow="fold")
        for r in results:
            table.add_row(r.name, "[green]PASS[/]" if r.passed else "[red]FAIL[/]", r.detail)
        wide_console(120).print(table)
    return 0 if all(r.passed for r in results) else 1
