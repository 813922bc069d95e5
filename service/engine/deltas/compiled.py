"""What every delta compiles to, and the two ways a compiled delta acts on a row.

- `ModuleDelta`: a change inside one base module's forward (LoRA, IA3 and BitFit on a Linear; a bottleneck
  adapter on the Linear that ends a sub-layer). Each type names the
  `ModuleTable` that holds it in a batch: every adapter of the batch side by side in fixed tensors, indexed
  by the adapter's number in that batch, so one forward applies each row's own delta (vLLM's slots: a
  table's `set(number, delta)` fills one, `reset(number)` empties it). The same tables serve prefill and
  decode, and the eager and static decode paths.
- `PromptDelta`: what a delta lays before a row's tokens at prefill: virtual token embeddings (prompt
  tuning, P-tuning) or key/value entries in the row's cache (prefix tuning). Nothing of it runs at decode.

A kind's module (lora.py, ia3.py, bitfit.py, bottleneck.py, prompt.py, prefix.py) defines its pieces, their
tables and its compiler, and registers the compiler (registry.py). A compiled delta is immutable: replacing an
adapter compiles a new one (with a new `uid`), so a batch that holds the old one finishes on the old version.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch

_next_uid = itertools.count(1).__next__


def adapter_dtype(model_dtype: torch.dtype) -> torch.dtype:
    """Module deltas stay float32 on a half-precision model, as PEFT keeps adapter weights by default
    (autocast_adapter_dtype): their branch is computed in float32 and rounded once, like PEFT's."""
    return torch.float32 if model_dtype in (torch.float16, torch.bfloat16) else model_dtype


class ModuleTable(ABC):
    """The deltas of one type on one base module, for every adapter of a batch; number 0 is "no adapter"."""

    scales_input: ClassVar[bool] = False  # applied to the module's input (a pre-hook) instead of its output

    def __init__(self, shape: tuple[int, int], numbers: int, device: torch.device, dtype: torch.dtype):
        self.shape, self.device, self.dtype = shape, device, dtype  # shape: the module's (in, out) features

    @abstractmethod
    def set(self, number: int, delta: ModuleDelta) -> bool:
        """Hold `delta` as adapter `number`; True when tensors were reallocated (captured graphs are stale)."""

    @abstractmethod
    def reset(self, number: int) -> None:
        """Adapter `number` left the batch: it must act as "no adapter" from now on."""

    @abstractmethod
    def resize(self, numbers: int) -> None:
        """Room for adapter numbers 0..numbers-1 (a growing eager batch); reallocates."""

    def apply_input(self, x: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """x: [rows, seq, in]; numbers: [rows] long, each row's adapter number."""
        raise NotImplementedError

    def apply_output(self, x: torch.Tensor, y: torch.Tensor, numbers: torch.Tensor,
                     stream: torch.Tensor | None = None) -> torch.Tensor:
        """x: [rows, seq, in] the module's input; y: [rows, seq, out] its output; `stream`: the input of the module
        the table's deltas read (`ModuleDelta.reads_input_of`), recorded earlier in the same forward pass."""
        raise NotImplementedError


class ModuleDelta(ABC):
    table_type: ClassVar[type[ModuleTable]]
    # Another module whose input this delta also reads, in the same forward pass: a bottleneck adapter on a
    # sub-layer's output reads the residual stream, which is the input of the layer norm before the sub-layer.
    reads_input_of: str | None = None

    @abstractmethod
    def to(self, device: torch.device, dtype: torch.dtype) -> ModuleDelta: ...

    @abstractmethod
    def numel(self) -> int: ...


class PromptDelta(ABC):
    virtual_tokens: int = 0  # embeddings prepended to the row's token embeddings
    prefix_length: int = 0  # key/value entries prepended to the row's cache in every layer

    def write_embeddings(self, out: torch.Tensor) -> None:  # noqa: B027 (a kind with no virtual tokens needs none)
        """Fill `out` [virtual_tokens, hidden] (a view into the batch's input embeddings)."""

    def write_prefix(self, keys: list[torch.Tensor], values: list[torch.Tensor], row: int,  # noqa: B027
                     start: int) -> None:
        """Fill row `row` of the per-layer caches [batch, kv_heads, P, head_dim] from column `start` on."""

    @abstractmethod
    def to(self, device: torch.device, dtype: torch.dtype) -> PromptDelta: ...


@dataclass(eq=False)
class CompiledDelta:
    kind: str  # registry name: "lora", "ia3", "prompt_tuning", "p_tuning", "prefix_tuning", "bitfit", "bottleneck"
    config: Any  # the parsed adapter_config.json: a PeftConfig, or the kind's own for kinds PEFT lacks
    parameters: int  # elements in the adapter's weights file
    base_model: str | None  # `base_model_name_or_path` from the adapter's config, informative only
    modules: dict[str, ModuleDelta] = field(default_factory=dict)  # base module name -> its delta
    prompt: PromptDelta | None = None
    uid: int = field(default_factory=_next_uid)  # one per compiled version; its copies on other devices share it

    @property
    def num_virtual_tokens(self) -> int:
        return 0 if self.prompt is None else self.prompt.virtual_tokens

    @property
    def prefix_length(self) -> int:
        return 0 if self.prompt is None else self.prompt.prefix_length

    def to(self, device: torch.device, dtype: torch.dtype) -> CompiledDelta:
        """Onto `device` for a base model in `dtype`: prompt pieces take the model's dtype (as in PEFT), module
        deltas `adapter_dtype(dtype)`. The copy is the same version: it keeps the uid."""
        modules_dtype = adapter_dtype(dtype)
        return replace(
            self,
            modules={name: delta.to(device, modules_dtype) for name, delta in self.modules.items()},
            prompt=None if self.prompt is None else self.prompt.to(device, dtype),
        )
