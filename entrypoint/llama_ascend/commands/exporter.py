from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = "serve Prometheus metrics: NPU HBM/AICore/power/temperature/health (npu-exporter names), preflight, weights"


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (0-65535; 0 picks a free one)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535; 0 picks a free one)")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get("LLAMA_ASCEND_CONFIG"),
        help="the deployment's config: adds the weights metric and finds the preflight report "
        "(env LLAMA_ASCEND_CONFIG; optional)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (as for serve)",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("LLAMA_ASCEND_EXPORTER_HOST", "127.0.0.1"),
        help="address to bind (env LLAMA_ASCEND_EXPORTER_HOST; the chart sets 0.0.0.0)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=os.environ.get("LLAMA_ASCEND_EXPORTER_PORT", "8082"),  # argparse applies _port: a bad one is exit 2
        help="port of /metrics (env LLAMA_ASCEND_EXPORTER_PORT; default 8082 like npu-exporter; 0 picks a free one)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=5.0,
        help="read npu-smi at most this often, in seconds (scrapes in between get the last reading)",
    )
    parser.add_argument(
        "--npu-smi-output",
        metavar="FILE",
        default=os.environ.get("LLAMA_ASCEND_NPU_SMI_OUTPUT"),
        help="re-read this saved `npu-smi info` output instead of running npu-smi",
    )
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

    config = None
    if args.config:
        from llama_ascend.config import load_config

        config = load_config(args.config, args.sets)
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
