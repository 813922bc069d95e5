"""The tensors of an AdapterHub bottleneck adapter, by layer and location, made dense.

Keys as the library saves them from a *ForCausalLM model (the leading "model." may be missing when the adapter
was saved from the bare model):

    model.layers.<i>.<attention_adapters|output_adapters>.adapters.<name>.<part>
    model.shared_parameters.<name>.<part>                      (Compacter: shared PHM rule, shared weights)

A plain projection is `adapter_down.0.weight/bias`, `adapter_up.weight/bias`. A PHM layer (Compacter, the
low-rank adapter) is `x @ H + b` with H = sum_i kron(rule_i, W_i): W_i = (W_left @ W_right)_i when factorized,
the rule shared by the model or per layer (`phm_rule`, or `phm_rule_left @ phm_rule_right`), W shared too with
shared_W_phm (`W_down_left`, ...). Every tensor must be used exactly once, and every location the config
declares must have its tensors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from service.engine.deltas.adapterhub_format import BottleneckConfig
from service.errors import IncompatibleAdapter, InvalidAdapterConfig, InvalidAdapterWeights

_LAYER_KEY = re.compile(r"(?:model\.)?layers\.(\d+)\.(attention_adapters|output_adapters)\.adapters\.([^.]+)\.(.+)")
_SHARED_KEY = re.compile(r"(?:model\.)?shared_parameters\.([^.]+)\.(.+)")


@dataclass(frozen=True)
class Location:
    """Where the library puts a bottleneck layer in a Llama-style decoder layer, and what that is in the model."""

    key: str  # the library's name: attention_adapters / output_adapters
    flag: str  # the config flag that asks for it
    sublayer_output: str  # the Linear whose output is the sub-layer's (o_proj / down_proj)
    stream_norm: str  # the norm whose input is the stream entering the sub-layer

    def module(self, layer: int) -> str:
        return f"model.layers.{layer}.{self.sublayer_output}"

    def stream_source(self, layer: int) -> str:
        return f"model.layers.{layer}.{self.stream_norm}"


LOCATIONS = (
    Location("attention_adapters", "mh_adapter", "self_attn.o_proj", "input_layernorm"),
    Location("output_adapters", "output_adapter", "mlp.down_proj", "post_attention_layernorm"),
)


def kronecker_sum(rule: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_i kron(rule[i], weights[i]): [n, a, b] x [n, c, d] -> [a*c, b*d]."""
    n, a, b = rule.shape
    _, c, d = weights.shape
    return (rule[:, :, None, :, None] * weights[:, None, :, None, :]).reshape(n, a * c, b * d).sum(0)


