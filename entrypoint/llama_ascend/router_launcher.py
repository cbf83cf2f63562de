"""`python -m llama_ascend.router_launcher <vllm-router flags>`: vllm-router with its worker key taken from
$LLAMA_ASCEND_ROUTER_API_KEY instead of `--api-key` (argv is visible to every user of the node). It parses the flags
with vllm-router's own parser and starts the same Rust router in this process; our code is done once it runs."""

from __future__ import annotations

import os
import sys

from llama_ascend.router import ROUTER_KEY_VAR


def main(argv: list[str] | None = None) -> int:
    from vllm_router.launch_router import launch_router, parse_router_args

    args = parse_router_args(sys.argv[1:] if argv is None else argv)
    args.api_key = os.environ.pop(ROUTER_KEY_VAR, None) or None
    launch_router(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
