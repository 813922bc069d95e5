"""peft_type -> compiler. A new delta kind is one new module that calls `register`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from peft import PeftConfig

from service.engine.base_model import FrozenBase
from service.engine.deltas.compiled import CompiledDelta

# A compiler gets the parsed config and the weights file's tensors and returns the runtime form, or raises
# an AdapterError subclass that names what does not fit the base model.
Compiler = Callable[[PeftConfig, dict[str, torch.Tensor], FrozenBase], CompiledDelta]


@dataclass(frozen=True)
class DeltaKind:
    name: str  # what the API reports, e.g. "lora"
    peft_type: str  # PEFT's PeftType value, e.g. "LORA"
    compile: Compiler


_KINDS: dict[str, DeltaKind] = {}


def register(name: str, peft_type: str) -> Callable[[Compiler], Compiler]:
    def decorator(compiler: Compiler) -> Compiler:
        _KINDS[peft_type] = DeltaKind(name=name, peft_type=peft_type, compile=compiler)
        return compiler

    return decorator


def kind_for(peft_type: str) -> DeltaKind | None:
    return _KINDS.get(peft_type)


def supported_peft_types() -> list[str]:
    return sorted(_KINDS)
