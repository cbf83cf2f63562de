"""`python -m llama_ascend.bench vllm-batch PLAN.json`: vLLM's benchmark over a plan, in this process
(bench/vllm_client.py starts it)."""

import sys

from llama_ascend.bench.vllm_client import vllm_batch_main

if __name__ == "__main__":
    if sys.argv[1:2] == ["vllm-batch"] and len(sys.argv) == 3:
        sys.exit(vllm_batch_main(sys.argv[2]))
    sys.exit("usage: python -m llama_ascend.bench vllm-batch PLAN.json  (the sweep runs through `llama-ascend bench`)")
