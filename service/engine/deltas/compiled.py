"""The runtime forms every PEFT delta compiles to (see DESIGN.md: three forms).

A compiled delta is immutable once built: replacing an adapter builds a new object, so a batch that
holds the old one finishes on the old version.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from peft import PeftConfig


class LinearDelta:
    """A change to one base `nn.Linear`, applied to the rows of a batch that use its adapter."""

    scales_input: bool = False  # True: applied to the module's input (IA3 feed-forward), else to its output

    def apply_input(self, x: torch.Tensor) -> torch.Tensor:  # x: [rows, seq, in]
        raise NotImplementedError

    def apply_output(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # y: [rows, seq, out]
        raise NotImplementedError

    def to(self, device: torch.device, dtype: torch.dtype) -> "LinearDelta":
        raise NotImplementedError

    def numel(self) -> int:
        raise NotImplementedError


@dataclass(eq=False)
class CompiledDelta:
    kind: str  # registry key: "lora", "ia3", "prompt_tuning", "p_tuning", "prefix_tuning"
    config: PeftConfig
    parameters: int  # elements in the adapter's weights file
    base_model: str | None  # `base_model_name_or_path` from the adapter's config, informative only
    virtual_embeddings: torch.Tensor | None = None  # [n_virtual, hidden], prepended to the row's embeddings
    kv_prefix: torch.Tensor | None = None  # [layers, 2, kv_heads, n_prefix, head_dim], prepended to the row's KV
    linear: dict[str, LinearDelta] = field(default_factory=dict)  # base module name -> delta

    @property
    def num_virtual_tokens(self) -> int:
        return 0 if self.virtual_embeddings is None else self.virtual_embeddings.shape[0]

    @property
    def prefix_length(self) -> int:
        return 0 if self.kv_prefix is None else self.kv_prefix.shape[3]

    def to(self, device: torch.device, dtype: torch.dtype) -> "CompiledDelta":
        """Onto `device` for a base model in `dtype`. Virtual tokens and prefixes take the model's dtype, as in
        PEFT. LoRA and IA3 weights stay float32 on a half-precision model, as PEFT keeps them by default
        (autocast_adapter_dtype), so their branch is computed in float32 and rounded once, like PEFT's."""
        linear_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype)

        return replace(
            self,
            virtual_embeddings=move(self.virtual_embeddings),
            kv_prefix=move(self.kv_prefix),
            linear={name: delta.to(device, linear_dtype) for name, delta in self.linear.items()},
        )
