"""Helpers shared by the delta compilers: PEFT key names and checks against the base model."""

from __future__ import annotations

import torch
from peft import PeftConfig

from service.engine.base_model import FrozenBase
from service.engine.deltas import config_fields
from service.errors import (
    IncompatibleAdapter,
    InvalidAdapterConfig,
    InvalidAdapterWeights,
    UnsupportedAdapter,
)

# save_pretrained writes module keys as "base_model.model.<module path>.<suffix>".
PEFT_KEY_PREFIX = "base_model.model."


def split_module_key(key: str, suffixes: tuple[str, ...]) -> tuple[str, str] | None:
    """'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'
    -> ('model.layers.0.self_attn.q_proj', 'lora_A.weight')."""
    for suffix in suffixes:
        if key.endswith("." + suffix):
            return key[: -len(suffix) - 1].removeprefix(PEFT_KEY_PREFIX), suffix
    return None


def require_prompt_embeddings(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    # PEFT saves every prompt-learning kind as one tensor: the prompt encoder's output, already computed.
    extra = sorted(set(tensors) - {"prompt_embeddings"})
    if "prompt_embeddings" not in tensors:
        raise InvalidAdapterWeights(
            "adapter_model.safetensors has no 'prompt_embeddings' tensor, "
            "which PEFT writes for prompt-learning adapters"
        )
    if extra:
        raise InvalidAdapterWeights(f"unexpected tensors in a prompt-learning adapter: {', '.join(extra[:5])}")
    return tensors["prompt_embeddings"]


def virtual_token_count(config: PeftConfig, base: FrozenBase, embeddings: torch.Tensor, *, submodules: int = 1) -> int:
    """The rows of prompt_embeddings, checked against num_virtual_tokens (x `submodules`, as PEFT saves prompt
    tuning) and against the base model's positions. Checked before anything is sized by the count, so an
    absurd num_virtual_tokens is refused by name, never allocated."""
    n = config_fields.positive_int(config, "num_virtual_tokens")
    if embeddings.dim() != 2:
        raise InvalidAdapterWeights(
            f"prompt_embeddings has shape {tuple(embeddings.shape)}; PEFT saves it as [virtual tokens, values]"
        )
    expected, held = n * submodules, embeddings.shape[0]
    if held != expected:
        times = f" x num_transformer_submodules={submodules}" if submodules != 1 else ""
        raise InvalidAdapterConfig(
            f"adapter_config.json has num_virtual_tokens={n}{times}, but prompt_embeddings holds {held} virtual "
            f"tokens (shape {tuple(embeddings.shape)}): the config does not belong with these weights"
        )
    if expected >= base.max_positions:
        raise IncompatibleAdapter(
            f"the adapter's {expected} virtual tokens fill the base model's {base.max_positions} positions, "
            "leaving no room for a prompt"
        )
    return expected


def require_causal_lm(config: PeftConfig) -> None:
    task = getattr(config, "task_type", None)
    task = getattr(task, "value", task)
    if task not in (None, "CAUSAL_LM"):
        raise UnsupportedAdapter(f"task_type {task} is not served; DeltaServe serves CAUSAL_LM adapters")


def check_module(base_shapes: dict[str, tuple[int, int]], module: str) -> tuple[int, int]:
    if module not in base_shapes:
        raise IncompatibleAdapter(
            f"the adapter targets module '{module}', which the base model does not have as a Linear layer"
        )
    return base_shapes[module]


def reject_unknown_keys(unknown: list[str], kind: str) -> None:
    if not unknown:
        return
    hints = {
        "lora_magnitude_vector": "DoRA (use_dora=True)",
        "lora_embedding_A": "LoRA on embedding layers",
        "lora_embedding_B": "LoRA on embedding layers",
        "modules_to_save": "modules_to_save (fully trained extra modules)",
        "trainable_tokens": "trainable_token_indices",
        "lora_bias": "lora_bias=True",
    }
    for key in unknown:
        for marker, feature in hints.items():
            if marker in key:
                raise UnsupportedAdapter(f"{kind} adapters using {feature} are not supported yet (tensor '{key}')")
    raise InvalidAdapterWeights(f"unexpected tensors in a {kind} adapter: {', '.join(sorted(unknown)[:5])}")
