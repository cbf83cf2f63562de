"""verify: the server's greedy tokens vs transformers on the CPU, on the real stand-in model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import cli
from llama_ascend import verify
from llama_ascend.errors import ConfigError


def test_bf16_step() -> None:
    # bfloat16 keeps 8 significant bits: spacing 2^(e-7) for values in [2^e, 2^(e+1)).
    assert verify.bf16_step(1.0) == 2.0**-7
    assert verify.bf16_step(20.0) == 0.125
    assert verify.bf16_step(-20.0) == 0.125
    assert verify.bf16_step(31.9) == 0.125
    assert verify.bf16_step(32.0) == 0.25


def test_read_prompts(tmp_path: Path) -> None:
    assert verify.read_prompts(None) == list(verify.REFERENCE_PROMPTS)
    lines = tmp_path / "prompts.txt"
    lines.write_text("Hello\n\n  The sky is \n")
    assert verify.read_prompts(lines) == ["Hello", "The sky is"]
    listed = tmp_path / "prompts.json"
    listed.write_text(json.dumps(["a b", "line\nbreak"]))
    assert verify.read_prompts(listed) == ["a b", "line\nbreak"]
    for bad in ("[1, 2]", "[", "\n\n"):
        listed.write_text(bad)
        with pytest.raises(ConfigError, match="--prompts"):
            verify.read_prompts(listed)
    with pytest.raises(ConfigError, match="cannot read"):
        verify.read_prompts(tmp_path / "absent")


@pytest.fixture(scope="module")
def reference(standin_model_dir: Path) -> verify.Reference:
    return verify.Reference(standin_model_dir)


def _completion(tokens: list[int], stopped: bool = False) -> verify.ServerCompletion:
    return verify.ServerCompletion(None, tokens, "", [], stopped)


def _top(reference: verify.Reference, ids: list[int], k: int) -> tuple[list[int], list[float]]:
    torch = reference.torch
    with torch.inference_mode():
        row = reference.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    top = torch.topk(row, k)
    return [int(i) for i in top.indices], [float(v) for v in top.values]


def test_reference_agrees_with_its_own_greedy_path(reference: verify.Reference) -> None:
    prompt = reference.encode("The capital of France is")
    ids = list(prompt)
    for _ in range(6):  # the reference's own greedy continuation, one token at a time
        ids.append(_top(reference, ids, 1)[0][0])
    result = reference.compare(prompt, _completion(ids[len(prompt) :]), "The capital of France is")
    assert result.first_token_match and result.divergence is None
    assert result.common_prefix == 6 and result.verdict == "identical"


def test_second_choice_first_token_is_reported_with_its_margin(reference: verify.Reference) -> None:
    prompt = reference.encode("Artificial intelligence is")
    (best, second), (top1, top2) = _top(reference, prompt, 2)
    result = reference.compare(prompt, _completion([second]), "Artificial intelligence is")
    assert not result.first_token_match and result.common_prefix == 0
    d = result.divergence
    assert (d.position, d.server_token_rank) == (0, 2)
    assert d.server_token == reference.token_text(second) and d.reference_token == reference.token_text(best)
    assert d.reference_margin == pytest.approx(top1 - top2) and d.server_token_gap == pytest.approx(top1 - top2)
    assert not verify.passed([result])


class HandMadeLogits:
    """A stand-in for the transformers model that returns logits written by hand (the real tokenizer decodes)."""

    def __init__(self, torch: object, rows: list[list[float]], prompt_len: int) -> None:
        self.torch, self.rows, self.prompt_len = torch, rows, prompt_len

    def __call__(self, input_ids: object) -> object:
        torch = self.torch
        padded = [[0.0] * 8] * (self.prompt_len - 1) + self.rows  # logits[prompt_len - 1 + i] predict token i
        return type("Out", (), {"logits": torch.tensor([padded])})()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("server_logit", "steps", "rank", "near_tie", "verdict"),
    [
        # top-1 20.0 (bf16 spacing there: 2**(4 - 7) = 0.125), top-2 19.875: one step apart
        (19.875, 1.0, 2, True, "near tie"),
        (19.75, 2.0, 2, True, "near tie"),  # two steps: still a near tie (NEAR_TIE_STEPS)
        (19.5, 4.0, 2, False, "DIVERGES (not a near tie)"),  # four steps: a real difference
    ],
)
def test_near_tie_verdict_on_hand_made_logits(
    reference: verify.Reference, server_logit: float, steps: float, rank: int, near_tie: bool, verdict: str
) -> None:
    # Token 3 is the reference's choice at both positions; the server agrees at 0 and picks token 5 at 1.
    rows = [[0.0, 1.0, 2.0, 20.0, 0.0, 5.0, 0.0, 0.0], [0.0, 1.0, 2.0, 20.0, 0.0, server_logit, 0.0, 0.0]]
    hand_made = verify.Reference.__new__(verify.Reference)
    hand_made.torch, hand_made.tokenizer, hand_made.eos_ids = reference.torch, reference.tokenizer, reference.eos_ids
    hand_made.model = HandMadeLogits(reference.torch, rows, prompt_len=4)
    result = hand_made.compare([1, 2, 3, 4], _completion([3, 5]), "hand-made")
    d = result.divergence
    assert result.first_token_match and result.common_prefix == 1
    assert (d.position, d.server_token_rank, d.bf16_step) == (1, rank, 0.125)
    assert d.server_token_gap == pytest.approx(20.0 - server_logit)
    assert d.reference_margin == pytest.approx(20.0 - server_logit)  # the server's token is the reference's second
    assert (d.gap_in_bf16_steps, d.near_tie, result.verdict) == (steps, near_tie, verdict)


def test_an_unlikely_token_is_not_a_near_tie(reference: verify.Reference) -> None:
    prompt = reference.encode("The capital of France is")
    first = _top(reference, prompt, 1)[0][0]
    unlikely = _top(reference, [*prompt, first], 1000)[0][-1]  # the 1000th choice after the right first token
    result = reference.compare(prompt, _completion([first, unlikely]), "The capital of France is")
    assert result.first_token_match and result.common_prefix == 1
    assert result.divergence.server_token_rank > 100 and not result.divergence.near_tie  # ties share a rank
    assert result.verdict == "DIVERGES (not a near tie)"
    assert verify.passed([result])  # the acceptance rule is the first token


def test_server_stopping_early_is_a_difference(reference: verify.Reference) -> None:
    prompt = reference.encode("Python is a programming language that")
    first = _top(reference, prompt, 1)[0][0]
    assert first not in reference.eos_ids  # the stand-in goes on after this prompt's first token
    result = reference.compare(prompt, _completion([first], stopped=True), "Python is a programming language that")
    d = result.divergence
    assert d.position == 1 and d.server_token == "<end of text>"
    assert math.isfinite(d.server_token_gap) and d.server_token_gap > 0


@pytest.mark.e2e
def test_verify_against_the_dev_server(dev_server, standin_model_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "verify.json"
    done = cli(
        "verify",
        "--url",
        dev_server.url,
        "--api-key",
        dev_server.api_key,
        "--reference-model",
        str(standin_model_dir),
        "--output",
        str(output),
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(output.read_text())
    assert data["passed"] is True
    assert [p["prompt"] for p in data["prompts"]] == list(verify.REFERENCE_PROMPTS)
    for item in data["prompts"]:
        assert item["first_token_match"] is True
        assert 1 <= item["common_prefix"] <= item["server_tokens"] <= 64
        assert item["server_text"] and item["reference_text"]
        d = item["divergence"]
        if d is None:
            assert item["common_prefix"] == item["server_tokens"] and item["verdict"] == "identical"
        else:
            assert d["position"] == item["common_prefix"]
            assert d["reference_margin"] >= 0 and d["server_token_gap"] >= 0
            assert item["verdict"] == ("near tie" if d["near_tie"] else "DIVERGES (not a near tie)")
    assert "first token" in done.stdout and "common prefix" in done.stdout
