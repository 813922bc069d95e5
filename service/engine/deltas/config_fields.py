"""Type checks for the adapter config fields the compilers read.

PEFT's config classes accept any JSON value in most fields (`r: true`, `rank_pattern: "x"`,
`target_modules: {"a": [[1]]}`), and the error surfaces later as a TypeError deep in our code, or as
a nonsense comparison. Each function here returns the field's value in one normal form, or raises
InvalidAdapterConfig naming the field and what it holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeGuard

from peft import PeftConfig

from service.errors import InvalidAdapterConfig

# How much of a bad value a message shows.
_SHOWN_CHARS = 80


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _refuse(field: str, value: Any, expected: str) -> InvalidAdapterConfig:
    return InvalidAdapterConfig(f"adapter_config.json: '{field}' must be {expected}, not {shown(value)}")


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a count


def is_finite_number(value: Any) -> TypeGuard[int | float]:
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def positive_int(config: PeftConfig, field: str) -> int:
    value = getattr(config, field, None)
    if not is_int(value) or value <= 0:
        raise _refuse(field, value, "a positive integer")
    return value


def optional_positive_int(config: PeftConfig, field: str) -> int | None:
    return None if getattr(config, field, None) is None else positive_int(config, field)


def finite_number(config: PeftConfig, field: str) -> float:
    value = getattr(config, field, None)
    if not is_finite_number(value):
        raise _refuse(field, value, "a finite number")
    return value


def flag(config: PeftConfig, field: str) -> bool:
    value = getattr(config, field, None)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _refuse(field, value, "true or false")
    return value


def module_names(config: PeftConfig, field: str) -> str | frozenset[str] | None:
    """target_modules, exclude_modules, feedforward_modules: a regex (str), a list of names, or null."""
    value = getattr(config, field, None)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, set, tuple, frozenset)) and all(isinstance(name, str) for name in value):
        return frozenset(value)
    raise _refuse(field, value, "a regular expression (a string) or a list of module names")


def layer_indexes(config: PeftConfig) -> int | frozenset[int] | None:
    """layers_to_transform: one layer index or a list of them; null or [] means every layer (as in PEFT)."""
    value = getattr(config, "layers_to_transform", None)
    if value is None:
        return None
    if is_int(value) and value >= 0:
        return value
    if isinstance(value, (list, tuple)) and all(is_int(index) and index >= 0 for index in value):
        return frozenset(value) or None
    raise _refuse("layers_to_transform", value, "a layer index or a list of layer indexes")


def layer_patterns(config: PeftConfig) -> tuple[str, ...] | None:
    """layers_pattern: a name or a list of names; null, "" or [] means PEFT's default layer rule."""
    value = getattr(config, "layers_pattern", None)
    if value is None:
        return None
    if isinstance(value, str):
        return (value,) if value else None
    if isinstance(value, (list, tuple)) and all(isinstance(pattern, str) for pattern in value):
        return tuple(value) or None
    raise _refuse("layers_pattern", value, "a name or a list of names")


def pattern_dict(config: PeftConfig, field: str, valid: Callable[[Any], bool], expected: str) -> dict[str, Any]:
    """rank_pattern / alpha_pattern: module-name pattern -> value; every value must pass `valid`."""
    value = getattr(config, field, None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _refuse(field, value, f"an object of module-name patterns to {expected}")
    for key, item in value.items():
        if not isinstance(key, str) or not valid(item):
            raise _refuse(f"{field}[{key!r}]", item, expected)
    return value
