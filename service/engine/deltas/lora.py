"""LoRA: y += scale * B(A(x)) on each target Linear, with PEFT's rank/alpha patterns and rsLoRA scaling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from peft import LoraConfig
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

from service.engine.base_model import BaseModel
from service.engine.deltas import config_fields
from service.engine.deltas.common import (
    check_module,
    reject_unknown_keys,
    require_causal_lm,
    split_module_key,
)
from service.engine.deltas.compiled import CompiledDelta, LinearDelta
from service.engine.deltas.module_patterns import BoundedPatterns, pattern_key
from service.engine.deltas.registry import register
from service.engine.deltas.targets import match_targets, target_rules
from service.engine.deltas.weight_values import check_weight_values, linear_weight_dtype
from service.errors import (
    IncompatibleAdapter,
    InvalidAdapterConfig,
    InvalidAdapterWeights,
    UnsupportedAdapter,
)

# LoraConfig options that change the forward pass in ways this module does not implement.
_UNSUPPORTED_OPTIONS = {
    "use_dora": "DoRA",
    "lora_bias": "lora_bias",
    "fan_in_fan_out": "fan_in_fan_out (Conv1D layers)",
    "use_qalora": "QA-LoRA",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens)",
    "layer_replication": "layer_replication",
    "target_parameters": "target_parameters (LoRA on parameters)",
    "use_bdlora": "BD-LoRA",
    "arrow_config": "Arrow routing",
    "kasa_config": "KaSA",
    "velora_config": "VeLoRA",
    "monteclora_config": "MonteCLoRA",
    "megatron_config": "Megatron layers",
    "modules_to_save": "modules_to_save",
    "trainable_token_indices": "trainable_token_indices",
}


class LoraLinearDelta(LinearDelta):
    def __init__(self, lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float):
        self.lora_a = lora_a  # [r, in]
        self.lora_b = lora_b  # [out, r]
        self.scale = scale

    @property
    def rank(self) -> int:
        return self.lora_a.shape[0]

    def apply_output(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Same operations as PEFT's Linear.forward (input cast to the adapter's dtype, sum rounded back to
        # the output's dtype once), so results agree with PEFT's bit for bit on one device.
        return (y + F.linear(F.linear(x.to(self.lora_a.dtype), self.lora_a), self.lora_b) * self.scale).to(y.dtype)

    def to(self, device: torch.device, dtype: torch.dtype) -> LoraLinearDelta:
        return LoraLinearDelta(self.lora_a.to(device, dtype), self.lora_b.to(device, dtype), self.scale)

    def numel(self) -> int:
        return self.lora_a.numel() + self.lora_b.numel()


def _check_options(config: LoraConfig) -> None:
    for option, feature in _UNSUPPORTED_OPTIONS.items():
        if getattr(config, option, None):
            raise UnsupportedAdapter(f"LoRA adapters using {feature} are not supported yet")


class _Scales:
    """Per-module LoRA scale from r / lora_alpha and their patterns, PEFT's way, with every value checked."""

    def __init__(self, config: LoraConfig, patterns: BoundedPatterns, served_dtype: torch.dtype):
        self.r = config_fields.positive_int(config, "r")
        self.alpha = config_fields.finite_number(config, "lora_alpha")
        self.rank_pattern = config_fields.pattern_dict(config, "rank_pattern", _is_rank, "a positive integer")
        self.alpha_pattern = config_fields.pattern_dict(
            config, "alpha_pattern", config_fields.is_finite_number, "a finite number"
        )
        self.rslora = config_fields.flag(config, "use_rslora")
        self.patterns = patterns
        self.served_dtype = served_dtype

    def scale(self, module: str, rank: int) -> float:
        rank_key = pattern_key(list(self.rank_pattern), module, self.patterns, "rank_pattern")
        alpha_key = pattern_key(list(self.alpha_pattern), module, self.patterns, "alpha_pattern")
        r = self.rank_pattern.get(rank_key, self.r)
        alpha = self.alpha_pattern.get(alpha_key, self.alpha)
        if r != rank:
            raise InvalidAdapterConfig(
                f"module '{module}' has rank {rank} in its weights but rank {r} in adapter_config.json "
                "(r / rank_pattern): the config does not belong with these weights"
            )
        scale = alpha / math.sqrt(r) if self.rslora else alpha / r
        if not abs(scale) <= torch.finfo(self.served_dtype).max:  # a factor on the output, in the served dtype
            raise InvalidAdapterConfig(
                f"module '{module}': the LoRA scale lora_alpha / r = {scale:.4g} overflows {self.served_dtype}"
            )
        return scale


def _is_rank(value: object) -> bool:
    return config_fields.is_int(value) and value > 0


@register("lora", "LORA")
def compile_lora(config: LoraConfig, tensors: dict[str, torch.Tensor], base: BaseModel) -> CompiledDelta:
    require_causal_lm(config)
    _check_options(config)
    served_dtype = linear_weight_dtype(base.dtype)
    patterns = BoundedPatterns()
    scales = _Scales(config, patterns, served_dtype)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, tensor in tensors.items():
        split = split_module_key(key, ("lora_A.weight", "lora_B.weight"))
        if split is None:
            unknown.append(key)
            continue
        module, suffix = split
        pairs.setdefault(module, {})[suffix] = tensor
    reject_unknown_keys(unknown, "LoRA")
    if not pairs:
        raise InvalidAdapterWeights("the LoRA adapter has no lora_A/lora_B tensors")
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"lora_A.weight", "lora_B.weight"}:
            raise InvalidAdapterWeights(f"module '{module}' lacks one of lora_A/lora_B")
    rules = target_rules(config, base, TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)
    match_targets(config, rules, base, pairs, patterns, kind="LoRA", tensors_for="lora_A and lora_B")

    linear: dict[str, LinearDelta] = {}
    for module, pair in sorted(pairs.items()):
        a, b = pair["lora_A.weight"], pair["lora_B.weight"]
        in_features, out_features = check_module(base.linear_shapes, module)
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise InvalidAdapterWeights(f"module '{module}': lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} do not pair")
        if a.shape[1] != in_features or b.shape[0] != out_features:
            raise IncompatibleAdapter(
                f"module '{module}' is {in_features}->{out_features} in the base model, but the adapter's LoRA "
                f"weights are for {a.shape[1]}->{b.shape[0]}: it was trained for another base model"
            )
        linear[module] = LoraLinearDelta(a, b, scales.scale(module, a.shape[0]))
    check_weight_values(tensors, served_dtype)
    return CompiledDelta(
        kind="lora",
        config=config,
        parameters=sum(t.numel() for t in tensors.values()),
        base_model=config.base_model_name_or_path,
        linear=linear,
    )
