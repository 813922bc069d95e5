"""What one forward batch is made of: each row's request, and the left-padded layout of a prefill."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from service.engine.deltas.compiled import CompiledDelta
from service.engine.sampling import SamplingParams


@dataclass
class RowRequest:
    """One request as the engine sees it: tokens, the delta for this row (None = base model), sampling."""

    prompt_ids: list[int]
    delta: CompiledDelta | None
    params: SamplingParams
    deadline: float | None = None  # time.monotonic() after which the row stops ("timeout") or, queued, is refused
    adapter: str | None = None  # the adapter's name, for metrics and logs (the engine works with `delta`)

    @property
    def extra_tokens(self) -> int:
        """Cache entries the delta adds before the prompt: virtual tokens and prefix."""
        return 0 if self.delta is None else self.delta.num_virtual_tokens + self.delta.prefix_length


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


def build_prefill(rows: list[RowRequest], base) -> PrefillBatch:
    device = base.device
    batch = len(rows)
    prompts = [row.delta.prompt if row.delta is not None else None for row in rows]
    virtual = [p.virtual_tokens if p else 0 for p in prompts]
    prefix_lengths = [p.prefix_length if p else 0 for p in prompts]
    token_lengths = [v + len(row.prompt_ids) for v, row in zip(virtual, rows)]
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
    for i, prompt in enumerate(prompts):
        if prompt is not None and virtual[i]:
            start = width - token_lengths[i]
            prompt.write_embeddings(embeds[i, start : start + virtual[i]])

    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, prefix_width:]

    kv_prefix = None
    if prefix_width:
        shape = (batch, base.num_kv_heads, prefix_width, base.head_dim)
        keys = [torch.zeros(shape, device=device, dtype=base.dtype) for _ in range(base.num_layers)]
        values = [torch.zeros(shape, device=device, dtype=base.dtype) for _ in range(base.num_layers)]
        for i, prompt in enumerate(prompts):
            if prompt is not None and prefix_lengths[i]:
                prompt.write_prefix(keys, values, i, prefix_width - prefix_lengths[i])
        kv_prefix = list(zip(keys, values))

    return PrefillBatch(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, kv_prefix=kv_prefix)
