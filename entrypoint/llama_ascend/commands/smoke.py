from __future__ import annotations

import argparse
import os

from llama_ascend import smoke

HELP = "run the reference requests against a running server: a pass/fail table, exit 0 or 1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("LLAMA_ASCEND_URL", "http://127.0.0.1:8000"),
                        help="server base URL (env LLAMA_ASCEND_URL; default http://127.0.0.1:8000)")  # fmt: skip
    parser.add_argument("--model", default=os.environ.get("LLAMA_ASCEND_MODEL"),
                        help="served model name (env LLAMA_ASCEND_MODEL; default: the first model the server lists)")  # fmt: skip
    parser.add_argument("--api-key", default=os.environ.get("LLAMA_ASCEND_API_KEY"),
                        help="API key if the server needs one (env LLAMA_ASCEND_API_KEY)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    results = smoke.run_checks(args.url, args.model, args.api_key)
    if args.json:
        print(smoke.results_json(args.url, results))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"llama-ascend smoke: {args.url}")
        for column in ("check", "result", "detail"):
            table.add_column(column, overflow="fold")
        for r in results:
            table.add_row(r.name, "[green]PASS[/]" if r.passed else "[red]FAIL[/]", r.detail)
        Console(width=max(120, Console().width)).print(table)
    return 0 if all(r.passed for r in results) else 1
