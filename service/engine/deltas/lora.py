"""LoRA: y += scale * B(A(x)) on each target Linear, with PEFT's rank/alpha patterns and rsLoRA scaling: its
weights, their table in a batch, and the compiler."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from peft import LoraConfig
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

from service.engine.base_model import FrozenBase
from service.engine.deltas import config_fields
from service.engine.deltas.columns import ColumnBlocks
from service.engine.deltas.common import (
    check_module,
    reject_unknown_keys,
    require_causal_lm,
    split_module_key,
)
from service.engine.deltas.compiled import CompiledDelta, ModuleDelta, ModuleTable, adapter_dtype
from service.engine.deltas.module_patterns import BoundedPatterns, pattern_key
from service.engine.deltas.registry import register
from service.engine.deltas.targets import match_targets, target_rules
from service.engine.deltas.weight_values import check_weight_values
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


class LoraWeights(ModuleDelta):
    def __init__(self, lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float):
        self.lora_a = lora_a  # [r, in]
        self.lora_b = lora_b  # [out, r]
        self.scale = scale

    @property
    def rank(self) -> int:
        return self.lora_a.shape[0]

    def to(self, device: torch.device, dtype: torch.dtype) -> LoraWeights:
        return LoraWeights(self.lora_a.to(device, dtype), self.lora_b.to(device, dtype), self.scale)

    def numel(self) -> int:
        return self.lora_a.numel() + self.lora_b.numel()


class LoraTable(ModuleTable):
    """The batch's LoRAs on one module, side by side along the rank axis (columns.py): A's stacked [R, in], B's
    [out, R], and per adapter number its scale over its own rank columns (zero elsewhere). `((x A^T) * scale[row])
    B^T` is then each row's own `scale * B A x`: two dense products for any mix of adapters and ranks."""

    def __init__(self, shape: tuple[int, int], numbers: int, device: torch.device, dtype: torch.dtype):
        super().__init__(shape, numbers, device, dtype)
        self._blocks = ColumnBlocks()
        self._allocate(numbers)

    def _allocate(self, numbers: int) -> None:
        in_features, out_features = self.shape
        columns = self._blocks.columns
        self.a = torch.zeros((columns, in_features), device=self.device, dtype=self.dtype)
        self.b = torch.zeros((out_features, columns), device=self.device, dtype=self.dtype)
        self.scales = torch.zeros((numbers, columns), device=self.device, dtype=self.dtype)

    @property
    def rank_columns(self) -> int:
        return self.a.shape[0]

    def set(self, number: int, delta: ModuleDelta) -> bool:
        assert isinstance(delta, LoraWeights)
        start = self._blocks.find(delta.rank)
        grew = start is None
        if start is None:  # no room: a wider table, with the adapters already there laid out again
            start = self._repack(delta.rank)
        self.a[start : start + delta.rank] = delta.lora_a
        self.b[:, start : start + delta.rank] = delta.lora_b
        self.scales[number, start : start + delta.rank] = delta.scale
        self._blocks.hold(number, start, delta.rank)
        return grew

    def reset(self, number: int) -> None:
        if self._blocks.release(number):
            self.scales[number] = 0

    def resize(self, numbers: int) -> None:
        scales = torch.zeros((numbers, self.rank_columns), device=self.device, dtype=self.dtype)
        kept = min(numbers, self.scales.shape[0])
        scales[:kept] = self.scales[:kept]
        self.scales = scales

    def _repack(self, room_for: int) -> int:
        old_a, old_b, old_scales = self.a, self.b, self.scales
        start, moves = self._blocks.repack(room_for)
        self._allocate(old_scales.shape[0])
        for move in moves:
            old, new = slice(move.old, move.old + move.width), slice(move.new, move.new + move.width)
            self.a[new] = old_a[old]
            self.b[:, new] = old_b[:, old]
            self.scales[move.number, new] = old_scales[move.number, old]
        return start

    def apply_output(self, x: torch.Tensor, y: torch.Tensor, numbers: torch.Tensor,
                     stream: torch.Tensor | None = None) -> torch.Tensor:
        # As PEFT: the input cast to the adapters' dtype, the branch added and rounded to the output's dtype once.
        # Columns of other rows' adapters are zeroed by selection, not by multiplying: another adapter's huge (but
        # finite) A can make them infinite for this row's input, and inf * 0 would be NaN here.
        row_scales = self.scales[numbers][:, None, :]  # [rows, 1, R]
        hidden = F.linear(x.to(self.a.dtype), self.a)
        hidden = torch.where(row_scales != 0, hidden * row_scales, 0.0)
        return (y + F.linear(hidden, self.b)).to(y.dtype)


LoraWeights.table_type = LoraTable


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
def compile_lora(config: LoraConfig, tensors: dict[str, torch.Tensor], base: FrozenBase) -> CompiledDelta:
    require_causal_lm(config)
    _check_options(config)
    served_dtype = adapter_dtype(base.dtype)
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

    modules: dict[str, ModuleDelta] = {}
    for module, pair in sorted(pairs.items()):
        a, b = pair["lora_A.weight"], pair["lora_B.weight"]
        in_features, out_features = check_module(base.linear_shapes, module)
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise InvalidAdapterWeights(
                f"module '{module}': lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} do not pair"
            )
        if a.shape[1] != in_features or b.shape[0] != out_features:
            raise IncompatibleAdapter(
                f"module '{module}' is {in_features}->{out_features} in the base model, but the adapter's LoRA "
                f"weights are for {a.shape[1]}->{b.shape[0]}: it was trained for another base model"
            )
        modules[module] = LoraWeights(a, b, scales.scale(module, a.shape[0]))
    check_weight_values(tensors, served_dtype)
    return CompiledDelta(
        kind="lora",
        config=config,
        parameters=sum(t.numel() for t in tensors.values()),
        base_model=config.base_model_name_or_path,
        modules=modules,
    )
