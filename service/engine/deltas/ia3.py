"""IA3: a learned vector scales a module's output (attention targets) or its input (feed-forward targets): the
vectors, their tables in a batch, and the compiler."""

from __future__ import annotations

import torch
from peft import IA3Config
from peft.utils.constants import (
    TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
)

from service.engine.base_model import FrozenBase
from service.engine.deltas.common import (
    check_module,
    reject_unknown_keys,
    require_causal_lm,
    split_module_key,
)
from service.engine.deltas.compiled import CompiledDelta, ModuleDelta, ModuleTable, adapter_dtype
from service.engine.deltas.module_patterns import BoundedPatterns, is_feedforward
from service.engine.deltas.registry import register
from service.engine.deltas.targets import (
    TargetMatch,
    match_targets,
    resolve_module_names,
    target_rules,
)
from service.engine.deltas.weight_values import check_weight_values
from service.errors import (
    IncompatibleAdapter,
    InvalidAdapterConfig,
    InvalidAdapterWeights,
    UnsupportedAdapter,
)


class IA3Table(ModuleTable):
    """One vector per adapter number ([numbers, features]; ones for number 0 and for adapters with no IA3 of
    this placement on the module), multiplied into each row."""

    def __init__(self, shape: tuple[int, int], numbers: int, device: torch.device, dtype: torch.dtype):
        super().__init__(shape, numbers, device, dtype)
        features = shape[0] if self.scales_input else shape[1]
        self.vectors = torch.ones((numbers, features), device=device, dtype=dtype)

    def set(self, number: int, delta: ModuleDelta) -> bool:
        assert isinstance(delta, IA3Vector)
        self.vectors[number] = delta.vector
        return False

    def reset(self, number: int) -> None:
        self.vectors[number] = 1

    def resize(self, numbers: int) -> None:
        vectors = torch.ones((numbers, self.vectors.shape[1]), device=self.device, dtype=self.dtype)
        kept = min(numbers, self.vectors.shape[0])
        vectors[:kept] = self.vectors[:kept]
        self.vectors = vectors

    def _row_vectors(self, numbers: torch.Tensor) -> torch.Tensor:
        return self.vectors[numbers][:, None, :]  # [rows, 1, features]


class IA3OutputTable(IA3Table):
    """Attention targets: the module's output is scaled."""

    def apply_output(self, x: torch.Tensor, y: torch.Tensor, numbers: torch.Tensor,
                     stream: torch.Tensor | None = None) -> torch.Tensor:
        return (y * self._row_vectors(numbers)).to(y.dtype)


class IA3InputTable(IA3Table):
    """Feed-forward targets: the module's input is scaled."""

    scales_input = True

    def apply_input(self, x: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        return (x * self._row_vectors(numbers)).to(x.dtype)


class IA3Vector(ModuleDelta):
    def __init__(self, vector: torch.Tensor, scales_input: bool):
        self.vector = vector  # [in] when it scales the input, else [out]
        self.scales_input = scales_input

    @property
    def table_type(self) -> type[ModuleTable]:  # type: ignore[override]
        return IA3InputTable if self.scales_input else IA3OutputTable

    def to(self, device: torch.device, dtype: torch.dtype) -> IA3Vector:
        return IA3Vector(self.vector.to(device, dtype), self.scales_input)

    def numel(self) -> int:
        return self.vector.numel()


def _check_feedforward_subset(
    feedforward: str | frozenset[str], match: TargetMatch, base: FrozenBase, patterns: BoundedPatterns
) -> None:
    # PEFT requires feedforward_modules to be a subset of target_modules, but checks it only when both are lists;
    # here it is checked on the modules themselves, whatever form either takes. An excluded module is left alone.
    for module in sorted(base.linear_shapes):
        if match.verdicts[module] == "unmatched" and is_feedforward(feedforward, module, patterns):
            raise InvalidAdapterConfig(
                f"adapter_config.json: feedforward_modules names module '{module}', which target_modules does not "
                "target; feedforward_modules must be a subset of target_modules"
            )


def _vector(module: str, tensor: torch.Tensor, feedforward: bool, in_features: int, out_features: int) -> IA3Vector:
    # PEFT's shapes: (1, in) scales a feed-forward module's input, (out, 1) any other module's output.
    input_shape, output_shape = (1, in_features), (out_features, 1)
    shape = tuple(tensor.shape)
    expected, other = (input_shape, output_shape) if feedforward else (output_shape, input_shape)
    if shape == expected:
        return IA3Vector(tensor.flatten(), scales_input=feedforward)
    if shape == other:
        listed = "is" if feedforward else "is not"
        holds = "an output" if feedforward else "an input"
        raise InvalidAdapterConfig(
            f"module '{module}' {listed} in feedforward_modules, but its IA3 vector {shape} is the shape of {holds} "
            "scale: adapter_config.json does not belong with these weights"
        )
    if feedforward:
        raise IncompatibleAdapter(
            f"feed-forward module '{module}' takes {in_features} inputs in the base model, but the "
            f"adapter's IA3 vector has shape {shape}: it was trained for another base model"
        )
    raise IncompatibleAdapter(
        f"module '{module}' gives {out_features} outputs in the base model, but the adapter's IA3 "
        f"vector has shape {shape}: it was trained for another base model"
    )


@register("ia3", "IA3")
def compile_ia3(config: IA3Config, tensors: dict[str, torch.Tensor], base: FrozenBase) -> CompiledDelta:
    require_causal_lm(config)
    if getattr(config, "fan_in_fan_out", False) or getattr(config, "modules_to_save", None):
        raise UnsupportedAdapter("IA3 adapters with fan_in_fan_out or modules_to_save are not supported yet")
    vectors: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in tensors.items():
        split = split_module_key(key, ("ia3_l",))
        if split is None:
            unknown.append(key)
            continue
        vectors[split[0]] = tensor
    reject_unknown_keys(unknown, "IA3")
    if not vectors:
        raise InvalidAdapterWeights("the IA3 adapter has no ia3_l tensors")

    patterns = BoundedPatterns()
    rules = target_rules(config, base, TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING)
    match = match_targets(config, rules, base, vectors, patterns, kind="IA3", tensors_for="IA3 vector")
    feedforward = resolve_module_names(
        config, "feedforward_modules", base, TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING
    )
    _check_feedforward_subset(feedforward, match, base, patterns)

    modules: dict[str, ModuleDelta] = {}
    for module, tensor in sorted(vectors.items()):
        in_features, out_features = check_module(base.linear_shapes, module)
        modules[module] = _vector(
            module, tensor, is_feedforward(feedforward, module, patterns), in_features, out_features
        )
    check_weight_values(tensors, adapter_dtype(base.dtype))
    return CompiledDelta(
        kind="ia3",
        config=config,
        parameters=sum(t.numel() for t in tensors.values()),
        base_model=config.base_model_name_or_path,
        modules=modules,
    )
