"""Runtime properties: base weights never change, hot swaps copy nothing, sampling and stopping behave."""

from __future__ import annotations

import pytest
import torch

from service.engine import SamplingParams
from service.errors import AdapterNotFound, InvalidRequest
from tests.conftest import KINDS
from tests.peft_reference import greedy_tokens


def test_base_weights_bit_identical_after_serving_every_adapter(engine):
    before = {name: p.detach().clone() for name, p in engine.base.model.named_parameters()}
    pointers = {name: p.data_ptr() for name, p in engine.base.model.named_parameters()}
    params = SamplingParams(max_new_tokens=6)
    for _ in range(3):
        for kind in [*KINDS, None]:
            engine.generate(["When was the Beijing Olympic held?", "Paris"], kind, params)
    engine.generate_rows([engine.make_row("Paris", engine.get(kind), params) for kind in KINDS])
    for name, parameter in engine.base.model.named_parameters():
        assert parameter.data_ptr() == pointers[name], name
        assert torch.equal(parameter, before[name]), name
    assert not any(p.requires_grad for p in engine.base.model.parameters())


def test_switching_adapters_replaces_no_module(engine):
    modules = {name: id(module) for name, module in engine.base.model.named_modules()}
    for kind in KINDS:
        engine.generate(["Paris"], kind, SamplingParams(max_new_tokens=2))
    assert {name: id(module) for name, module in engine.base.model.named_modules()} == modules


def test_unknown_adapter(engine):
    with pytest.raises(AdapterNotFound, match="'nope'"):
        engine.generate(["Paris"], "nope")


def test_length_and_stop_strings(engine):
    text = "When was the Beijing Olympic held?"
    full = engine.generate([text], "lora", SamplingParams(max_new_tokens=12))[0]
    assert full.finish_reason == "length" and full.completion_tokens == 12
    stop = full.text[len(full.text) // 2 :][:3]
    cut = engine.generate([text], "lora", SamplingParams(max_new_tokens=12, stop=(stop,)))[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.completion_tokens < 12


def test_end_of_sequence_finishes_with_stop(engine, tiny_model, tokenizer):
    """Rows that reach end-of-sequence stop there: `stop`, fewer tokens than the budget, and exactly
    transformers' tokens before it. Which prompts end early is found with transformers, not assumed."""
    budget = 60
    candidates = ["Paris", "Who", "Beijing", "football", "lazy", "solar", "was", "it.", "while", "largest"]
    expected = greedy_tokens(tiny_model, tokenizer, candidates, budget, tokenizer.eos_token_id)
    ending = [(text, tokens) for text, tokens in zip(candidates, expected) if len(tokens) < budget]
    assert len(ending) >= 2, "transformers ends none of the candidate prompts within the budget: pick others"
    results = engine.generate([text for text, _ in ending], None, SamplingParams(max_new_tokens=budget))
    for (text, tokens), result in zip(ending, results):
        assert result.finish_reason == "stop", text
        assert result.token_ids == tokens and result.completion_tokens == len(tokens) < budget, text
        assert tokenizer.eos_token_id not in result.token_ids


def test_seeded_sampling_is_reproducible_whatever_the_batch(engine):
    params = SamplingParams(max_new_tokens=10, temperature=1.3, top_p=0.9, top_k=50, seed=1234)
    alone = engine.generate(["Paris"], "ia3", params)[0]
    rows = [
        engine.make_row("When was the Beijing Olympic held?", engine.get("lora"), SamplingParams(max_new_tokens=10)),
        engine.make_row("Paris", engine.get("ia3"), params),
    ]
    in_batch = engine.generate_rows(rows)[1]
    assert in_batch.token_ids == alone.token_ids


def test_top_k_one_is_greedy(engine):
    greedy = engine.generate(["Paris"], "prefix_tuning", SamplingParams(max_new_tokens=8))[0]
    sampled = engine.generate(["Paris"], "prefix_tuning", SamplingParams(max_new_tokens=8, temperature=0.7, top_k=1))[0]
    assert sampled.token_ids == greedy.token_ids


def test_too_long_a_request_is_refused(engine):
    with pytest.raises(InvalidRequest, match="exceeds the base model's 256 positions"):
        engine.generate(["Paris"], "prompt_tuning", SamplingParams(max_new_tokens=300))
