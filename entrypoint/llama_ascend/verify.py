"""Greedy output of the server vs transformers on the CPU with the same weights and dtype.

The check the original deployment did by hand: per prompt, does the first token match, and how long is the common
token prefix. Two bf16 implementations (vLLM-Ascend's NPU kernels or vLLM's CPU ones vs transformers' eager CPU
ops) round differently, so where the reference's top two tokens are a bf16 step or two apart the paths may split:
that is a near tie, not a bug. At the first differing token the report gives the reference's top-2 logit margin,
how far below the reference's choice it puts the server's token (in logits and in bf16 steps at that magnitude),
and the server's own top-2 margin, so a user can tell a near tie from a wrong kernel.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llama_ascend.client import ServerClient
from llama_ascend.errors import CheckFailed, ConfigError
from llama_ascend.smoke import resolve_model

REFERENCE_PROMPTS = (
    "The capital of France is",
    "Python is a programming language that",
    "Artificial intelligence is",
)
MAX_TOKENS = 64
# A server token at most this many bf16 steps below the reference's choice is a near tie.
NEAR_TIE_STEPS = 2.0


def bf16_step(value: float) -> float:
    """The spacing of bfloat16 numbers (8 significant bits) around `value`."""
    magnitude = abs(value)
    if magnitude == 0 or not math.isfinite(magnitude):
        return 2.0**-133
    return 2.0 ** (math.floor(math.log2(magnitude)) - 7)


@dataclass
class Divergence:
    position: int  # index of the first differing generated token
    server_token: str
    reference_token: str
    reference_margin: float  # reference's top-1 minus top-2 logit at that position
    server_token_gap: float  # reference's top-1 logit minus its logit for the server's token
    server_token_rank: int  # 1-based rank of the server's token among the reference's logits
    bf16_step: float  # bfloat16 spacing at the reference's top logit
    gap_in_bf16_steps: float
    near_tie: bool
    server_margin: float | None  # server's top-1 minus top-2 logprob (= logit) at that position, when reported


@dataclass
class PromptResult:
    prompt: str
    server_text: str
    reference_text: str  # the reference's greedy text up to and including its first differing token
    server_tokens: int
    first_token_match: bool
    common_prefix: int
    divergence: Divergence | None

    @property
    def verdict(self) -> str:
        if self.divergence is None:
            return "identical"
        if not self.first_token_match:
            return "FIRST TOKEN DIFFERS" + (" (near tie)" if self.divergence.near_tie else "")
        return "near tie" if self.divergence.near_tie else "DIVERGES (not a near tie)"


def read_prompts(path: str | Path | None) -> list[str]:
    """The reference prompts, or those of a file: a JSON list of strings, or one prompt per non-empty line."""
    if path is None:
        return list(REFERENCE_PROMPTS)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--prompts {path}: cannot read it ({exc.strerror})") from None
    if text.lstrip().startswith("["):
        try:
            prompts = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"--prompts {path}: not valid JSON ({exc})") from None
        if not all(isinstance(p, str) and p for p in prompts):
            raise ConfigError(f"--prompts {path}: the JSON must be a list of non-empty strings")
    else:
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ConfigError(f"--prompts {path}: no prompts in it")
    return prompts


def _token_id(token: str) -> int:
    # vLLM's `return_tokens_as_token_ids` spells tokens "token_id:1234".
    return int(token.rsplit(":", 1)[1])


@dataclass
class ServerCompletion:
    prompt_ids: list[int] | None
    token_ids: list[int]
    text: str
    top_logprobs: list[dict[int, float]]
    stopped: bool  # finish_reason "stop": the server ended the text (EOS) before max_tokens


def server_completion(client: ServerClient, model: str, prompt: str, max_tokens: int) -> ServerCompletion:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "repetition_penalty": 1.0,  # neutralise generation_config.json defaults the server would otherwise apply
        "logprobs": 2,
        "return_tokens_as_token_ids": True,
        "return_token_ids": True,
    }
    reply = client.request("POST", "/v1/completions", json=body)
    choice = reply["choices"][0]
    logprobs = choice.get("logprobs") or {}
    tokens = choice.get("token_ids") or [_token_id(t) for t in logprobs.get("tokens") or []]
    if not tokens and choice.get("text"):
        raise CheckFailed(f"{client.url}: the completion carries no token ids (not a vLLM server?)")
    top = [{_token_id(k): v for k, v in (entry or {}).items()} for entry in logprobs.get("top_logprobs") or []]
    stopped = choice.get("finish_reason") == "stop"
    return ServerCompletion(choice.get("prompt_token_ids"), list(tokens), choice.get("text", ""), top, stopped)


class Reference:
    """transformers on the CPU, greedy, with the server's weights (the model dir) and dtype."""

    def __init__(self, model_dir: str | Path, dtype: str = "bfloat16") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ConfigError(f"--reference-model {model_dir}: no config.json there (pass the dir the server loads)")
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype)
        self.model.eval()
        eos = self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt)["input_ids"]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def token_text(self, token: int) -> str:
        return str(self.tokenizer.decode([token]))

    def compare(self, prompt_ids: list[int], server: ServerCompletion, prompt: str) -> PromptResult:
        """Teacher-forced greedy check: one forward pass over prompt + the server's tokens gives the reference's
        logits at every position; up to the first difference this is exactly the reference's own greedy path.

        (Decoding token by token would cost a minute per prompt on a CPU without native bf16 matmuls.)
        """
        torch = self.torch
        tokens = list(server.token_ids)
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([prompt_ids + tokens])).logits[0].float()
        offset = len(prompt_ids) - 1  # logits[offset + i] predicts generated token i
        # When the server ended the text (EOS) without returning the EOS token, the reference must end it there too.
        ends_early = server.stopped and (not tokens or tokens[-1] not in self.eos_ids)
        divergence: Divergence | None = None
        reference_ids = tokens
        for position in range(len(tokens) + (1 if ends_early else 0)):
            row = logits[offset + position]
            top2 = torch.topk(row, 2)
            choice = int(top2.indices[0])
            if position < len(tokens):
                server_token = tokens[position]
                if choice == server_token:
                    continue
            elif choice in self.eos_ids:
                continue
            else:
                server_token = max(self.eos_ids, key=lambda eos: float(row[eos]))
            divergence = self._divergence(position, row, top2, server_token, server)
            reference_ids = [*tokens[:position], choice]
            break
        matched = divergence.position if divergence else len(tokens)
        return PromptResult(
            prompt=prompt,
            server_text=server.text,
            reference_text=self.decode(reference_ids),
            server_tokens=len(tokens),
            first_token_match=matched > 0 or divergence is None,
            common_prefix=matched,
            divergence=divergence,
        )

    def _divergence(
        self, position: int, row: Any, top2: Any, server_token: int, server: ServerCompletion
    ) -> Divergence:
        top, second = float(top2.values[0]), float(top2.values[1])
        step = bf16_step(top)
        server_margin = None
        if position < len(server.top_logprobs) and len(server.top_logprobs[position]) >= 2:
            best = sorted(server.top_logprobs[position].values(), reverse=True)
            server_margin = best[0] - best[1]
        gap = top - float(row[server_token])
        return Divergence(
            position=position,
            server_token=self.token_text(server_token) if position < len(server.token_ids) else "<end of text>",
            reference_token=self.token_text(int(top2.indices[0])),
            reference_margin=top - second,
            server_token_gap=gap,
            server_token_rank=int((row > row[server_token]).sum()) + 1,
            bf16_step=step,
            gap_in_bf16_steps=gap / step,
            near_tie=gap <= NEAR_TIE_STEPS * step,
            server_margin=server_margin,
        )


def run(
    url: str,
    reference_model: str | Path,
    prompts: Sequence[str] = REFERENCE_PROMPTS,
    model: str | None = None,
    api_key: str | None = None,
    max_tokens: int = MAX_TOKENS,
    dtype: str = "bfloat16",
) -> list[PromptResult]:
    client = ServerClient(url, api_key, timeout=300)
    model, _ = resolve_model(client, model)
    completions = [server_completion(client, model, prompt, max_tokens) for prompt in prompts]
    reference = Reference(reference_model, dtype)
    results = []
    for prompt, completion in zip(prompts, completions, strict=True):
        prompt_ids = completion.prompt_ids or reference.encode(prompt)
        results.append(reference.compare(list(prompt_ids), completion, prompt))
    return results


def passed(results: Sequence[PromptResult]) -> bool:
    """The acceptance rule of the original deployment: every first token matches."""
    return all(r.first_token_match for r in results)


def results_json(url: str, reference_model: str | Path, results: Sequence[PromptResult]) -> str:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    items = [{**clean(asdict(r)), "verdict": r.verdict} for r in results]
    return json.dumps(
        {"url": url, "reference_model": str(reference_model), "passed": passed(results), "prompts": items}, indent=2
    )
