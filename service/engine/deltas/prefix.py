"""Prefix tuning and P-tuning v2 (with or without prefix_projection): per-layer key/value prefixes.

PEFT saves the prefix encoder's output ("prompt_embeddings" [n, layers * 2 * kv_dim]); with a projection the
MLP has already run at save time. We reshape it once into [layers, 2, kv_heads, n, head_dim], the layout the
KV cache uses, exactly as PEFT's `get_prompt` does per call.
"""

from __future__ import annotations

import torch
from peft import PrefixTuningConfig

from service.engine.base_model import FrozenBase
from service.engine.deltas import config_fields
from service.engine.deltas.common import (
    require_causal_lm,
    require_prompt_embeddings,
    virtual_token_count,
)
from service.engine.deltas.compiled import CompiledDelta, PromptDelta
from service.engine.deltas.registry import register
from service.engine.deltas.weight_values import check_weight_values
from service.errors import IncompatibleAdapter


class KVPrefix(PromptDelta):
    """Keys and values [layers, 2, kv_heads, n, head_dim] laid before the row's own entries in every layer's
    cache at prefill; positions and the attention mask count them, as PEFT's past_key_values do."""

    def __init__(self, kv: torch.Tensor):
        self.kv = kv
        self.prefix_length = kv.shape[3]

    def write_prefix(self, keys: list[torch.Tensor], values: list[torch.Tensor], row: int, start: int) -> None:
        end = start + self.prefix_length
        for layer, (layer_keys, layer_values) in enumerate(zip(keys, values)):
            layer_keys[row, :, start:end] = self.kv[layer, 0]
            layer_values[row, :, start:end] = self.kv[layer, 1]

    def to(self, device: torch.device, dtype: torch.dtype) -> KVPrefix:
        return KVPrefix(self.kv.to(device=device, dtype=dtype))


@register("prefix_tuning", "PREFIX_TUNING")
def compile_prefix(config: PrefixTuningConfig, tensors: dict[str, torch.Tensor], base: FrozenBase) -> CompiledDelta:
    require_causal_lm(config)
    embeddings = require_prompt_embeddings(tensors)
    layers, kv_heads, head_dim = base.num_layers, base.num_kv_heads, base.head_dim
    trained_layers = config_fields.optional_positive_int(config, "num_layers")
    if trained_layers is not None and trained_layers != layers:
        raise IncompatibleAdapter(
            f"the prefix was trained for {trained_layers} layers but the base model has {layers}: "
            "it was trained for another base model"
        )
    n = virtual_token_count(config, base, embeddings)  # PEFT saves a prefix's n rows, whatever the submodules
    expected = layers * 2 * kv_heads * head_dim
    if embeddings.shape[1] != expected:
        raise IncompatibleAdapter(
            f"the prefix has {embeddings.shape[1]} values per virtual token, but the base model needs "
            f"{layers} layers x 2 x {kv_heads} key/value heads x {head_dim} = {expected}: "
            "it was trained for another base model"
        )
    check_weight_values(tensors, base.dtype)  # the prefix is served in the model's dtype
    # [n, layers*2, kv_heads, head_dim] -> [layers*2, kv_heads, n, head_dim] -> [layers, 2, kv_heads, n, head_dim]
    kv = embeddings.view(n, layers * 2, kv_heads, head_dim).permute(1, 2, 0, 3)
    kv_prefix = kv.reshape(layers, 2, kv_heads, n, head_dim).contiguous()
    return CompiledDelta(
        kind="prefix_tuning",
        config=config,
        parameters=embeddings.numel(),
        base_model=config.base_model_name_or_path,
        prompt=KVPrefix(kv_prefix),
    )
