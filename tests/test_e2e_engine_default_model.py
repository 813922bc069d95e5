"""On the real embedded SmolLM2-135M-Instruct: engine greedy tokens equal PEFT's for LoRA, prompt tuning, prefix tuning,
on both decode paths."""

from __future__ import annotations

import copy

import pytest
from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, PromptTuningInit

from service.config import Settings
from service.engine import Engine, SamplingParams
from service.engine.base_model import load_base_model
from tests.factory import save_adapter
from tests.peft_reference import greedy_tokens, load_peft

pytestmark = pytest.mark.e2e

PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "Human: When was Beiiing olymp#ic heldd ?\n\nAssistant: ",
    "The three primary colours are",
]
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def real_engine():
    return Engine(load_base_model(Settings(device="cpu")))


def _configs(model_dir: str):
    return {
        "lora": LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                           init_lora_weights=False),
        "prompt_tuning_text": PromptTuningConfig(task_type="CAUSAL_LM", prompt_tuning_init=PromptTuningInit.TEXT,
                                                 prompt_tuning_init_text="Answer briefly and correctly:",
                                                 num_virtual_tokens=8, tokenizer_name_or_path=model_dir),
        "prefix_tuning": PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=6),
    }


@pytest.mark.parametrize("kind", ["lora", "prompt_tuning_text", "prefix_tuning"])
def test_default_model_matches_peft(kind, real_engine, tmp_path):
    base = real_engine.base
    model_dir = base.model.name_or_path
    reference_model = copy.deepcopy(base.model)
    directory = save_adapter(reference_model, _configs(model_dir)[kind], tmp_path / kind)
    real_engine.load(kind, directory)
    eos = next(iter(base.eos_token_ids))
    peft_model = load_peft(reference_model, directory)
    expected = [greedy_tokens(peft_model, base.tokenizer, [p], NEW_TOKENS, eos)[0] for p in PROMPTS]
    ours = real_engine.generate(PROMPTS, kind, SamplingParams(max_new_tokens=NEW_TOKENS))
    assert [r.token_ids for r in ours] == expected
    # The static decode path (the GPU default), run eagerly here, on the same base model.
    static = Engine(base, decode="static", max_batch_size=len(PROMPTS), kv_cache_tokens=128)
    static.load(kind, directory)
    assert [r.token_ids for r in static.generate(PROMPTS, kind, SamplingParams(max_new_tokens=NEW_TOKENS))] == expected
    plain = real_engine.generate(PROMPTS, None, SamplingParams(max_new_tokens=NEW_TOKENS))
    assert [r.token_ids for r in ours] != [r.token_ids for r in plain]
