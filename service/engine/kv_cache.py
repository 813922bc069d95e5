"""Row-level surgery on transformers' DynamicCache, kept in one place because it touches the cache's layers.

Every row's keys/values are left-padded to the batch's width (padding masked out by the attention mask),
so rows can be merged, dropped, and leading all-padding columns trimmed without moving any row's content.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache


def new_cache(config, per_layer: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> DynamicCache:
    cache = DynamicCache(config=config)
    for layer, (keys, values) in enumerate(per_layer or []):
        cache.update(keys, values, layer)
    return cache


def _layers(cache: DynamicCache) -> list[Any]:
    # Typed loosely: transformers' layer classes differ between versions, but a filled DynamicCache's
    # layers all hold `keys` and `values` tensors.
    return list(cache.layers)


def _tensors(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in _layers(cache)]


def merge(a: DynamicCache, b: DynamicCache, config) -> DynamicCache:
    """Rows of `a` then rows of `b`, both left-padded to the longer length."""
    width = max(a.get_seq_length(), b.get_seq_length())

    def pad(t: torch.Tensor) -> torch.Tensor:  # [B, heads, L, head_dim] -> [B, heads, width, head_dim]
        return F.pad(t, (0, 0, width - t.shape[2], 0))

    merged = [
        (torch.cat([pad(ka), pad(kb)]), torch.cat([pad(va), pad(vb)]))
        for (ka, va), (kb, vb) in zip(_tensors(a), _tensors(b))
    ]
    return new_cache(config, merged)


def select_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    for layer in _layers(cache):
        layer.keys = layer.keys.index_select(0, rows)
        layer.values = layer.values.index_select(0, rows)


def drop_leading(cache: DynamicCache, columns: int) -> None:
    for layer in _layers(cache):
        layer.keys = layer.keys[:, :, columns:]
        layer.values = layer.values[:, :, columns:]


def left_pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    return F.pad(mask, (width - mask.shape[1], 0))
