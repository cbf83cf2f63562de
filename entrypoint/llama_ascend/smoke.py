"""The reference requests of the original 910B deployment, as pass/fail checks against a running server."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from llama_ascend.client import MODELS_PATH, ServerClient
from llama_ascend.errors import CheckFailed

SYSTEM_PROMPT = "You are a helpful assistant."
CAPITAL_QUESTION = "What is the capital of France?"


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str


def _chat(model: str, user: str, temperature: float, max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
        "temperature": temperature,
        "max_tokens": max_tokens,
    }


def _usage_ok(reply: dict[str, Any]) -> bool:
    usage = reply.get("usage") or {}
    return usage.get("prompt_tokens", 0) > 0 and usage.get("completion_tokens", 0) > 0


def _text_check(name: str, text: str, reply: dict[str, Any], must_contain: str | None) -> CheckResult:
    ok = bool(text.strip()) and (must_contain is None or must_contain.lower() in text.lower()) and _usage_ok(reply)
    usage = reply.get("usage") or {}
    detail = f"{text.strip()!r} [{usage.get('prompt_tokens')}+{usage.get('completion_tokens')} tokens]"
    if must_contain and must_contain.lower() not in text.lower():
        detail = f"does not mention {must_contain}: {detail}"
    return CheckResult(name, ok, detail)


def resolve_model(client: ServerClient, model: str | None) -> tuple[str, CheckResult]:
    listed = client.served_models()
    if model is None:
        if not listed:
            raise CheckFailed(f"{client.url}{MODELS_PATH} lists no model")
        model = listed[0]
    if model not in listed:
        raise CheckFailed(f"{client.url}: model {model!r} is not served; {MODELS_PATH} lists {listed}")
    return model, CheckResult("models", True, f"{MODELS_PATH} lists {listed}")


def run_checks(url: str, model: str | None = None, api_key: str | None = None) -> list[CheckResult]:
    client = ServerClient(url, api_key)
    model, listed = resolve_model(client, model)
    results = [listed]

    def chat(name: str, user: str, temperature: float, max_tokens: int, must_contain: str | None) -> CheckResult:
        reply = client.request("POST", "/v1/chat/completions", json=_chat(model, user, temperature, max_tokens))
        return _text_check(name, reply["choices"][0]["message"]["content"] or "", reply, must_contain)

    def completion(name: str) -> CheckResult:
        body = {"model": model, "prompt": "The capital of France is", "temperature": 0, "max_tokens": 64}
        reply = client.request("POST", "/v1/completions", json=body)
        return _text_check(name, reply["choices"][0]["text"], reply, None)

    def streaming(name: str) -> CheckResult:
        body = {**_chat(model, CAPITAL_QUESTION, 0, 64), "stream": True, "stream_options": {"include_usage": True}}
        events = client.stream("/v1/chat/completions", body)
        chunks = [json.loads(e) for e in events if e != "[DONE]"]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
        done = events[-1:] == ["[DONE]"]
        ok = len(chunks) > 1 and done and bool(text.strip()) and _usage_ok(chunks[-1])
        return CheckResult(
            name, ok, f"{len(chunks)} SSE chunks, [DONE] {'received' if done else 'missing'}: {text.strip()!r}"
        )

    checks: list[tuple[str, Callable[..., CheckResult], tuple[Any, ...]]] = [
        ("chat: capital", chat, (CAPITAL_QUESTION, 0, 64, "Paris")),
        ("chat: introduce", chat, ("Hello! Please introduce yourself briefly.", 0.7, 128, None)),
        ("chat: python", chat, ("Explain what Python is in 2-3 sentences.", 0, 128, "Python")),
        ("completion", completion, ()),
        ("chat: stream", streaming, ()),
    ]
    for name, check, check_args in checks:
        try:
            results.append(check(name, *check_args))
        except CheckFailed as exc:
            results.append(CheckResult(name, False, str(exc)))
    return results


def results_json(url: str, results: list[CheckResult]) -> str:
    return json.dumps(
        {"url": url, "passed": all(r.passed for r in results), "checks": [asdict(r) for r in results]}, indent=2
    )