class AdapterHubTensors:
    def __init__(self, config: BottleneckConfig, tensors: dict[str, torch.Tensor], num_layers: int):
        self.config = config
        self._layers: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
        self._shared: dict[str, torch.Tensor] = {}
        self._used: set[tuple] = set()  # ("layer", layer, location, part) or ("shared", part)
        for key, tensor in tensors.items():
            if match := _LAYER_KEY.fullmatch(key):
                layer, location, name, part = int(match[1]), match[2], match[3], match[4]
                self._check_name(key, name)
                if layer >= num_layers:
                    raise IncompatibleAdapter(
                        f"tensor '{key}' is for layer {layer}; the base model has {num_layers} layers: it was trained "
                        "for another base model"
                    )
                self._layers.setdefault((layer, location), {})[part] = tensor.to(torch.float32)
            elif match := _SHARED_KEY.fullmatch(key):
                self._check_name(key, match[1])
                self._shared[match[2]] = tensor.to(torch.float32)
            else:
                raise InvalidAdapterWeights(
                    f"tensor '{key}' is not one of a bottleneck adapter's (model.layers.<i>.attention_adapters / "
                    "output_adapters.adapters.<name>...)"
                )
        self._check_locations(num_layers)

    def _check_name(self, key: str, name: str) -> None:
        if name != self.config.name:
            raise InvalidAdapterConfig(
                f"tensor '{key}' belongs to an adapter named '{name}', but adapter_config.json names "
                f"'{self.config.name}': the config does not belong with these weights"
            )

    def _check_locations(self, num_layers: int) -> None:
        for location in LOCATIONS:
            declared = getattr(self.config, location.flag)
            for layer in range(num_layers):
                held = (layer, location.key) in self._layers
                wanted = declared and layer not in self.config.leave_out
                if held and not wanted:
                    why = f"layer {layer} is in leave_out" if declared else f"{location.flag} is false"
                    raise InvalidAdapterConfig(
                        f"the weights hold an adapter at {location.key} of layer {layer}, but {why} in "
                        "adapter_config.json"
                    )
                if wanted and not held:
                    raise InvalidAdapterConfig(
                        f"adapter_config.json asks for an adapter at {location.key} of layer {layer} ({location.flag}, "
                        "leave_out), but the weights hold none"
                    )

    def has(self, layer: int, location: Location) -> bool:
        return (layer, location.key) in self._layers

    def _take(self, layer: int, location: Location, part: str, shape: tuple[int, ...]) -> torch.Tensor:
        parts = self._layers[(layer, location.key)]
        if part not in parts:
            raise InvalidAdapterWeights(f"the {location.key} adapter of layer {layer} lacks its '{part}' tensor")
        return self._checked(parts[part], shape, f"layer {layer} {location.key} '{part}'",
                             ("layer", layer, location.key, part))

    def _take_shared(self, part: str, shape: tuple[int, ...]) -> torch.Tensor:
        if part not in self._shared:
            raise InvalidAdapterWeights(f"the adapter lacks its shared parameter '{part}' (shared_parameters)")
        return self._checked(self._shared[part], shape, f"shared parameter '{part}'", ("shared", part))

    def _checked(self, tensor: torch.Tensor, shape: tuple[int, ...], what: str, used: tuple) -> torch.Tensor:
        if tuple(tensor.shape) != shape:
            raise InvalidAdapterWeights(
                f"{what} has shape {tuple(tensor.shape)}; {shape} fits the base model and adapter_config.json"
            )
        self._used.add(used)
        return tensor

    def projection(self, layer: int, location: Location, position: str, in_features: int,
                   out_features: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight [out, in], bias [out]) of the adapter's down or up projection (`position`), dense."""
        prefix = "adapter_down.0." if position == "down" else "adapter_up."
        if not self.config.phm_layer:
            return (self._take(layer, location, prefix + "weight", (out_features, in_features)),
                    self._take(layer, location, prefix + "bias", (out_features,)))
        phm = self.config.phm_dim
        if in_features % phm or out_features % phm:
            raise InvalidAdapterConfig(
                f"phm_dim {phm} does not divide the {position} projection's {in_features} -> {out_features} features"
            )
        rows, cols, rank = in_features // phm, out_features // phm, self.config.phm_rank
        if self.config.shared_W_phm:
            def w(part: str, shape: tuple[int, ...]) -> torch.Tensor:
                return self._take_shared(f"W_{position}{part}", shape)
        else:
            def w(part: str, shape: tuple[int, ...]) -> torch.Tensor:
                return self._take(layer, location, f"{prefix}W{part}", shape)
        if self.config.factorized_phm_W:
            weights = torch.bmm(w("_left", (phm, rows, rank)), w("_right", (phm, rank, cols)))
        else:
            weights = w("", (phm, rows, cols))
        rule = self._rule(layer, location, prefix, phm)
        bias = (self._take(layer, location, prefix + "b", (out_features,)) if self.config.phm_bias
                else torch.zeros(out_features))
        return kronecker_sum(rule, weights).T.contiguous(), bias

    def _rule(self, layer: int, location: Location, prefix: str, phm: int) -> torch.Tensor:
        if self.config.shared_phm_rule:
            def take(part: str, shape: tuple[int, ...]) -> torch.Tensor:
                return self._take_shared(part, shape)
        else:
            def take(part: str, shape: tuple[int, ...]) -> torch.Tensor:
                return self._take(layer, location, prefix + part, shape)
        if self.config.factorized_phm_rule:
            return torch.bmm(take("phm_rule_left", (phm, phm, 1)), take("phm_rule_right", (phm, 1, phm)))
        return take("phm_rule", (phm, phm, phm))

    def scale(self, layer: int, location: Location, hidden: int) -> torch.Tensor:
        scaling = self.config.scaling
        if scaling == "learned":
            return self._take(layer, location, "scaling", (1,)).expand(hidden).clone()
        if scaling == "channel":
            return self._take(layer, location, "scaling", (hidden,))
        assert isinstance(scaling, float)
        return torch.full((hidden,), scaling)

    def norm(self, layer: int, location: Location, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (self._take(layer, location, "adapter_norm_after.weight", (hidden,)),
                self._take(layer, location, "adapter_norm_after.bias", (hidden,)))

    def check_all_used(self) -> None:
        for (layer, location), parts in sorted(self._layers.items()):
            unused = sorted(part for part in parts if ("layer", layer, location, part) not in self._used)
            if unused:
                hint = " (a gate: use_gating)" if any(p.startswith("gate.") for p in unused) else ""
                raise InvalidAdapterWeights(
                    f"unexpected tensors in the {location} adapter of layer {layer}: {', '.join(unused[:5])}{hint}"
                )
        if unused := sorted(part for part in self._shared if ("shared", part) not in self._used):
            raise InvalidAdapterWeights(f"unexpected shared parameters: {', '.join(unused[:5])}")
