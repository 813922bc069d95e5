"""A preallocated key/value cache whose tensors never move, so a decode step can be captured as a CUDA graph.

Layout: one slot per running row, `capacity` columns per slot. Every row's content ends at the shared
`column` (rows are right-aligned, left padding masked out by `valid`), so a decode step writes every row's
new key/value into the same column and one captured graph serves every mix of row lengths. Rows join by
copying their prefilled keys/values in; when the cache is full, the columns that are padding for every
row are rolled off the left. Only the first `rows` slots and `width` columns take part in a step: the
graph for a small batch or a short context does not pay for the whole cache.

Duck-types the two calls transformers' Llama-family attention makes on a cache (`update`,
`get_seq_length`); the attention mask is passed in 4D, which transformers uses as it is.
"""

from __future__ import annotations

import torch


class StaticKVCache:
    def __init__(self, *, layers: int, slots: int, kv_heads: int, head_dim: int, capacity: int,
                 device: torch.device, dtype: torch.dtype):
        shape = (slots, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.valid = torch.zeros((slots, capacity), device=device, dtype=torch.bool)  # columns each row attends to
        self.slots, self.capacity = slots, capacity
        self.column = 0  # where the next token of every row goes
        self.column_index = torch.zeros(1, device=device, dtype=torch.long)  # `column` on the device (graph input)
        self.rows = slots  # slots taking part in the current step (a batch-size bucket)
        self.width = capacity  # columns taking part in the current step (a context-length bucket)

    # -- what the model calls during a step -------------------------------------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Write one step's keys/values [rows, kv_heads, 1, head_dim] at `column`; return what to attend over."""
        keys = self.keys[layer_idx][: self.rows]
        values = self.values[layer_idx][: self.rows]
        keys.index_copy_(2, self.column_index, key_states)
        values.index_copy_(2, self.column_index, value_states)
        return keys[:, :, : self.width], values[:, :, : self.width]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.column

    def mark_column(self) -> None:
        """Every row attends to the column its pending token is about to fill (part of the captured step)."""
        self.valid[: self.rows].index_fill_(1, self.column_index, True)

    def attention_mask(self) -> torch.Tensor:
        return self.valid[: self.rows, None, None, : self.width]  # [rows, 1, 1, width] bool, True = attend

    # -- row management, between steps (eager) ---------------------------------------------------
    def set_column(self, column: int) -> None:
        self.column = column
        self.column_index.fill_(column)

    def place(
        self, first_slot: int, per_layer: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor
    ) -> list[int]:
        """Copy prefilled rows (per layer keys/values [k, kv_heads, L, head_dim], mask [k, L]) into slots from
        `first_slot`, each row's entries packed to end at `column`; returns each row's entry count.

        Packing drops the padding inside a row (a prefix row padded to a longer prompt's width): positions
        are already in the keys, so only which entries a row attends to matters, not where they sit. The
        caller makes room first: column >= the largest count."""
        counts = mask.sum(1)
        widest = int(counts.max())
        # A stable sort of the mask puts each row's padding first and its entries, in order, last.
        source = torch.argsort(mask.int(), dim=1, stable=True)[:, -widest:]  # [k, widest]
        slots = slice(first_slot, first_slot + mask.shape[0])
        columns = slice(self.column - widest, self.column)
        for layer, (keys, values) in enumerate(per_layer):
            index = source[:, None, :, None].expand(-1, keys.shape[1], -1, keys.shape[3])
            self.keys[layer][slots, :, columns] = keys.gather(2, index)
            self.values[layer][slots, :, columns] = values.gather(2, index)
        self.valid[slots] = False
        self.valid[slots, columns] = mask.gather(1, source).bool()
        return counts.tolist()

    def shift(self, columns: int, rows: int) -> None:
        """Move the first `rows` slots `columns` to the right (negative: to the left). Only padding may wrap
        around. (Other slots hold nothing: a row's slot is rewritten when it joins.)"""
        for tensor in (*self.keys, *self.values, self.valid):
            active = tensor[:rows]
            active.copy_(torch.roll(active, columns, dims=2 if tensor.dim() == 4 else 1))
        self.set_column(self.column + columns)

    def clear_slots(self, slots: list[int]) -> None:
        index = torch.tensor(slots, device=self.valid.device)
        for tensor in (*self.keys, *self.values, self.valid):
            tensor.index_fill_(0, index, 0)

    def move_slots(self, sources: list[int], targets: list[int], *per_slot: torch.Tensor) -> None:
        """Copy the rows in slots `sources` to slots `targets` (freed slots: only moved rows are copied), in the
        cache and in the caller's other per-slot tensors `per_slot` (dim 0 = slot)."""
        device = self.valid.device
        source, target = torch.tensor(sources, device=device), torch.tensor(targets, device=device)
        for tensor in (*self.keys, *self.values, self.valid, *per_slot):
            tensor.index_copy_(0, target, tensor.index_select(0, source))
