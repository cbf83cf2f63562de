"""llama-ascend: serve Llama-3.1-8B-Instruct on Ascend 910B with vLLM + vLLM-Ascend."""

__version__ = "0.1.0"
