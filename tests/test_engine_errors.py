"""Adapters that cannot be served are refused at load with a message naming the problem; the engine goes on."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

from service.engine import Engine, SamplingParams
from service.engine.base_model import wrap_base_model
from service.errors import (
    IncompatibleAdapter,
    InvalidAdapterConfig,
    InvalidAdapterWeights,
    InvalidRequest,
    UnsupportedAdapter,
)
from tests.factory import save_adapter, tiny_config
from tests.peft_reference import greedy_tokens


def other_base(vocab_size: int, **overrides) -> LlamaForCausalLM:
    config = tiny_config(vocab_size)
    for key, value in overrides.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


LORA = LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)


def test_lora_for_another_hidden_size(engine, tokenizer, tmp_path):
    directory = save_adapter(other_base(len(tokenizer), hidden_size=32, intermediate_size=64), LORA, tmp_path / "a")
    with pytest.raises(IncompatibleAdapter, match=r"64->64 in the base model.*32->64.*another base model"):
        engine.compile(directory)


def test_prompt_for_another_hidden_size(engine, tokenizer, tmp_path):
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    directory = save_adapter(other_base(len(tokenizer), hidden_size=32, intermediate_size=64), config, tmp_path / "p")
    with pytest.raises(IncompatibleAdapter, match=r"32 dimensions.*64"):
        engine.compile(directory)


def test_prefix_for_another_layer_count(engine, tokenizer, tmp_path):
    config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    directory = save_adapter(other_base(len(tokenizer), num_hidden_layers=3), config, tmp_path / "x")
    with pytest.raises(IncompatibleAdapter, match="3 layers but the base model has 2"):
        engine.compile(directory)


def test_lora_targeting_a_missing_module(engine, adapter_dirs, tmp_path):
    directory = tmp_path / "renamed"
    shutil.copytree(adapter_dirs["lora"], directory)
    tensors = load_file(directory / "adapter_model.safetensors")
    save_file(
        {k.replace("q_proj", "query_key_value"): v for k, v in tensors.items()}, directory / "adapter_model.safetensors"
    )
    with pytest.raises(IncompatibleAdapter, match="query_key_value"):
        engine.compile(directory)


def test_dora_is_refused_by_name(engine, tiny_model, tmp_path):
    config = copy.deepcopy(LORA)
    config.use_dora = True
    directory = save_adapter(tiny_model, config, tmp_path / "dora")
    with pytest.raises(UnsupportedAdapter, match="DoRA"):
        engine.compile(directory)


def test_unserved_kind_is_refused(engine, adapter_dirs, tmp_path):
    directory = tmp_path / "loha"
    shutil.copytree(adapter_dirs["lora"], directory)
    config = json.loads((directory / "adapter_config.json").read_text())
    config["peft_type"] = "LOHA"
    (directory / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedAdapter, match=r"LOHA is not served.*LORA"):
        engine.compile(directory)


def test_broken_files(engine, adapter_dirs, tmp_path):
    directory = tmp_path / "broken"
    shutil.copytree(adapter_dirs["lora"], directory)
    (directory / "adapter_config.json").write_text("{not json")
    with pytest.raises(InvalidAdapterConfig, match="not valid JSON"):
        engine.compile(directory)
    shutil.copy(adapter_dirs["lora"] / "adapter_config.json", directory)
    (directory / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(InvalidAdapterWeights, match="safetensors"):
        engine.compile(directory)


def test_failed_loads_leave_the_engine_serving(engine, adapter_dirs, tmp_path):
    before = engine.names()
    directory = tmp_path / "half"
    shutil.copytree(adapter_dirs["lora"], directory)
    (directory / "adapter_model.safetensors").unlink()
    with pytest.raises(InvalidAdapterWeights):
        engine.load("lora", directory)
    assert engine.names() == before
    assert engine.generate(["Paris"], "lora", SamplingParams(max_new_tokens=3))[0].completion_tokens > 0


def test_sliding_window_models_cap_rows_at_the_window(tokenizer):
    """Our caches keep every key, which is what a sliding-window layer sees only while a row fits in its
    window: rows are capped there, and within it both decode paths equal transformers' generate."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        sliding_window=24,
        initializer_range=0.2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = MistralForCausalLM(config).eval()
    text = "Who painted the Mona Lisa?"
    prompt = len(tokenizer(text)["input_ids"])
    expected = greedy_tokens(model, tokenizer, [text], 24 - prompt, 2)[0]
    for decode in ("eager", "static"):
        engine = Engine(wrap_base_model(copy.deepcopy(model), tokenizer, name="tiny-mistral"), decode=decode)
        assert engine.base.max_positions == 24
        assert engine.generate([text], None, SamplingParams(max_new_tokens=24 - prompt))[0].token_ids == expected
        with pytest.raises(InvalidRequest, match="24-token sliding attention window"):
            engine.make_row(text, None, SamplingParams(max_new_tokens=25 - prompt))
