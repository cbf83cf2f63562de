"""The sweep's own client, where vLLM's benchmark is not at hand: async httpx, streamed completions, one run per
dataset and concurrency. Random prompts are common English words (about one token each); `reference` sends the
verify prompts."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from llama_ascend.bench.runs import BUILTIN_CLIENT, INPUT_LEN, OUTPUT_LEN, Run, percentile
from llama_ascend.client import auth_headers

# Words for the async client's random prompts: common English words are about one token each.
_WORDS = [
    "time",
    "year",
    "people",
    "way",
    "day",
    "man",
    "thing",
    "woman",
    "life",
    "child",
    "world",
    "school",
    "state",
    "family",
    "student",
    "group",
    "country",
    "problem",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "company",
    "system",
    "program",
    "question",
    "work",
    "government",
    "number",
    "night",
    "point",
    "home",
    "water",
    "room",
    "mother",
    "area",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "study",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "house",
    "service",
    "friend",
    "father",
    "power",
    "hour",
    "game",
    "line",
    "end",
    "member",
    "law",
    "car",
    "city",
    "community",
    "name",
    "president",
    "team",
    "minute",
    "idea",
    "kid",
    "body",
    "information",
    "back",
    "parent",
    "face",
    "others",
    "level",
    "office",
    "door",
    "health",
    "person",
    "art",
    "war",
    "history",
    "party",
    "result",
]


@dataclass
class _Sample:
    ok: bool
    ttft: float = math.nan
    latency: float = math.nan
    output_tokens: int = 0


async def _one_request(client: httpx.AsyncClient, body: dict[str, Any]) -> _Sample:
    start = time.perf_counter()
    first = None
    tokens = 0
    try:
        async with client.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return _Sample(False)
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                chunk = json.loads(payload)
                if first is None and any(c.get("text") for c in chunk.get("choices") or []):
                    first = time.perf_counter()
                usage = chunk.get("usage")
                if usage:
                    tokens = int(usage.get("completion_tokens") or 0)
    except httpx.HTTPError:
        return _Sample(False)
    end = time.perf_counter()
    return _Sample(first is not None, (first or end) - start, end - start, tokens)


def _random_prompt(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _prompts(dataset: str, count: int, input_len: int, seed: int = 0) -> list[str]:
    from llama_ascend.verify import REFERENCE_PROMPTS

    if dataset == "reference":
        return [REFERENCE_PROMPTS[i % len(REFERENCE_PROMPTS)] for i in range(count)]
    rng = random.Random(seed)
    return [_random_prompt(rng, input_len) for _ in range(count)]


async def _async_run(
    url: str,
    model: str,
    api_key: str | None,
    dataset: str,
    concurrency: int,
    num_prompts: int,
    input_len: int,
    output_len: int,
    seed: int,
) -> Run:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    prompts = _prompts(dataset, num_prompts, input_len, seed)

    async with httpx.AsyncClient(base_url=url, headers=auth_headers(api_key), timeout=600, limits=limits) as client:

        async def bounded(prompt: str) -> _Sample:
            body = {
                "model": model,
                "prompt": prompt,
                "max_tokens": output_len,
                "temperature": 0,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            async with gate:
                return await _one_request(client, body)

        started = time.perf_counter()
        samples = await asyncio.gather(*(bounded(p) for p in prompts))
        duration = time.perf_counter() - started
    good = [s for s in samples if s.ok]
    ttft = [s.ttft * 1000 for s in good]
    tpot = [(s.latency - s.ttft) * 1000 / (s.output_tokens - 1) for s in good if s.output_tokens > 1]
    tokens = sum(s.output_tokens for s in good)
    return Run(
        dataset,
        concurrency,
        num_prompts,
        len(good),
        len(samples) - len(good),
        duration,
        tokens,
        tokens / duration,
        len(good) / duration,
        percentile(ttft, 50),
        percentile(ttft, 99),
        percentile(tpot, 50),
        percentile(tpot, 99),
        BUILTIN_CLIENT,
        os.getloadavg()[0],
    )


def builtin_run(
    url: str,
    model: str,
    api_key: str | None,
    dataset: str,
    concurrency: int,
    num_prompts: int,
    input_len: int = INPUT_LEN,
    output_len: int = OUTPUT_LEN,
    seed: int = 0,
) -> Run:
    """`seed` picks the random prompts: another seed, other prompts (no prefix-cache hits on the last run's)."""
    return asyncio.run(_async_run(url, model, api_key, dataset, concurrency, num_prompts, input_len, output_len, seed))
