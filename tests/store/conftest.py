"""Fixtures of the store tests: real adapter files written by peft itself, and an empty store."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from service.store import AdapterStore
from tests.store.helpers import (
    CONFIG,
    LIMIT,
    WEIGHTS,
)

# ---------------------------------------------------------------------------------------------
# Real adapter files, written by peft itself


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
    )
    config.name_or_path = "tiny-llama"
    model = LlamaForCausalLM(config)
    model.config._name_or_path = "tiny-llama"  # becomes base_model_name_or_path in the adapter config
    return model


def _save(peft_config, folder: Path) -> dict[str, bytes]:
    from peft import get_peft_model

    model = get_peft_model(_tiny_llama(), peft_config)
    model.save_pretrained(folder, save_embedding_layers=False)  # False: no hub lookup for the base
    return {name: (folder / name).read_bytes() for name in (CONFIG, WEIGHTS)}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    from peft import IA3Config, LoraConfig

    root = tmp_path_factory.mktemp("peft")
    return {
        "lora": _save(
            LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"),
            root / "lora",
        ),
        "ia3": _save(
            IA3Config(target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"], task_type="CAUSAL_LM"),
            root / "ia3",
        ),
    }


@pytest.fixture
def store(tmp_path) -> AdapterStore:
    return AdapterStore(tmp_path / "store", LIMIT)


