"""Compile-time checks on real PEFT-saved adapters: weight values against the dtype they are served in, and
every adapter PEFT writes (the test kinds, the demo adapters) still compiling."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from service.engine.base_model import wrap_base_model
from service.engine.deltas import compile_directory as compile_adapter
from service.engine.deltas.weight_values import check_weight_values
from service.errors import (
    IncompatibleAdapter,
    InvalidAdapterConfig,
    InvalidAdapterWeights,
)
from tests.conftest import KINDS

DEMO_DIR = Path(__file__).resolve().parent.parent / "adapters" / "demo"
LORA_A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"


def edited_copy(source: Path, destination: Path, config: dict | None = None,
                tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """A copy of a saved adapter with config fields updated and tensors replaced."""
    shutil.copytree(source, destination)
    if config:
        path = destination / "adapter_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    if tensors:
        weights = destination / "adapter_model.safetensors"
        save_file({**load_file(weights), **tensors}, weights)
    return destination


@pytest.fixture(scope="module")
def half_base(tiny_model, tokenizer):
    return wrap_base_model(copy.deepcopy(tiny_model).to(torch.float16), tokenizer, name="tiny-llama-fp16")


@pytest.fixture(scope="module")
def bf16_base(tiny_model, tokenizer):
    return wrap_base_model(copy.deepcopy(tiny_model).to(torch.bfloat16), tokenizer, name="tiny-llama-bf16")


@pytest.mark.parametrize("kind", KINDS)
def test_every_real_peft_adapter_compiles_in_every_dtype(kind, adapter_dirs, tiny_base, half_base, bf16_base):
    for base in (tiny_base, half_base, bf16_base):
        assert compile_adapter(adapter_dirs[kind], base, device=torch.device("cpu")).kind


def test_demo_adapters_compile_on_a_model_of_smollm2_shape(tokenizer):
    """The demo adapters were saved by PEFT on SmolLM2-135M; its module names and shapes, without its weights."""
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
                         tie_word_embeddings=True)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    base = wrap_base_model(model, tokenizer, name="smollm2-shape")
    folders = sorted(p for p in DEMO_DIR.iterdir() if (p / "adapter_config.json").is_file())
    assert [p.name for p in folders] == ["qa", "spelling", "topic"]
    kinds = {folder.name: compile_adapter(folder, base, device=torch.device("meta")).kind for folder in folders}
    assert kinds == {"qa": "prefix_tuning", "spelling": "lora", "topic": "prompt_tuning"}


def test_a_value_past_float16_is_refused_where_it_would_be_cast_to_float16(adapter_dirs, half_base, tmp_path):
    # Virtual tokens take the model's dtype: 7e4 would become inf in float16.
    embeddings = load_file(adapter_dirs["prompt_tuning"] / "adapter_model.safetensors")["prompt_embeddings"].clone()
    embeddings[0, 0] = 7e4
    prompt = edited_copy(adapter_dirs["prompt_tuning"], tmp_path / "p", tensors={"prompt_embeddings": embeddings})
    with pytest.raises(
        InvalidAdapterWeights, match="'prompt_embeddings' holds values up to 7e\\+04, which overflow float16"
    ):
        compile_adapter(prompt, half_base)
    # LoRA weights stay float32 on a half-precision model, as in PEFT, so the same value is served as it is.
    lora_a = load_file(adapter_dirs["lora"] / "adapter_model.safetensors")[LORA_A].clone()
    lora_a[0, 0] = 7e4
    lora = edited_copy(adapter_dirs["lora"], tmp_path / "l", tensors={LORA_A: lora_a})
    delta = compile_adapter(lora, half_base).modules["model.layers.0.self_attn.q_proj"]
    assert delta.lora_a.dtype == torch.float32 and delta.lora_a[0, 0].item() == 7e4


def test_float64_past_bfloat16_range_is_refused(adapter_dirs, bf16_base, tmp_path):
    embeddings = load_file(adapter_dirs["prefix_tuning"] / "adapter_model.safetensors")["prompt_embeddings"].double()
    embeddings[1, 2] = 1e39
    directory = edited_copy(adapter_dirs["prefix_tuning"], tmp_path / "x", tensors={"prompt_embeddings": embeddings})
    with pytest.raises(InvalidAdapterWeights, match="overflow bfloat16"):
        compile_adapter(directory, bf16_base)


@pytest.mark.parametrize(
    "dtype, value, says",
    [
        (torch.float8_e4m3fn, float("nan"), "holds NaN or infinite values"),  # torch.isfinite has no float8 kernel
        (torch.int64, 3, "has dtype int64; adapter weights are floating point"),
    ],
)
def test_unusual_dtypes(adapter_dirs, tiny_base, tmp_path, dtype, value, says):
    lora_a = load_file(adapter_dirs["lora"] / "adapter_model.safetensors")[LORA_A].to(dtype)
    lora_a[0, 0] = value
    directory = edited_copy(adapter_dirs["lora"], tmp_path / "d", tensors={LORA_A: lora_a})
    with pytest.raises(InvalidAdapterWeights, match=says):
        compile_adapter(directory, tiny_base)


def test_rank_pattern_values_are_matched_per_module(adapter_dirs, tiny_base, tmp_path):
    # lora_patterns has down_proj at rank 8 by rank_pattern; saying 4 there disagrees with its weights.
    directory = edited_copy(
        adapter_dirs["lora_patterns"],
        tmp_path / "r",
        config={"rank_pattern": {"down_proj": 4, "layers.1.self_attn.q_proj": 2}},
    )
    with pytest.raises(
        InvalidAdapterConfig, match=re.escape("'model.layers.0.mlp.down_proj' has rank 8 in its weights but rank 4")
    ):
        compile_adapter(directory, tiny_base)


def test_a_prefix_as_long_as_the_model_is_refused(adapter_dirs, tiny_base, tmp_path):
    values = load_file(adapter_dirs["prefix_tuning"] / "adapter_model.safetensors")["prompt_embeddings"].shape[1]
    directory = edited_copy(
        adapter_dirs["prefix_tuning"],
        tmp_path / "x",
        config={"num_virtual_tokens": 256},
        tensors={"prompt_embeddings": torch.zeros(256, values)},
    )
    with pytest.raises(IncompatibleAdapter, match="256 virtual tokens fill the base model's 256 positions"):
        compile_adapter(directory, tiny_base)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_value_is_found_wherever_it_is(dtype, value):
    for position in (0, 777, 64 * 33 - 1):
        tensor = torch.randn(64, 33).to(dtype)
        tensor.view(-1)[position] = value
        with pytest.raises(InvalidAdapterWeights, match="'w' holds NaN or infinite values"):
            check_weight_values({"w": tensor}, torch.float32)


def test_values_that_round_to_the_largest_float16_are_not_overflow():
    check_weight_values({"w": torch.tensor([65504.0, 65519.0, -65519.0])}, torch.float16)  # round to +-65504
    with pytest.raises(InvalidAdapterWeights, match=re.escape("up to 6.552e+04, which overflow float16")):
        check_weight_values({"w": torch.tensor([1.0, -65520.0])}, torch.float16)
