"""The engine's greedy tokens equal `PeftModel.generate`'s, token for token, for every delta kind."""

from __future__ import annotations

import pytest

from service.engine import SamplingParams
from tests.conftest import KINDS
from tests.peft_reference import greedy_tokens, load_peft

# Prompts of different lengths, served together in one left-padded engine batch.
PROMPTS = [
    "When was the Beijing Olympic held?",
    "Paris",
    "Who painted the Mona Lisa? Leonardo da",
    "The quick brown fox jumps over the lazy",
]
NEW_TOKENS = 10
EOS = 2

# PEFT drops position ids for prompt tuning and P-tuning, so inside a left-padded PEFT batch the shorter
# prompts are shifted by their padding; PEFT is only padding-independent for these kinds. For the others,
# DeltaServe equals PEFT's own padded batch as well as PEFT run on each prompt alone.
PEFT_PADDING_INVARIANT = {"lora", "lora_patterns", "ia3", "prefix_tuning", "prefix_projection"}


@pytest.mark.parametrize("kind", KINDS)
def test_engine_batch_equals_peft_each_prompt_alone(kind, engine, tiny_model, tokenizer, adapter_dirs):
    peft_model = load_peft(tiny_model, adapter_dirs[kind])
    expected = [greedy_tokens(peft_model, tokenizer, [text], NEW_TOKENS, EOS)[0] for text in PROMPTS]
    ours = engine.generate(PROMPTS, adapter=kind, params=SamplingParams(max_new_tokens=NEW_TOKENS))
    assert [r.token_ids for r in ours] == expected
    assert all(r.completion_tokens == len(t) for r, t in zip(ours, expected))


@pytest.mark.parametrize("kind", sorted(PEFT_PADDING_INVARIANT))
def test_engine_batch_equals_peft_padded_batch(kind, engine, tiny_model, tokenizer, adapter_dirs):
    peft_model = load_peft(tiny_model, adapter_dirs[kind])
    expected = greedy_tokens(peft_model, tokenizer, PROMPTS, NEW_TOKENS, EOS)
    ours = engine.generate(PROMPTS, adapter=kind, params=SamplingParams(max_new_tokens=NEW_TOKENS))
    assert [r.token_ids for r in ours] == expected


def test_base_model_equals_transformers_generate(engine, tiny_model, tokenizer):
    expected = greedy_tokens(tiny_model, tokenizer, PROMPTS, NEW_TOKENS, EOS)
    ours = engine.generate(PROMPTS, adapter=None, params=SamplingParams(max_new_tokens=NEW_TOKENS))
    assert [r.token_ids for r in ours] == expected


def test_every_adapter_changes_the_output(engine):
    # Guards the equality tests: an engine that ignored adapters would fail here.
    params = SamplingParams(max_new_tokens=NEW_TOKENS)
    base = [r.token_ids for r in engine.generate(PROMPTS, None, params)]
    for kind in KINDS:
        assert [r.token_ids for r in engine.generate(PROMPTS, kind, params)] != base, kind


def test_mixed_batch_rows_equal_each_row_alone(engine):
    """One forward batch whose rows use different adapters of every kind (and none)."""
    params = SamplingParams(max_new_tokens=NEW_TOKENS)
    names = KINDS + [None]
    plan = [(names[i % len(names)], PROMPTS[i % len(PROMPTS)]) for i in range(2 * len(names))]
    rows = [engine.make_row(text, engine.get(name), params) for name, text in plan]
    mixed = engine.generate_rows(rows)
    for (name, text), result in zip(plan, mixed):
        alone = engine.generate([text], adapter=name, params=params)[0]
        assert result.token_ids == alone.token_ids, name
