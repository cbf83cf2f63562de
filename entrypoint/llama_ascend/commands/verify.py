from __future__ import annotations

import argparse
import math
from pathlib import Path

from llama_ascend.commands._common import add_config_arguments, add_server_arguments, load_from_args, wide_console
from llama_ascend.errors import ConfigError, unusable_path

HELP = "greedy server output vs transformers on the CPU (same weights/dtype): first token, common prefix; exit 1 if a first token differs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)
    parser.add_argument(
        "--reference-model",
        metavar="DIR",
        help="the model dir the server loads (HuggingFace format): the CPU reference runs it "
        "(default: the config's model dir)",
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--prompts", metavar="FILE", help="prompts: a JSON list or one per line (default: the three reference prompts)"
    )
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per completion (default 64)")
    parser.add_argument(
        "--dtype",
        choices=("bfloat16", "float16", "float32"),
        help="dtype of the CPU reference: the server's (default: the config's server.dtype, else bfloat16)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--output", metavar="FILE", help="also write the JSON results to FILE")


def run(args: argparse.Namespace) -> int:
    from llama_ascend import preflight, verify

    if args.output:
        preflight.require_writable_file("--output", args.output)  # before the run, not after it
    reference_model, dtype = args.reference_model, args.dtype
    if args.config and (reference_model is None or dtype is None):
        config = load_from_args(args)
        reference_model = reference_model or str(config.model_dir)
        configured = {"half": "float16", "float": "float32"}.get(config.server.dtype, config.server.dtype)
        dtype = dtype or (configured if configured in ("bfloat16", "float16", "float32") else "bfloat16")
    if reference_model is None:
        raise ConfigError("verify needs the model dir: pass --reference-model DIR or --config FILE")
    prompts = verify.read_prompts(args.prompts)
    results = verify.run(
        args.url, reference_model, prompts, args.model, args.api_key, args.max_tokens, dtype or "bfloat16"
    )
    document = verify.results_json(args.url, reference_model, results)
    if args.output:
        try:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(document + "\n", encoding="utf-8")
        except OSError as exc:
            raise unusable_path("--output", args.output, "write the results", exc) from None
    if args.json:
        print(document)
    else:
        _print_table(args.url, results)
    return 0 if verify.passed(results) else 1


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _print_table(url: str, results: list) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"llama-ascend verify: {url} vs transformers (CPU, greedy)", show_lines=True)
    for column in ("prompt", "first token", "common prefix", "at the first difference", "verdict"):
        table.add_column(column, overflow="fold")
    for r in results:
        d = r.divergence
        if d is None:
            where = "-"
        else:
            where = (
                f"token {d.position}: server {escape(repr(d.server_token))}, reference {escape(repr(d.reference_token))}\n"
                f"reference top-2 margin {_fmt(d.reference_margin)}; server's token {_fmt(d.server_token_gap)} below "
                f"(rank {d.server_token_rank}, {_fmt(d.gap_in_bf16_steps, 1)} bf16 steps of {_fmt(d.bf16_step, 4)})\n"
                f"server top-2 margin {_fmt(d.server_margin)}"
            )
        colour = (
            "green"
            if r.divergence is None or (r.first_token_match and d and d.near_tie)
            else ("yellow" if r.first_token_match else "red")
        )
        table.add_row(
            escape(repr(r.prompt)),
            "match" if r.first_token_match else "[red]DIFFERS[/]",
            f"{r.common_prefix} / {r.server_tokens}",
            where,
            f"[{colour}]{r.verdict}[/]",
        )
    console = wide_console(140)
    console.print(table)
    for r in results:
        console.print(
            f"[bold]{escape(repr(r.prompt))}[/]\n  server:    {escape(repr(r.server_text))}\n"
            f"  reference: {escape(repr(r.reference_text))}"
        )
