"""BitFit: only biases were trained. Each tuned Linear layer's output gets its trained bias; the base's own bias,
if it has one, is replaced (the delta is the difference). Its format, its tables in a batch, and the compiler.

PEFT has no BitFit, so DeltaServe reads the plainest form a BitFit run can be saved in, next to PEFT's file
names so it uploads like any adapter:

    adapter_config.json          {"peft_type": "BITFIT", "base_model_name_or_path": "...",
                                  "target_modules": ["model.layers.0.self_attn.q_proj", ...]}   (optional list)
    adapter_model.safetensors    "<module>.bias": [out_features] for each tuned Linear layer, e.g.
                                 "model.layers.0.self_attn.q_proj.bias" (a "base_model.model." prefix is allowed)

that is, the trained model's bias tensors under the names transformers gives them (`{name: module.bias for
name, module in model.named_modules() if name in tuned}`). What it equals: the base model with those biases
really set on its Linear layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from service.engine.base_model import FrozenBase
from service.engine.deltas.common import check_module, split_module_key
from service.engine.deltas.compiled import CompiledDelta, ModuleDelta, ModuleTable, adapter_dtype
from service.engine.deltas.registry import register
from service.engine.deltas.weight_values import check_weight_values
from service.errors import InvalidAdapterConfig, InvalidAdapterWeights

CONFIG_KEYS = frozenset({"peft_type", "base_model_name_or_path", "target_modules", "task_type", "revision"})


@dataclass(frozen=True)
class BitFitConfig:
    """adapter_config.json of a BitFit adapter."""

    base_model_name_or_path: str | None = None
    target_modules: tuple[str, ...] | None = None  # None: whatever modules the weights file has biases for
    peft_type: str = "BITFIT"
    task_type: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> BitFitConfig:
        unknown = sorted(set(data) - CONFIG_KEYS)
        if unknown:
            raise InvalidAdapterConfig(f"unknown field(s) in a BitFit adapter_config.json: {', '.join(unknown[:5])}")
        base = data.get("base_model_name_or_path")
        if base is not None and not isinstance(base, str):
            raise InvalidAdapterConfig("'base_model_name_or_path' must be a string")
        task = data.get("task_type")
        if task not in (None, "CAUSAL_LM"):
            raise InvalidAdapterConfig(f"task_type {task!r} is not served; BitFit adapters are served as CAUSAL_LM")
        targets = data.get("target_modules")
        if targets is not None and (
            not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets)
        ):
            raise InvalidAdapterConfig("'target_modules' must be a non-empty list of module names")
        return cls(base, tuple(targets) if targets is not None else None, task_type=task)


class BiasTable(ModuleTable):
    """One bias per adapter number ([numbers, out]; zeros for number 0), added to each row's output."""

    def __init__(self, shape: tuple[int, int], numbers: int, device: torch.device, dtype: torch.dtype):
        super().__init__(shape, numbers, device, dtype)
        self.biases = torch.zeros((numbers, shape[1]), device=device, dtype=dtype)

    def set(self, number: int, delta: ModuleDelta) -> bool:
        assert isinstance(delta, BiasDelta)
        self.biases[number] = delta.bias
        return False

    def reset(self, number: int) -> None:
        self.biases[number] = 0

    def resize(self, numbers: int) -> None:
        biases = torch.zeros((numbers, self.biases.shape[1]), device=self.device, dtype=self.dtype)
        kept = min(numbers, self.biases.shape[0])
        biases[:kept] = self.biases[:kept]
        self.biases = biases

    def apply_output(self, x: torch.Tensor, y: torch.Tensor, numbers: torch.Tensor,
                     stream: torch.Tensor | None = None) -> torch.Tensor:
        return (y + self.biases[numbers][:, None, :]).to(y.dtype)


class BiasDelta(ModuleDelta):
    table_type = BiasTable

    def __init__(self, bias: torch.Tensor):
        self.bias = bias  # [out]: the trained bias minus the base module's own (zero where it has none)

    def to(self, device: torch.device, dtype: torch.dtype) -> BiasDelta:
        return BiasDelta(self.bias.to(device=device, dtype=dtype))

    def numel(self) -> int:
        return self.bias.numel()


def parse_bitfit(data: dict) -> BitFitConfig:
    return BitFitConfig.from_dict(data)


@register("bitfit", "BITFIT", parse=parse_bitfit)
def compile_bitfit(config: BitFitConfig, tensors: dict[str, torch.Tensor], base: FrozenBase) -> CompiledDelta:
    biases: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        split = split_module_key(key, ("bias",))
        if split is None:
            raise InvalidAdapterWeights(
                f"tensor '{key}' is not a bias: a BitFit adapter holds '<module>.bias' tensors"
            )
        biases[split[0]] = tensor
    if not biases:
        raise InvalidAdapterWeights("the BitFit adapter holds no bias tensors")
    if config.target_modules is not None:
        declared = set(config.target_modules)
        if missing := sorted(declared - set(biases)):
            raise InvalidAdapterConfig(f"target_modules names {missing[0]!r}, but the weights hold no bias for it")
        if undeclared := sorted(set(biases) - declared):
            raise InvalidAdapterConfig(f"the weights hold a bias for {undeclared[0]!r}, which target_modules omits")
    check_weight_values(tensors, adapter_dtype(base.dtype))

    modules: dict[str, ModuleDelta] = {}
    for module, tensor in sorted(biases.items()):
        _, out_features = check_module(base.linear_shapes, module)
        if tuple(tensor.shape) != (out_features,):
            raise InvalidAdapterWeights(
                f"the bias of '{module}' has shape {tuple(tensor.shape)}; the base model's layer has "
                f"{out_features} outputs"
            )
        own = getattr(base.model.get_submodule(module), "bias", None)  # a Linear's bias, or None
        trained = tensor.to(torch.float32)
        delta = trained if own is None else trained - torch.as_tensor(own).detach().to("cpu", torch.float32)
        modules[module] = BiasDelta(delta)
    return CompiledDelta(
        kind="bitfit",
        config=config,
        parameters=sum(t.numel() for t in tensors.values()),
        base_model=config.base_model_name_or_path,
        modules=modules,
    )
