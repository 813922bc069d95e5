"""Config, weights and base model checked against each other, for the kinds that adapt Linear layers.

PEFT builds an adapter from its config (which base modules to adapt) and then loads the weights file into
it, warning about tensors that fit nowhere and leaving missing ones at their initial values. We refuse both
instead, so what is served is exactly what the config says:

* every module the weights adapt exists in the base model as a Linear layer (else incompatible_adapter);
* every module the config targets (by PEFT's rules, module_patterns.py) is a Linear layer of the base model
  (else incompatible_adapter) and has its tensors in the weights (else invalid_adapter_config);
* every module the weights adapt is one the config targets (else invalid_adapter_config).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from peft import PeftConfig

from service.engine.base_model import FrozenBase
from service.engine.deltas.config_fields import (
    layer_indexes,
    layer_patterns,
    module_names,
    shown,
)
from service.engine.deltas.module_patterns import BoundedPatterns, TargetRules, Verdict
from service.errors import IncompatibleAdapter, InvalidAdapterConfig

ALL_LINEAR = "all-linear"  # PEFT's INCLUDE_LINEAR_LAYERS_SHORTHAND


@dataclass(frozen=True)
class TargetMatch:
    verdicts: dict[str, Verdict]  # every module of the base model -> what the config says about it
    targeted: frozenset[str]  # the modules the config adapts; all Linear, and equal to the weights' modules


def model_type(base: FrozenBase) -> str | None:
    return getattr(base.model.config, "model_type", None)


def resolve_module_names(
    config: PeftConfig, field: str, base: FrozenBase, defaults: Mapping[str, Sequence[str]]
) -> str | frozenset[str]:
    """A module-name field with PEFT's defaults applied: null takes PEFT's list for the base model's type."""
    names = module_names(config, field)
    if names is not None:
        return names
    default = defaults.get(model_type(base) or "")
    if default is None:
        raise InvalidAdapterConfig(
            f"adapter_config.json: '{field}' is null and PEFT has no default for a '{model_type(base)}' model; "
            "name the modules"
        )
    return default if isinstance(default, str) else frozenset(default)


def target_rules(config: PeftConfig, base: FrozenBase, default_targets: Mapping[str, Sequence[str]]) -> TargetRules:
    targets = resolve_module_names(config, "target_modules", base, default_targets)
    if isinstance(targets, str) and targets.lower() == ALL_LINEAR:
        # PEFT's _maybe_include_all_linear_layers: every Linear layer but the output head.
        targets = frozenset(name for name in base.linear_shapes if name != base.output_embeddings_name)
    return TargetRules(
        target_modules=targets,
        exclude_modules=module_names(config, "exclude_modules"),
        layers_to_transform=layer_indexes(config),
        layers_pattern=layer_patterns(config),
    )


def describe_selection(config: PeftConfig) -> str:
    """The config fields that select modules, as the config has them, for messages."""
    parts = []
    for field in ("target_modules", "exclude_modules", "layers_to_transform", "layers_pattern"):
        value = getattr(config, field, None)
        if value is not None:
            value = sorted(value) if isinstance(value, (set, frozenset)) else value
            parts.append(f"{field}={shown(value)}")
    return ", ".join(parts) or "target_modules=null"


def match_targets(
    config: PeftConfig,
    rules: TargetRules,
    base: FrozenBase,
    adapted: Collection[str],
    patterns: BoundedPatterns,
    *,
    kind: str,
    tensors_for: str,
) -> TargetMatch:
    """Check the modules the weights adapt (`adapted`) against the config's targets and the base model.

    `kind` names the adapter kind ("LoRA") and `tensors_for` what one module's tensors are ("lora_A and
    lora_B"), for messages.
    """
    for module in sorted(adapted):
        module_type = base.module_types.get(module)
        if module_type is None:
            raise IncompatibleAdapter(
                f"the adapter has {kind} weights for module '{module}', which the base model does not have: "
                "it was trained for another base model"
            )
        if module not in base.linear_shapes:
            raise IncompatibleAdapter(
                f"the adapter has {kind} weights for module '{module}', which is not a Linear layer in the base "
                f"model (it is {module_type}); {kind} is served on Linear layers only"
            )

    verdicts = {name: rules.verdict(name, patterns) for name in base.module_types}
    targeted = frozenset(name for name, verdict in verdicts.items() if verdict == "targeted")
    selection = describe_selection(config)
    for module in sorted(targeted):
        if module not in base.linear_shapes:
            raise IncompatibleAdapter(
                f"adapter_config.json targets module '{module}' ({selection}), which is not a Linear layer in the "
                f"base model (it is {base.module_types[module]}); {kind} is served on Linear layers only"
            )

    untargeted = sorted(set(adapted) - targeted)
    if untargeted:
        module = untargeted[0]
        reason = "exclude_modules excludes it" if verdicts[module] == "excluded" else "the config does not target it"
        raise InvalidAdapterConfig(
            f"the weights hold {kind} tensors for module '{module}'{_more(untargeted)}, but {reason} "
            f"({selection}): adapter_config.json does not belong with these weights"
        )
    missing = sorted(targeted - set(adapted))
    if missing:
        raise InvalidAdapterConfig(
            f"adapter_config.json targets module '{missing[0]}'{_more(missing)} ({selection}), but the weights have "
            f"no {tensors_for} for it: adapter_config.json does not belong with these weights"
        )
    return TargetMatch(verdicts=verdicts, targeted=targeted)


def _more(modules: list[str]) -> str:
    return f" (and {len(modules) - 1} more)" if len(modules) > 1 else ""
