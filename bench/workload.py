"""The benchmark's workload: a word-level tokenizer for random-initialised models, and adapters of every kind
made and saved by PEFT on the model's own shapes (also used by the soak, bench/soak_adapters.py)."""

from __future__ import annotations

import copy
from pathlib import Path

from peft import (
    IA3Config,
    LoraConfig,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    get_peft_model,
)
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


def word_level_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    # A real tokenizer object over the model's whole vocabulary: token ids map one to one.
    vocab = {f"t{i}": i for i in range(vocab_size)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="t0", eos_token="t1")


def adapter_configs(count: int) -> list[tuple[str, object]]:
    """`count` adapters cycling through every kind: LoRA ranks 8-64, IA3, prompt tuning, P-tuning, prefix."""
    kinds = [
        (
            "lora-r8",
            LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=ATTENTION, init_lora_weights=False),
        ),
        (
            "lora-r16",
            LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, target_modules=ATTENTION, init_lora_weights=False),
        ),
        (
            "lora-r64",
            LoraConfig(
                task_type="CAUSAL_LM",
                r=64,
                lora_alpha=64,
                target_modules=[*ATTENTION, "down_proj"],
                init_lora_weights=False,
            ),
        ),
        (
            "ia3",
            IA3Config(
                task_type="CAUSAL_LM",
                target_modules=["k_proj", "v_proj", "down_proj"],
                feedforward_modules=["down_proj"],
            ),
        ),
        ("prompt", PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20)),
        ("ptuning", PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=16, encoder_hidden_size=128)),
        ("prefix", PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=16)),
    ]
    return [(f"{kinds[i % len(kinds)][0]}-{i}", kinds[i % len(kinds)][1]) for i in range(count)]


def save_adapters(model, configs, root: Path) -> dict[str, Path]:
    paths = {}
    for name, config in configs:
        peft_model = get_peft_model(model, copy.deepcopy(config))
        peft_model.save_pretrained(str(root / name))
        # Take the adapter back out so the next one starts from the plain base model.
        model = (
            peft_model.unload() if not peft_model.peft_config["default"].is_prompt_learning else peft_model.base_model
        )
        paths[name] = root / name
    return paths
