"""Prompt tuning (random or TEXT-initialised) and P-tuning: virtual tokens prepended to the input embeddings.

PEFT's save format stores, for both kinds, the prompt encoder's *output* ("prompt_embeddings" [n, hidden]):
for P-tuning the MLP/LSTM encoder is run once when PEFT saves. So compiling is checking and keeping that
tensor; nothing runs per request.
"""

from __future__ import annotations

import torch
from peft import PeftConfig

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


class VirtualTokens(PromptDelta):
    """Embeddings [n, hidden] laid before the row's token embeddings at prefill."""

    def __init__(self, embeddings: torch.Tensor):
        self.embeddings = embeddings
        self.virtual_tokens = embeddings.shape[0]

    def write_embeddings(self, out: torch.Tensor) -> None:
        out.copy_(self.embeddings.to(out.dtype))

    def to(self, device: torch.device, dtype: torch.dtype) -> VirtualTokens:
        return VirtualTokens(self.embeddings.to(device=device, dtype=dtype))


def _compile_virtual_tokens(
    kind: str, config: PeftConfig, tensors: dict[str, torch.Tensor], base: FrozenBase
) -> CompiledDelta:
    require_causal_lm(config)
    embeddings = require_prompt_embeddings(tensors)
    submodules = config_fields.optional_positive_int(config, "num_transformer_submodules") or 1
    virtual_token_count(config, base, embeddings, submodules=submodules)
    if embeddings.shape[1] != base.hidden_size:
        raise IncompatibleAdapter(
            f"the adapter's virtual tokens have {embeddings.shape[1]} dimensions but the base model's embeddings "
            f"have {base.hidden_size}: it was trained for another base model"
        )
    check_weight_values(tensors, base.dtype)  # virtual tokens are served in the model's dtype
    return CompiledDelta(
        kind=kind,
        config=config,
        parameters=embeddings.numel(),
        base_model=config.base_model_name_or_path,
        prompt=VirtualTokens(embeddings),
    )


@register("prompt_tuning", "PROMPT_TUNING")
def compile_prompt_tuning(config: PeftConfig, tensors: dict[str, torch.Tensor], base: FrozenBase) -> CompiledDelta:
    return _compile_virtual_tokens("prompt_tuning", config, tensors, base)


@register("p_tuning", "P_TUNING")
def compile_p_tuning(config: PeftConfig, tensors: dict[str, torch.Tensor], base: FrozenBase) -> CompiledDelta:
    return _compile_virtual_tokens("p_tuning", config, tensors, base)
