from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from llama_ascend import options
from llama_ascend.commands._common import add_config_arguments, load_from_args

HELP = "serve Prometheus metrics: NPU HBM/AICore/power/temperature/health (npu-exporter names), preflight, weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(
        parser, config_help="the deployment's config, optional: adds the weights metric and finds the preflight report"
    )
    options.EXPORTER_HOST.add(parser)
    options.EXPORTER_PORT.add(parser)
    parser.add_argument(
        "--interval",
        type=float,
        default=5.0,
        help="read npu-smi at most this often, in seconds (scrapes in between get the last reading)",
    )
    options.NPU_SMI_OUTPUT.add(parser, help="re-read this saved `npu-smi info` output instead of running npu-smi")
    parser.add_argument(
        "--preflight-report",
        metavar="FILE",
        help="the preflight report to publish (default: <server.cache_dir>/preflight.json)",
    )
    parser.add_argument(
        "--textfile",
        action="append",
        default=[],
        metavar="FILE",
        help="also publish this Prometheus text file (repeatable; with --config, fetch's "
        "llama_ascend_fetch.prom is included)",
    )


def run(args: argparse.Namespace) -> int:
    from llama_ascend import exporter, fetch, npu_smi, preflight

    config = load_from_args(args) if args.config else None
    report = (
        Path(args.preflight_report) if args.preflight_report else (preflight.report_path(config) if config else None)
    )
    weights = (lambda: preflight.check_weights(config)) if config else None
    textfiles = [Path(p) for p in args.textfile]
    fetch_metrics = fetch.metrics_path(config) if config else None
    if fetch_metrics:
        textfiles.append(fetch_metrics)
    registry = exporter.build_registry(
        exporter.table_reader(args.npu_smi_output),
        read_board=None if args.npu_smi_output else exporter.live_board_reader(npu_smi.find_npu_smi()),
        pod=exporter.PodIdentity.from_environ(os.environ),
        report_path=report,
        weights_check=weights,
        min_interval=args.interval,
        textfiles=textfiles,
    )

    def ready(port: int) -> None:
        print(f"llama-ascend exporter: serving http://{args.host}:{port}/metrics", file=sys.stderr, flush=True)

    exporter.serve_forever(registry, args.host, args.port, ready)
    return 0
