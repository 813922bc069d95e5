"""AdapterHub's save format for bottleneck adapters, read and checked: what `model.save_adapter(dir, name,
use_safetensors=True)` of the `adapters` library (1.x) writes.

    adapter_config.json   {"config": {<the BnConfig, every field>}, "name": "<name>", "model_type": "llama",
                           "hidden_size": 576, "model_class": "LlamaForCausalLM", "model_name": "...",
                           "version": "adapters.1.3.0"}
    adapter.safetensors   model.layers.<i>.attention_adapters.adapters.<name>.adapter_down.0.weight, ...
                          model.layers.<i>.output_adapters.adapters.<name>.adapter_up.bias, ...
                          model.shared_parameters.<name>.phm_rule (Compacter's shared parameters)

(the store keeps the weights under PEFT's file name, adapter_model.safetensors, like every other kind). Every
option of the config is read: those that change the arithmetic are honoured or refused by name, those that only
shape training (initialisation, dropout) are checked for type and otherwise ignored, unknown ones are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from transformers.activations import ACT2FN

from service.engine.deltas import config_fields
from service.errors import IncompatibleAdapter, InvalidAdapterConfig, UnsupportedAdapter

# adapter_config.json's own fields (the saved model's metadata around the config).
TOP_LEVEL_FIELDS = frozenset({"config", "name", "model_type", "hidden_size", "model_class", "model_name", "version"})

# The model types whose decoder layers the library calls its bottleneck layers from explicitly, as
# `attention_adapters(attn_out, residual, None)` and `output_adapters(mlp_out, residual, None)` (adapters 1.3:
# models/llama, models/mistral). Other types go through its "adapter interface" hooks, with other arithmetic.
SERVED_MODEL_TYPES = frozenset({"llama", "mistral"})

# BnConfig fields that only matter while training: type-checked, then ignored (at inference dropout and stochastic
# depth are the identity, and the initialisation is overwritten by the trained weights).
_TRAINING_ONLY = {
    "init_weights": str,
    "init_weights_seed": (int, type(None)),
    "dropout": (int, float),
    "stochastic_depth": (int, float, type(None)),
    "phm_c_init": (str, type(None)),
    "phm_init_range": (int, float, type(None)),
    "learn_phm": (bool, type(None)),
    "hypercomplex_nonlinearity": (str, type(None)),
    "inv_adapter_reduction_factor": (int, float, type(None)),
}
_FLAGS = (
    "mh_adapter", "output_adapter", "original_ln_before", "original_ln_after", "ln_before", "ln_after", "is_parallel",
    "use_gating", "adapter_residual_before_ln", "cross_adapter", "phm_layer", "factorized_phm_W", "shared_W_phm",
    "shared_phm_rule", "factorized_phm_rule", "phm_bias",
)
_OTHER_FIELDS = frozenset({"reduction_factor", "non_linearity", "scaling", "residual_before_ln", "inv_adapter",
                           "leave_out", "phm_dim", "phm_rank", "architecture"})
CONFIG_FIELDS = frozenset(_TRAINING_ONLY) | frozenset(_FLAGS) | _OTHER_FIELDS

# The non-linearities of the library (transformers' get_activation, plus its own "leakyrelu").
ACTIVATIONS = frozenset(ACT2FN) | {"leakyrelu"}

# Flags that default to true in BnConfig when a saved config leaves them out.
_TRUE_BY_DEFAULT = frozenset({"original_ln_after", "factorized_phm_W", "shared_phm_rule", "phm_bias"})


@dataclass(frozen=True)
class BottleneckConfig:
    """adapter_config.json of an AdapterHub bottleneck adapter, checked."""

    name: str  # the adapter's name inside the library: it is part of every tensor key
    model_type: str
    hidden_size: int
    mh_adapter: bool  # an adapter after the attention block of each layer ("attention_adapters")
    output_adapter: bool  # an adapter after the feed-forward block ("output_adapters")
    reduction_factor: float | dict[str, float]  # a number, or {"<layer>": number, "default": number}
    non_linearity: str
    original_ln_before: bool
    original_ln_after: bool
    ln_after: bool
    is_parallel: bool
    scaling: float | str  # a number, "learned" (one learned factor) or "channel" (one per channel)
    residual_before_ln: bool
    adapter_residual_before_ln: bool
    leave_out: frozenset[int]
    phm_layer: bool
    phm_dim: int
    phm_rank: int
    factorized_phm_W: bool
    shared_W_phm: bool
    shared_phm_rule: bool
    factorized_phm_rule: bool
    phm_bias: bool
    version: str | None = None
    base_model_name_or_path: str | None = None  # the library does not save one; records show the model name
    peft_type: str = "BOTTLENECK"  # the registry's key for this kind (AdapterHub configs have no peft_type)
    task_type: str = "CAUSAL_LM"

    def bottleneck_size(self, layer: int) -> int:
        """Columns of the bottleneck at `layer`, as the library computes them: int(hidden // factor), at least 1."""
        factor: float | None
        if isinstance(self.reduction_factor, dict):
            factor = self.reduction_factor.get(str(layer), self.reduction_factor.get("default"))
            if factor is None:
                raise InvalidAdapterConfig(
                    f"the bottleneck adapter's reduction_factor mapping names no factor for layer {layer} "
                    "and no default"
                )
        else:
            factor = self.reduction_factor
        return max(1, int(self.hidden_size // factor))


def is_adapterhub_config(data: dict) -> bool:
    """An AdapterHub adapter_config.json: no peft_type, the adapter's config nested under "config"."""
    return "peft_type" not in data and isinstance(data.get("config"), dict) and "name" in data


def parse_bottleneck(data: dict) -> BottleneckConfig:
    unknown = sorted(set(data) - TOP_LEVEL_FIELDS)
    if unknown:
        raise InvalidAdapterConfig(f"unknown field(s) in an AdapterHub adapter_config.json: {', '.join(unknown[:5])}")
    config = data["config"]
    architecture = config.get("architecture")
    if architecture not in (None, "bottleneck"):
        raise UnsupportedAdapter(
            f"AdapterHub {architecture} adapters are not served; DeltaServe serves AdapterHub's bottleneck adapters "
            "and PEFT's LoRA, IA3, prompt and prefix tuning"
        )
    unknown = sorted(set(config) - CONFIG_FIELDS)
    if unknown:
        raise InvalidAdapterConfig(
            f"unknown option(s) in the bottleneck adapter's config: {', '.join(unknown[:5])}; they may change what "
            "the adapter computes"
        )
    name, model_type, hidden = data.get("name"), data.get("model_type"), data.get("hidden_size")
    if not isinstance(name, str) or not name or "." in name:
        raise InvalidAdapterConfig(f"adapter_config.json: 'name' must be the adapter's name, not {shown(name)}")
    if not isinstance(model_type, str):
        raise InvalidAdapterConfig(f"adapter_config.json: 'model_type' must be a string, not {shown(model_type)}")
    if not config_fields.is_int(hidden) or hidden <= 0:
        raise InvalidAdapterConfig(
            f"adapter_config.json: 'hidden_size' must be a positive integer, not {shown(hidden)}"
        )
    for field, types in _TRAINING_ONLY.items():
        value, allowed = config.get(field), _types(types)
        if field in config and (not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)):
            raise InvalidAdapterConfig(f"the bottleneck adapter's '{field}' has the wrong type: {shown(value)}")
    fields = SimpleNamespace(**{flag: config.get(flag, flag in _TRUE_BY_DEFAULT) for flag in _FLAGS})
    flags = {flag: _flag(fields, flag) for flag in _FLAGS}
    _refuse_unserved(config, flags)
    version = data.get("version")
    return BottleneckConfig(
        name=name,
        model_type=model_type,
        hidden_size=hidden,
        mh_adapter=flags["mh_adapter"],
        output_adapter=flags["output_adapter"],
        reduction_factor=_reduction_factor(config.get("reduction_factor")),
        non_linearity=_non_linearity(config.get("non_linearity")),
        original_ln_before=flags["original_ln_before"],
        original_ln_after=flags["original_ln_after"],
        ln_after=flags["ln_after"],
        is_parallel=flags["is_parallel"],
        scaling=_scaling(config.get("scaling", 1.0)),
        residual_before_ln=config.get("residual_before_ln", True),
        adapter_residual_before_ln=flags["adapter_residual_before_ln"],
        leave_out=_leave_out(config.get("leave_out", [])),
        phm_layer=flags["phm_layer"],
        phm_dim=_positive(config.get("phm_dim", 4), "phm_dim"),
        phm_rank=_positive(config.get("phm_rank", 1), "phm_rank"),
        factorized_phm_W=flags["factorized_phm_W"],
        shared_W_phm=flags["shared_W_phm"],
        shared_phm_rule=flags["shared_phm_rule"],
        factorized_phm_rule=flags["factorized_phm_rule"],
        phm_bias=flags["phm_bias"],
        version=version if isinstance(version, str) else None,
        base_model_name_or_path=data.get("model_name") if isinstance(data.get("model_name"), str) else None,
    )


def check_base(config: BottleneckConfig, model_type: str, hidden_size: int, num_layers: int) -> None:
    """The adapter was trained for a model of this type and width, and the library's arithmetic is known here."""
    if model_type not in SERVED_MODEL_TYPES:
        raise UnsupportedAdapter(
            f"bottleneck adapters are served on {', '.join(sorted(SERVED_MODEL_TYPES))} base models; this base model "
            f"is a {model_type}"
        )
    if config.model_type != model_type:
        raise IncompatibleAdapter(
            f"the bottleneck adapter was trained on a {config.model_type} model; the base model is a {model_type}"
        )
    if config.hidden_size != hidden_size:
        raise IncompatibleAdapter(
            f"the bottleneck adapter was trained on a model of hidden size {config.hidden_size}; the base model's is "
            f"{hidden_size}: it was trained for another base model"
        )
    if outside := sorted(layer for layer in config.leave_out if layer >= num_layers):
        raise IncompatibleAdapter(f"leave_out names layer {outside[0]}; the base model has {num_layers} layers")


def _refuse_unserved(config: dict, flags: dict[str, bool]) -> None:
    if flags["ln_before"]:
        raise UnsupportedAdapter("bottleneck adapters with ln_before are not supported yet")
    if flags["use_gating"]:
        raise UnsupportedAdapter(
            "bottleneck adapters with use_gating are not served: the library's gate averages over the tokens of each "
            "forward pass, so its output with a KV cache differs from its output without one"
        )
    if config.get("inv_adapter") is not None:
        raise UnsupportedAdapter(f"invertible adapters (inv_adapter={shown(config['inv_adapter'])}) are not served")
    if flags["cross_adapter"]:
        raise UnsupportedAdapter("cross-attention adapters (cross_adapter) need an encoder-decoder base model")
    if not (flags["mh_adapter"] or flags["output_adapter"]):
        raise InvalidAdapterConfig(
            "the bottleneck adapter has neither mh_adapter nor output_adapter set: it adds nothing"
        )
    residual = config.get("residual_before_ln", True)
    if residual == "post_add":
        raise UnsupportedAdapter(
            "residual_before_ln='post_add' is not served: the library takes that residual from the base model's layer "
            "norm, which it does not pass to bottleneck adapters on this architecture"
        )
    if not isinstance(residual, bool):
        raise InvalidAdapterConfig(f"'residual_before_ln' must be true, false or 'post_add', not {shown(residual)}")


def _flag(fields: SimpleNamespace, name: str) -> bool:
    return config_fields.flag(fields, name)  # type: ignore[arg-type]


def _types(types: Any) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def _positive(value: Any, field: str) -> int:
    if not config_fields.is_int(value) or value <= 0:
        raise InvalidAdapterConfig(f"the bottleneck adapter's '{field}' must be a positive integer, not {shown(value)}")
    return value


def _factor(value: Any, field: str) -> float:
    if not config_fields.is_finite_number(value) or value <= 0:
        raise InvalidAdapterConfig(f"the bottleneck adapter's '{field}' must be a positive number, not {shown(value)}")
    return float(value)


def _reduction_factor(value: Any) -> float | dict[str, float]:
    if isinstance(value, dict):
        if not value or not all(isinstance(key, str) for key in value):
            raise InvalidAdapterConfig("the bottleneck adapter's 'reduction_factor' mapping must map layers to numbers")
        return {key: _factor(factor, f"reduction_factor[{key!r}]") for key, factor in value.items()}
    return _factor(value, "reduction_factor")


def _non_linearity(value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in ACTIVATIONS:
        raise UnsupportedAdapter(
            f"the bottleneck adapter's non_linearity {shown(value)} is not one the library knows "
            f"({', '.join(sorted(ACTIVATIONS)[:12])}, ...)"
        )
    return value.lower()


def _scaling(value: Any) -> float | str:
    if value in ("learned", "channel"):
        return value
    if config_fields.is_finite_number(value):
        return float(value)
    raise InvalidAdapterConfig(
        f"the bottleneck adapter's 'scaling' must be a finite number, 'learned' or 'channel', not {shown(value)}"
    )


def _leave_out(value: Any) -> frozenset[int]:
    if not isinstance(value, list) or not all(config_fields.is_int(v) and v >= 0 for v in value):
        raise InvalidAdapterConfig(
            f"the bottleneck adapter's 'leave_out' must be a list of layer indexes, not {shown(value)}"
        )
    return frozenset(value)


def shown(value: Any) -> str:
    return config_fields.shown(value)
