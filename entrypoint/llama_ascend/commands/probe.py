from __future__ import annotations

import argparse

from llama_ascend import options

HELP = (
    "one probe of the local server: health (/health), ready (/v1/models with the key), warm (a real 1-token "
    "completion), healthcheck (warm once per server process, then health); exit 0 or 1"
)
CHECKS = ("health", "ready", "warm", "healthcheck")


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r}: the timeout must be above 0 s")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("check", choices=CHECKS, help="what to ask the server")
    options.CONFIG.add(
        parser, help="the server's config: read only for what the options below leave out (port, name, key variable)"
    )
    parser.add_argument(
        "--host", help="server address (default: the config's server.host, 0.0.0.0 / :: as loopback; else 127.0.0.1)"
    )
    parser.add_argument("--port", type=options.port_number, help="server port (default: the config's server.port)")
    parser.add_argument("--model", help="served model name (default: the config's model.served_name)")
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="the environment variable holding the API key, never the key itself; '' for a server without a key "
        "(default: the config's server.api_key_env)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        help="seconds to wait for the answer (default 30: on the NPU the first completion compiles)",
    )
    parser.add_argument(
        "--pid",
        type=int,
        default=1,
        help="healthcheck: the server's process id, whose start time keys the warm marker (default 1: the image "
        "execs the server as PID 1)",
    )


def run(args: argparse.Namespace) -> int:
    from llama_ascend import probe

    target = probe.resolve_target(
        args.check,
        args.config,
        host=args.host,
        port=args.port,
        model=args.model,
        api_key_env=args.api_key_env,
        timeout=args.timeout,
    )
    if args.check == "healthcheck":
        print(probe.healthcheck(target, args.pid))
    else:
        print({"health": probe.health, "ready": probe.ready, "warm": probe.warm}[args.check](target))
    return 0
