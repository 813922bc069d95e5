"""What one forward batch is made of. One adapter per batch is the special case of one adapter per row."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from service.engine.deltas.compiled import CompiledDelta, LinearDelta
from service.engine.sampling import SamplingParams


@dataclass
class RowRequest:
    """One request as the engine sees it: tokens, the delta for this row (None = base model), sampling."""

    prompt_ids: list[int]
    delta: CompiledDelta | None
    params: SamplingParams
    deadline: float | None = None  # time.monotonic() after which the row stops ("timeout") or, queued, is refused

    @property
    def extra_tokens(self) -> int:
        """Cache entries the delta adds before the prompt: virtual tokens and prefix."""
        return 0 if self.delta is None else self.delta.num_virtual_tokens + self.delta.prefix_length


@dataclass
class DeltaGroup:
    """Rows of the batch that share one compiled delta."""

    delta: CompiledDelta
    rows: torch.Tensor | None  # [k] long row indices, or None when every row of the batch uses it


@dataclass
class LinearPlan:
    """For each hooked base module, the deltas to apply and to which rows; built once per batch."""

    inputs: dict[str, list[tuple[LinearDelta, torch.Tensor | None]]]
    outputs: dict[str, list[tuple[LinearDelta, torch.Tensor | None]]]

    @classmethod
    def from_groups(cls, groups: list[DeltaGroup]) -> "LinearPlan":
        inputs: dict[str, list] = {}
        outputs: dict[str, list] = {}
        for group in groups:
            for module, delta in group.delta.linear.items():
                target = inputs if delta.scales_input else outputs
                target.setdefault(module, []).append((delta, group.rows))
        return cls(inputs=inputs, outputs=outputs)

    @property
    def modules(self) -> set[str]:
        return set(self.inputs) | set(self.outputs)


@dataclass
class PrefillBatch:
    """Left-padded inputs for the first forward pass. Per row the layout is

        [prefix pad | kv prefix (P_i)] [token pad | virtual tokens (V_i) | prompt tokens (L_i)]

    so that every row's real content ends at the right edge and decoding appends to all rows alike.
    """

    inputs_embeds: torch.Tensor  # [B, T, hidden], T = max(V_i + L_i)
    attention_mask: torch.Tensor  # [B, P + T] long, P = max(P_i)
    position_ids: torch.Tensor  # [B, T] long: 0.. counted over the row's prefix and virtual tokens too
    kv_prefix: list[tuple[torch.Tensor, torch.Tensor]] | None  # per layer (k, v) [B, kv_heads, P, head_dim]
    groups: list[DeltaGroup]


def group_rows(rows: list[RowRequest], device: torch.device) -> list[DeltaGroup]:
    by_delta: dict[int, tuple[CompiledDelta, list[int]]] = {}
    for index, row in enumerate(rows):
        if row.delta is not None:
            by_delta.setdefault(id(row.delta), (row.delta, []))[1].append(index)
    groups = []
    for delta, indices in by_delta.values():
        every_row = len(indices) == len(rows)
        groups.append(DeltaGroup(delta, None if every_row else torch.tensor(indices, device=device)))
    return groups


def build_prefill(rows: list[RowRequest], base) -> PrefillBatch:
    device = base.device
    batch = len(rows)
    token_lengths = [row.delta.num_virtual_tokens + len(row.prompt_ids) if row.delta else len(row.prompt_ids) for row in rows]
    prefix_lengths = [row.delta.prefix_length if row.delta else 0 for row in rows]
    width, prefix_width = max(token_lengths), max(prefix_lengths)

    ids = torch.full((batch, width), base.pad_token_id, dtype=torch.long)
    mask = torch.zeros((batch, prefix_width + width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row.prompt_ids:
            ids[i, width - len(row.prompt_ids) :] = torch.tensor(row.prompt_ids)
        mask[i, prefix_width - prefix_lengths[i] : prefix_width] = 1
        mask[i, prefix_width + width - token_lengths[i] :] = 1
    ids, mask = ids.to(device), mask.to(device)

    embeds = base.embed(ids)
    for i, row in enumerate(rows):
        if row.delta is not None and row.delta.virtual_embeddings is not None:
            n_virtual = row.delta.num_virtual_tokens
            start = width - token_lengths[i]
            embeds[i, start : start + n_virtual] = row.delta.virtual_embeddings.to(embeds.dtype)

    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, prefix_width:]

    kv_prefix = None
    if prefix_width:
        layers = base.num_layers
        shape = (batch, base.num_kv_heads, prefix_width, base.head_dim)
        keys = [torch.zeros(shape, device=device, dtype=base.dtype) for _ in range(layers)]
        values = [torch.zeros(shape, device=device, dtype=base.dtype) for _ in range(layers)]
        for i, row in enumerate(rows):
            if prefix_lengths[i]:
                prefix = row.delta.kv_prefix  # [layers, 2, kv_heads, n, head_dim]
                for layer in range(layers):
                    keys[layer][i, :, prefix_width - prefix_lengths[i] :] = prefix[layer, 0]
                    values[layer][i, :, prefix_width - prefix_lengths[i] :] = prefix[layer, 1]
        kv_prefix = list(zip(keys, values))

    return PrefillBatch(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=positions,
        kv_prefix=kv_prefix,
        groups=group_rows(rows, device),
    )
