"""The decode loop: `RunningBatch` steps the model for the rows decoding together.

New rows join at a token boundary (they are prefilled on their own, then their KV cache is merged in) and
finished rows leave at once, so a long generation never holds short ones back (continuous batching). Every
row carries its own delta, or none: the batch's module deltas live in its `RowTables`, applied to each row
by its adapter number. The static decode path (static_decode.py) is a `RunningBatch` with a preallocated
cache; this module's growing-cache batch is the eager path.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import torch

from service.engine import kv_cache
from service.engine.base_model import FrozenBase
from service.engine.batch import RowRequest, build_prefill
from service.engine.fair_lock import FairLock
from service.engine.module_hooks import ModuleHooks
from service.engine.row_tables import RowTables
from service.engine.rows import GenerationResult, RowState
from service.engine.sampling import choose_tokens
from service.errors import RowFailed

log = logging.getLogger(__name__)

# An eager batch's row tables start with room for this many adapters and grow as more join.
_EAGER_TABLE_NUMBERS = 8


@dataclass
class EngineStats:
    forward_passes: int = 0  # prefill and decode passes through the model
    prefills: int = 0  # groups of rows admitted together (each one prefill pass)
    rows: int = 0  # rows admitted
    generated_tokens: int = 0
    cancelled_rows: int = 0  # rows dropped before finishing because their caller went away
    timed_out_rows: int = 0  # rows ended by their request's deadline
    failed_rows: int = 0  # rows that failed alone (non-finite output, a sampling or decoding error)
    most_rows: int = 0  # the most rows one forward pass has carried

    def count_pass(self, rows: int) -> None:
        self.forward_passes += 1
        self.most_rows = max(self.most_rows, rows)


class RunningBatch:
    def __init__(self, base: FrozenBase, hooks: ModuleHooks, stats: EngineStats | None = None,
                 lock: FairLock | None = None, tables: RowTables | None = None):
        self.base = base
        self.hooks = hooks
        self.stats = stats or EngineStats()
        # The hooks read the tables of the batch running the model: two batches must never run it at once.
        self.lock = lock or FairLock()
        self.tables = tables or RowTables(
            base.linear_shapes, _EAGER_TABLE_NUMBERS, base.device, base.dtype, growable=True
        )
        self.states: list[RowState] = []
        # The eager path's cache is a DynamicCache with rows left-padded to one length (None while empty);
        # the static path puts its StaticKVCache here.
        self.cache: Any = None
        self._empty()

    def _empty(self) -> None:
        self.mask = self._long((0, 1))  # [B, cache length + 1] long: the cache plus the pending token
        self.positions = self._long((0, 1))  # [B, 1] position of each row's pending token
        self.pending = self._long((0, 1))  # [B, 1] each row's last chosen token, not yet in the cache
        self.row_numbers = self._long((0,))  # [B] each row's adapter number in `tables`

    def _long(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.long, device=self.base.device)

    def __len__(self) -> int:
        return len(self.states)

    def free_rows(self) -> int:
        """How many more rows may join now (the eager path has no fixed limit)."""
        return sys.maxsize

    def close(self) -> None:
        """Give back what the batch holds (the static path's lease); call once it has no rows."""

    def _forward(self, numbers: torch.Tensor | None, **inputs):
        self.stats.count_pass(inputs["attention_mask"].shape[0])
        with self.lock, self.hooks.active(self.tables, numbers):
            return self.base.model(use_cache=True, logits_to_keep=1, **inputs)

    def _choose(self, logits: torch.Tensor, states: list[RowState]) -> torch.Tensor:
        """Each row's next token from logits [B, 1, vocab]. A row that fails here (non-finite logits, sampling,
        stop strings, detokenizing) is marked failed; its pending token is a placeholder it never uses."""
        choices = choose_tokens(logits[:, -1, :].float(), [s.row.params for s in states], [s.generator for s in states])
        for row, (state, token) in enumerate(zip(states, choices.tokens)):
            if token is None:
                state.fail(choices.failures[row])
                continue
            try:
                state.add(token, choices.logprobs.get(row))
            except Exception as exc:
                log.exception("a row failed after choosing its token")
                state.fail(RowFailed(f"this request failed while its output was decoded: {type(exc).__name__}"))
        placeholder = self.base.pad_token_id
        return torch.tensor([placeholder if t is None else t for t in choices.tokens], device=logits.device)

    @torch.inference_mode()
    def admit(self, rows: list[RowRequest], tickets: list[Any] | None = None) -> list[RowState]:
        """Prefill `rows` and let them join; returns rows already finished after their first token, and rows
        that failed (each alone: a failing group is retried row by row, so one bad row fails only itself)."""
        states = [RowState(row, self.base, ticket) for row, ticket in zip(rows, tickets or [None] * len(rows))]
        failed = [s for s in states if s.finish_reason is not None]  # e.g. a seed that cannot be used
        return failed + self._admit_states([s for s in states if s.finish_reason is None])

    def _admit_states(self, states: list[RowState]) -> list[RowState]:
        if not states:
            return []
        try:
            prefilled = self._prefill(states)
        except Exception as exc:
            if len(states) > 1:
                return [finished for state in states for finished in self._admit_states([state])]
            log.exception("prefill failed for one row")
            states[0].fail(RowFailed(f"this request failed in its first forward pass: {type(exc).__name__}"))
            return states
        self.stats.prefills += 1
        self.stats.rows += len(states)
        self._join(*prefilled)
        self.states += states
        finished = self._release_finished()
        self._plan_rows()
        return finished

    def _prefill(self, states: list[RowState]):
        """Run the new rows' first forward pass and choose their first tokens; changes nothing in the batch."""
        rows = [state.row for state in states]
        prefill = build_prefill(rows, self.base)
        cache = kv_cache.new_cache(self.base.model.config, prefill.kv_prefix)
        # The tables must hold the running rows' adapters and the newcomers' (running rows keep their numbers).
        numbers = self.tables.assign([s.row.delta for s in self.states] + [row.delta for row in rows])
        out = self._forward(
            self._numbers_tensor(numbers[len(self.states) :]),
            inputs_embeds=prefill.inputs_embeds,
            attention_mask=prefill.attention_mask,
            position_ids=prefill.position_ids,
            past_key_values=cache,
        )
        chosen = self._choose(out.logits, states)
        return cache, prefill.attention_mask, prefill.position_ids[:, -1:] + 1, chosen.unsqueeze(-1)

    def _join(self, cache, mask: torch.Tensor, positions: torch.Tensor, pending: torch.Tensor) -> None:
        """Append prefilled rows: their cache, its mask [k, cache length], next positions and pending tokens [k, 1]."""
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        if self.states:
            width = max(self.mask.shape[1], mask.shape[1])
            self.cache = kv_cache.merge(self.cache, cache, self.base.model.config)
            self.mask = torch.cat([kv_cache.left_pad_mask(self.mask, width), kv_cache.left_pad_mask(mask, width)])
            self.positions = torch.cat([self.positions, positions])
            self.pending = torch.cat([self.pending, pending])
        else:
            self.cache, self.mask, self.positions, self.pending = cache, mask, positions, pending

    @torch.inference_mode()
    def step(self) -> list[RowState]:
        """One decode step for every row; returns the rows that finished."""
        logits = self._decode()
        chosen = self._choose(logits, self.states)
        self._advance(chosen)
        finished = self._release_finished()
        if finished:
            self._plan_rows()
        return finished

    def _decode(self) -> torch.Tensor:
        """Logits [B, 1, vocab] for every row's pending token, which enters the cache."""
        return self._forward(
            self.row_numbers,
            input_ids=self.pending,
            attention_mask=self.mask,
            position_ids=self.positions,
            past_key_values=self.cache,
        ).logits

    def _advance(self, chosen: torch.Tensor) -> None:
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=-1)
        self.positions = self.positions + 1
        self.pending = chosen.unsqueeze(-1)

    @torch.inference_mode()
    def finish_early(self, states: list[RowState], reason: str) -> None:
        """End `states` at this token boundary with `reason` ("cancelled": their callers went away; "timeout":
        their deadline passed); the other rows go on."""
        for state in states:
            state.finish_reason = reason
        if reason == "cancelled":
            self.stats.cancelled_rows += len(states)
        elif reason == "timeout":
            self.stats.timed_out_rows += len(states)
        if self._release_finished():
            self._plan_rows()

    def cancel(self, states: list[RowState]) -> None:
        self.finish_early(states, "cancelled")

    def _release_finished(self) -> list[RowState]:
        finished = [s for s in self.states if s.finish_reason is not None]
        self.stats.generated_tokens += sum(len(s.tokens) for s in finished)
        self.stats.failed_rows += sum(s.error is not None for s in finished)
        if finished:
            self._scrub([i for i, s in enumerate(self.states) if s.error is not None])
            keep = [i for i, s in enumerate(self.states) if s.finish_reason is None]
            self.states = [self.states[i] for i in keep]
            self._keep_rows(keep)
        return finished

    def _scrub(self, rows: list[int]) -> None:
        """Forget what failed rows left behind (the eager cache drops their rows with them)."""

    def _keep_rows(self, keep: list[int]) -> None:
        if not keep:
            self.cache = None
            self._empty()
            return
        index = torch.tensor(keep, device=self.base.device)
        kv_cache.select_rows(self.cache, index)
        self.mask = self.mask.index_select(0, index)
        self.positions = self.positions.index_select(0, index)
        self.pending = self.pending.index_select(0, index)
        # Columns that are padding for every remaining row are dead weight: drop them.
        # (The mask's last column is the pending token, which is not in the cache yet.)
        dead = int((self.mask[:, :-1].sum(0) > 0).long().argmax())
        if dead:
            kv_cache.drop_leading(self.cache, dead)
            self.mask = self.mask[:, dead:]

    def _plan_rows(self) -> None:
        # Rows joined or left: the tables keep only the present adapters, and the row -> number map is rebuilt
        # (only then, not every step).
        self.row_numbers = self._numbers_tensor(self.tables.assign([s.row.delta for s in self.states]))

    def _numbers_tensor(self, numbers: list[int]) -> torch.Tensor:
        return torch.tensor(numbers, dtype=torch.long, device=self.base.device)


def generate_batch(batch: RunningBatch, rows: list[RowRequest]) -> list[GenerationResult]:
    """Run `rows` to completion on an empty `batch`, then close it. Rows join as places free up; each row's
    tokens equal what it would get alone."""
    results: dict[int, GenerationResult] = {}
    waiting = list(enumerate(rows))
    try:
        while waiting or len(batch):
            free = batch.free_rows()
            if waiting and free:
                joining, waiting = waiting[:free], waiting[free:]
                finished = batch.admit([row for _, row in joining], tickets=[index for index, _ in joining])
            else:
                finished = batch.step()
            for state in finished:
                results[state.ticket] = state.result()
    finally:
        batch.close()
    return [results[i] for i in range(len(rows))]
