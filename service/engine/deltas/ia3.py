"""IA3: a learned vector scales a module's output (attention targets) or its input (feed-forward targets)."""

from __future__ import annotations

import re

import torch
from peft import IA3Config

from service.engine.base_model import BaseModel
from service.engine.deltas.common import check_module, reject_unknown_keys, require_causal_lm, split_module_key
from service.engine.deltas.compiled import CompiledDelta, LinearDelta
from service.engine.deltas.registry import register
from service.engine.deltas.weight_values import check_weight_values, linear_weight_dtype
from service.errors import IncompatibleAdapter, InvalidAdapterWeights, UnsupportedAdapter


class IA3OutputScale(LinearDelta):
    def __init__(self, vector: torch.Tensor):
        self.vector = vector  # [out]

    def apply_output(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (y * self.vector).to(y.dtype)

    def to(self, device: torch.device, dtype: torch.dtype) -> "IA3OutputScale":
        return IA3OutputScale(self.vector.to(device, dtype))

    def numel(self) -> int:
        return self.vector.numel()


class IA3InputScale(LinearDelta):
    scales_input = True

    def __init__(self, vector: torch.Tensor):
        self.vector = vector  # [in]

    def apply_input(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.vector).to(x.dtype)

    def to(self, device: torch.device, dtype: torch.dtype) -> "IA3InputScale":
        return IA3InputScale(self.vector.to(device, dtype))

    def numel(self) -> int:
        return self.vector.numel()


def _is_feedforward(config: IA3Config, module: str) -> bool:
    # PEFT's own rule: a regex that must match the whole name, or a list of name suffixes.
    targets = config.feedforward_modules or []
    if isinstance(targets, str):
        return re.fullmatch(targets, module) is not None
    return any(module.endswith(target) for target in targets)


@register("ia3", "IA3")
def compile_ia3(config: IA3Config, tensors: dict[str, torch.Tensor], base: BaseModel) -> CompiledDelta:
    require_causal_lm(config)
    if getattr(config, "fan_in_fan_out", False) or getattr(config, "modules_to_save", None):
        raise UnsupportedAdapter("IA3 adapters with fan_in_fan_out or modules_to_save are not supported yet")
    linear: dict[str, LinearDelta] = {}
    unknown = []
    for key, tensor in tensors.items():
        split = split_module_key(key, ("ia3_l",))
        if split is None:
            unknown.append(key)
            continue
        module = split[0]
        in_features, out_features = check_module(base.linear_shapes, module)
        if _is_feedforward(config, module):
            if tuple(tensor.shape) != (1, in_features):
                raise IncompatibleAdapter(
                    f"feed-forward module '{module}' takes {in_features} inputs in the base model, but the "
                    f"adapter's IA3 vector has shape {tuple(tensor.shape)}: it was trained for another base model"
                )
            linear[module] = IA3InputScale(tensor.flatten())
        else:
            if tuple(tensor.shape) != (out_features, 1):
                raise IncompatibleAdapter(
                    f"module '{module}' gives {out_features} outputs in the base model, but the adapter's IA3 "
                    f"vector has shape {tuple(tensor.shape)}: it was trained for another base model"
                )
            linear[module] = IA3OutputScale(tensor.flatten())
    reject_unknown_keys(unknown, "IA3")
    if not linear:
        raise InvalidAdapterWeights("the IA3 adapter has no ia3_l tensors")
    check_weight_values(tensors, linear_weight_dtype(base.dtype))
    return CompiledDelta(
        kind="ia3",
        config=config,
        parameters=sum(t.numel() for t in tensors.values()),
        base_model=config.base_model_name_or_path,
        linear=linear,
    )
