"""peft_type -> compiler. A new delta kind is one new module that calls `register`; a kind whose format has no
peft_type (AdapterHub's bottleneck adapters) also says how to recognise its configs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from service.engine.base_model import FrozenBase
from service.engine.deltas.compiled import CompiledDelta

# A compiler gets the parsed config and the weights file's tensors and returns the runtime form, or raises
# an AdapterError subclass that names what does not fit the base model. Each kind's compiler takes its own
# config type (a PeftConfig subclass, unless the kind parses its own); the registry only ever hands it a
# config of its peft_type.
_C = TypeVar("_C", bound=Callable[[Any, dict[str, torch.Tensor], FrozenBase], CompiledDelta])


@dataclass(frozen=True)
class DeltaKind:
    name: str  # what the API reports, e.g. "lora"
    peft_type: str  # PEFT's PeftType value, e.g. "LORA"
    compile: Callable[[Any, dict[str, torch.Tensor], FrozenBase], CompiledDelta]
    # adapter_config.json (a dict) -> the compiler's config; None: PEFT parses it (PeftConfig.from_peft_type).
    # For kinds PEFT does not have; raises InvalidAdapterConfig naming what is wrong.
    parse: Callable[[dict], Any] | None = None
    # For a format without a peft_type (AdapterHub's): whether an adapter_config.json is of this kind.
    recognise: Callable[[dict], bool] | None = None


_KINDS: dict[str, DeltaKind] = {}


def register(name: str, peft_type: str, parse: Callable[[dict], Any] | None = None,
             recognise: Callable[[dict], bool] | None = None) -> Callable[[_C], _C]:
    def decorator(compiler: _C) -> _C:
        _KINDS[peft_type] = DeltaKind(name=name, peft_type=peft_type, compile=compiler, parse=parse,
                                      recognise=recognise)
        return compiler

    return decorator


def kind_for(peft_type: str) -> DeltaKind | None:
    return _KINDS.get(peft_type)


def kind_recognising(config: dict) -> DeltaKind | None:
    """The kind whose own format `config` is (a config with no peft_type), if any."""
    return next((kind for kind in _KINDS.values() if kind.recognise is not None and kind.recognise(config)), None)


def supported_peft_types() -> list[str]:
    return sorted(_KINDS)
