"""The engine equals `PeftModel.generate` for every delta kind: the same greedy tokens and, at every step, the
log-probabilities of the whole vocabulary within the float32 tolerance (tests/peft_reference.py). Alone, in
batches of one adapter, and in mixed batches of every kind."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, PeftModel

from tests.conftest import KINDS
from tests.factory import save_adapter
from tests.peft_reference import (
    FLOAT32_TOLERANCE,
    PeftRun,
    assert_matches_peft,
    engine_logprobs,
    generate_runs,
    logprob_params,
)

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

# An adapter must move the first step's log-probabilities (same text, with and without it) by this many
# float32 tolerances: then an error of a fraction of a percent in it is above the tolerance too.
ADAPTER_EFFECT_MARGIN = 1000

FP32 = torch.float32


@pytest.mark.parametrize("kind", KINDS)
def test_engine_batch_equals_peft_each_prompt_alone(kind, engine, peft_oracle, vocab_size):
    ours = engine.generate(PROMPTS, adapter=kind, params=logprob_params(NEW_TOKENS, vocab_size))
    for text, result in zip(PROMPTS, ours):
        expected = peft_oracle.alone(kind, text, NEW_TOKENS)
        assert_matches_peft(result, expected, FP32, f"{kind} {text!r}", eos_token_id=EOS)
        assert result.completion_tokens == len(expected.tokens)
        assert result.finish_reason == ("length" if len(expected.tokens) == NEW_TOKENS else "stop")


@pytest.mark.parametrize("kind", sorted(PEFT_PADDING_INVARIANT))
def test_engine_batch_equals_peft_padded_batch(kind, engine, peft_oracle, tokenizer, vocab_size):
    expected = generate_runs(peft_oracle.model(kind), tokenizer, PROMPTS, NEW_TOKENS, EOS)
    ours = engine.generate(PROMPTS, adapter=kind, params=logprob_params(NEW_TOKENS, vocab_size))
    for text, result, run in zip(PROMPTS, ours, expected):
        assert_matches_peft(result, run, FP32, f"{kind} {text!r} in PEFT's padded batch", eos_token_id=EOS)


def test_base_model_equals_transformers_generate(engine, tiny_model, tokenizer, vocab_size):
    expected = generate_runs(tiny_model, tokenizer, PROMPTS, NEW_TOKENS, EOS)
    ours = engine.generate(PROMPTS, adapter=None, params=logprob_params(NEW_TOKENS, vocab_size))
    for text, result, run in zip(PROMPTS, ours, expected):
        assert_matches_peft(result, run, FP32, f"base model {text!r}", eos_token_id=EOS)


@pytest.mark.parametrize("kind", KINDS)
def test_every_adapter_changes_the_output(kind, engine, vocab_size):
    """Guards the equality tests: an engine that ignored an adapter, or adapters too weak to notice an error in
    them, would fail here."""
    params = logprob_params(NEW_TOKENS, vocab_size)
    base = engine.generate(PROMPTS, None, params)
    adapted = engine.generate(PROMPTS, kind, params)
    assert [r.token_ids for r in adapted] != [r.token_ids for r in base]
    # The first step reads the same text with and without the adapter: the difference is the adapter's alone.
    assert all(r.token_ids for r in adapted + base), "a prompt ended at once: no step to compare"
    moved = min(
        float((engine_logprobs(ours, vocab_size)[0] - engine_logprobs(theirs, vocab_size)[0]).abs().max())
        for ours, theirs in zip(adapted, base)
    )
    assert moved >= ADAPTER_EFFECT_MARGIN * FLOAT32_TOLERANCE, f"{kind} moves the log-probabilities by only {moved:.3g}"


def test_mixed_batch_rows_equal_peft_each_row_alone(engine, peft_oracle, vocab_size):
    """One forward batch whose rows use different adapters of every kind (and none)."""
    params = logprob_params(NEW_TOKENS, vocab_size)
    names = [*KINDS, None]
    plan = [(names[i % len(names)], PROMPTS[i % len(PROMPTS)]) for i in range(2 * len(names))]
    mixed = engine.generate_rows([engine.make_row(text, engine.get(name), params) for name, text in plan])
    for (name, text), result in zip(plan, mixed):
        expected = peft_oracle.alone(name, text, NEW_TOKENS)
        assert_matches_peft(result, expected, FP32, f"{name} {text!r} in a mixed batch", eos_token_id=EOS)


@pytest.fixture
def third_lora(tmp_path, tiny_model, engine):
    """A LoRA of another rank on modules the other two share, served as `third_lora` for one test."""
    config = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=["q_proj", "up_proj", "down_proj"],
                        init_lora_weights=False)
    directory = save_adapter(tiny_model, config, tmp_path / "third_lora", seed=99)
    engine.load("third_lora", directory)
    yield directory
    engine.unregister("third_lora")


def test_mixed_lora_batch_equals_peft_mixed_batch(engine, tiny_model, tokenizer, adapter_dirs, third_lora, vocab_size):
    """PEFT's own mixed batch (`generate(adapter_names=...)`, several LoRAs loaded in one PeftModel) against the
    engine's, row by row: LoRA rows are padding-independent in PEFT, so this is PEFT's batch itself."""
    peft_model = PeftModel.from_pretrained(copy.deepcopy(tiny_model), str(adapter_dirs["lora"]), adapter_name="lora")
    peft_model.load_adapter(str(adapter_dirs["lora_patterns"]), adapter_name="lora_patterns")
    peft_model.load_adapter(str(third_lora), adapter_name="third_lora")
    peft_model.eval()
    names = ["lora", "__base__", "lora_patterns", "third_lora", "lora_patterns", "lora", "third_lora", "__base__"]
    texts = [PROMPTS[(i * 3) % len(PROMPTS)] for i in range(len(names))]
    expected = generate_runs(peft_model, tokenizer, texts, NEW_TOKENS, EOS, adapter_names=names)

    params = logprob_params(NEW_TOKENS, vocab_size)
    deltas = [engine.get(None if name == "__base__" else name) for name in names]
    rows = [engine.make_row(text, delta, params) for delta, text in zip(deltas, texts)]
    for name, text, result, run in zip(names, texts, engine.generate_rows(rows), expected):
        assert_matches_peft(result, run, FP32, f"{name} {text!r} in PEFT's mixed batch", eos_token_id=EOS)


def test_the_comparison_fails_just_beyond_the_tolerance(engine, peft_oracle, vocab_size):
    result = engine.generate([PROMPTS[0]], "lora", logprob_params(NEW_TOKENS, vocab_size))[0]
    expected = peft_oracle.alone("lora", PROMPTS[0], NEW_TOKENS)
    nudged = PeftRun(tokens=expected.tokens, logits=expected.logits.clone())
    nudged.logits[0, 0] += 2 * FLOAT32_TOLERANCE
    with pytest.raises(AssertionError, match="log-probabilities differ from PEFT's at step 0"):
        assert_matches_peft(result, nudged, FP32, "nudged", eos_token_id=EOS)
    one_short = PeftRun(tokens=expected.tokens[:-1], logits=expected.logits)
    with pytest.raises(AssertionError, match="tokens part"):
        assert_matches_peft(result, one_short, FP32, "one token short", eos_token_id=EOS)
