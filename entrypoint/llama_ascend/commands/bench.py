from __future__ import annotations

import argparse
import sys

from llama_ascend.commands._common import add_server_arguments
from llama_ascend.errors import unusable_path

HELP = (
    "benchmark a running server: concurrency sweep (vLLM's benchmark or our client), table + JSON under bench/results"
)


def _ints(value: str) -> list[int]:
    try:
        numbers = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected comma-separated integers, e.g. 1,4,8,16") from None
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: concurrencies must be >= 1")
    return numbers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)
    parser.add_argument(
        "--tokenizer", metavar="DIR", help="the model dir (its tokenizer): vLLM's benchmark needs it for random prompts"
    )
    parser.add_argument(
        "--concurrency",
        type=_ints,
        default=[1, 4, 8, 16],
        metavar="N,N,...",
        help="concurrency levels (default 1,4,8,16)",
    )
    parser.add_argument(
        "--datasets",
        default="random,reference",
        help="random (random tokens, --input-len/--output-len) and/or reference (the verify prompts)",
    )
    parser.add_argument("--num-prompts", type=int, help="requests per run (default 4 x concurrency, 8..32)")
    parser.add_argument("--input-len", type=int, default=128, help="random prompt length in tokens (default 128)")
    parser.add_argument("--output-len", type=int, default=64, help="tokens generated per request (default 64)")
    parser.add_argument(
        "--client",
        choices=("auto", "vllm", "builtin"),
        default="auto",
        help="auto: vLLM's benchmark when installed and --tokenizer is given, else our async client",
    )
    parser.add_argument("--out", default="bench/results", metavar="DIR", help="where the table and JSON go")
    parser.add_argument("--name", default="sweep", help="file name stem of the results (default sweep)")


def run(args: argparse.Namespace) -> int:
    from llama_ascend import bench, preflight

    preflight.require_writable_dir("--out", args.out)  # before the sweep, not after minutes of it
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    runs = bench.sweep(
        args.url,
        args.model,
        args.tokenizer,
        args.concurrency,
        datasets,
        args.num_prompts,
        args.input_len,
        args.output_len,
        args.api_key,
        args.client,
    )
    table = bench.markdown_table(runs)
    document = bench.runs_document(args.url, runs, input_len=args.input_len, output_len=args.output_len)
    title = f"# llama-ascend bench: {args.url} ({runs[0].client}, {args.input_len} in / {args.output_len} out)"
    try:
        json_path, md_path = bench.write_results(args.out, args.name, document, f"{title}\n\n{table}")
    except OSError as exc:
        raise unusable_path("--out", args.out, "write the results", exc) from None
    print(table)
    print(f"\nwrote {json_path} and {md_path}", file=sys.stderr)
    return 0 if all(r.failed == 0 and r.completed > 0 for r in runs) else 1
