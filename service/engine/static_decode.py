"""The static decode path: a preallocated KV cache, per-row delta tables, and on CUDA one captured graph per
(batch-size bucket, context-width bucket), replayed for each decode step.

Prefill stays on the eager path (its shapes change with every prompt); its keys/values are then copied
into the static cache. Decode shapes depend only on the two buckets, so after warm-up a decode step is a
graph replay: no Python per layer, no kernel launch overhead, which is what bounds a small model's decode
on a GPU. On CPU the same step runs eagerly (this is how CI checks it against the eager path and PEFT).

A captured graph reads and writes fixed tensors, so everything a step depends on lives in them: the
pending tokens and positions, the cache and its mask, the column to write, and the delta tables.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import torch

from service.engine.base_model import FrozenBase
from service.engine.decode_loop import EngineStats, RunningBatch
from service.engine.fair_lock import FairLock
from service.engine.module_hooks import ModuleHooks
from service.engine.row_tables import RowTables
from service.engine.static_cache import StaticKVCache

log = logging.getLogger(__name__)

_SMALLEST_WIDTH = 128


def _buckets(largest: int, smallest: int) -> list[int]:
    sizes, size = [], smallest
    while size < largest:
        sizes.append(size)
        size *= 2
    return [*sizes, largest]


def _bucket(n: int, sizes: list[int]) -> int:
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"{n} exceeds the largest bucket, {sizes[-1]}")


class StaticDecoder:
    """The static path's tensors and graphs. One running batch at a time leases it."""

    def __init__(self, base: FrozenBase, hooks: ModuleHooks, *, slots: int, capacity: int, cuda_graphs: bool):
        device = base.device
        self.base, self.hooks = base, hooks
        self.slots, self.capacity = slots, capacity
        self.cache = StaticKVCache(
            layers=base.num_layers,
            slots=slots,
            kv_heads=base.num_kv_heads,
            head_dim=base.head_dim,
            capacity=capacity,
            device=device,
            dtype=base.dtype,
        )
        # Fixed tensors a graph reads: the adapters' module deltas (numbers 1..slots), each slot's number.
        self.tables = RowTables(base.linear_shapes, slots + 1, device, base.dtype, growable=False)
        self.row_numbers = torch.zeros(slots, device=device, dtype=torch.long)  # [slots]
        self.tokens = torch.full((slots, 1), base.pad_token_id, device=device, dtype=torch.long)  # [slots, 1] pending
        self.positions = torch.zeros((slots, 1), device=device, dtype=torch.long)  # [slots, 1] their positions
        self.row_buckets = _buckets(slots, 1)
        self.width_buckets = _buckets(capacity, min(_SMALLEST_WIDTH, capacity))
        self.use_graphs = cuda_graphs and device.type == "cuda"
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}  # key -> (graph, its logits)
        self._pool: Any = None  # one memory pool for every graph: they never run at the same time
        self._lease = threading.Lock()
        self.captures = 0

    # -- lease ------------------------------------------------------------------------------------
    def try_lease(self) -> bool:
        return self._lease.acquire(blocking=False)

    def release(self) -> None:
        self.cache.set_column(0)
        self._lease.release()

    def width_bucket(self, columns: int) -> int:
        return _bucket(columns, self.width_buckets)

    # -- one step ---------------------------------------------------------------------------------
    def logits(self, rows: int, linear: bool) -> torch.Tensor:
        """Logits [rows, 1, vocab] for the pending tokens of slots 0..rows-1, whose keys/values enter the cache
        at `cache.column`. `linear`: some row has LoRA or IA3 (else the tables are skipped altogether)."""
        self.cache.rows = _bucket(rows, self.row_buckets)
        self.cache.width = self.width_bucket(self.cache.column + 1)
        if not self.use_graphs:
            return self._step(linear)[:rows]
        key = (self.cache.rows, self.cache.width, self.tables.version if linear else None)
        if key not in self._graphs:
            self._graphs = {k: v for k, v in self._graphs.items() if k[2] in (None, self.tables.version)}
            try:
                self._graphs[key] = self._capture(linear)
            except Exception:
                self._graphs_off("capturing a decode step failed")
                return self._step(linear)[:rows]
        graph, logits = self._graphs[key]
        graph.replay()
        # The graph's output is overwritten by the next replay: the caller consumes it before then.
        return logits[:rows]

    def _step(self, linear: bool) -> torch.Tensor:
        """One decode step, run by Python (eagerly, or while a graph captures it). `linear`: apply the tables."""
        rows = self.cache.rows
        self.cache.mark_column()
        with self.hooks.active(self.tables if linear else None, self.row_numbers):
            return self.base.model(
                input_ids=self.tokens[:rows],
                position_ids=self.positions[:rows],
                attention_mask=self.cache.attention_mask(),
                past_key_values=self.cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits

    def _capture(self, linear: bool):
        # Warm-up runs on a side stream first (lazy kernel and cuBLAS initialisation must not be captured).
        # A step is idempotent until the column moves: rerunning it rewrites the same keys/values.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step(linear)
        torch.cuda.current_stream().wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: request threads may move adapters onto the GPU meanwhile; that is not part of this
        # capture and must not invalidate it.
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            logits = self._step(linear)
        self.captures += 1
        return graph, logits

    def _graphs_off(self, why: str) -> None:
        # Serving on without graphs beats failing every request: the same step, run eagerly.
        log.exception("CUDA graphs are off (%s); decode steps run eagerly on the static cache", why)
        self.use_graphs = False
        self._graphs.clear()

    @torch.inference_mode()
    def warm_up(self) -> None:
        """Capture the no-adapter graphs for every batch-size bucket at the shortest width (start-up), and
        check each replay against the same step run eagerly."""
        if not self.use_graphs or not self.try_lease():
            return
        try:
            for rows in reversed(self.row_buckets):  # largest first, so smaller graphs reuse its pool memory
                replayed = self.logits(rows, linear=False).float()
                if not self.use_graphs:  # capturing failed (logged)
                    return
                eager = self._step(False)[:rows].float()
                if not torch.allclose(replayed, eager, rtol=1e-2, atol=1e-2):
                    raise RuntimeError(f"the replayed decode graph for {rows} rows disagrees with the eager step")
            torch.cuda.synchronize()
            log.info("Captured %d decode graphs", self.captures)
        except Exception:
            self._graphs_off("the warm-up check failed")
        finally:
            self.cache.valid.zero_()
            self.release()


class StaticRunningBatch(RunningBatch):
    """A RunningBatch whose decode steps go through a leased StaticDecoder. Rows live in slots 0..n-1, in
    the order of `states`."""

    def __init__(
        self, base: FrozenBase, hooks: ModuleHooks, stats: EngineStats, lock: FairLock, decoder: StaticDecoder
    ):
        super().__init__(base, hooks, stats, lock, tables=decoder.tables)
        self.decoder = decoder
        self._closed = False  # the decoder's lease was given back
        self.spans: list[int] = []  # per row: columns from its first cache entry up to `column`
        self._linear = False

    def free_rows(self) -> int:
        return self.decoder.slots - len(self.states)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.decoder.release()

    def _join(self, cache, mask: torch.Tensor, positions: torch.Tensor, pending: torch.Tensor) -> None:
        decoder, static = self.decoder, self.decoder.cache
        count = mask.shape[0]
        first = len(self.states)
        if first + count > decoder.slots:
            raise RuntimeError(f"{first + count} rows do not fit the static cache's {decoder.slots} slots")
        widest = int(mask.sum(1).max())  # the most cache entries one newcomer brings
        if not self.states:
            static.set_column(widest)
        elif widest > static.column:
            static.shift(widest - static.column, first)  # make room on the left for the longer newcomers
        self.spans += static.place(first, [(layer.keys, layer.values) for layer in cache.layers], mask)
        decoder.tokens[first : first + count] = pending
        decoder.positions[first : first + count] = positions

    def _decode(self) -> torch.Tensor:
        static = self.decoder.cache
        if static.column == static.capacity:  # full: roll off the columns that are padding for every row
            static.shift(max(self.spans) - static.column, len(self.states))
        self.stats.count_pass(len(self.states))
        with self.lock:
            return self.decoder.logits(len(self.states), self._linear)

    def _advance(self, chosen: torch.Tensor) -> None:
        count = len(self.states)
        self.decoder.tokens[:count, 0] = chosen
        self.decoder.positions[:count] += 1
        self.decoder.cache.set_column(self.decoder.cache.column + 1)
        self.spans = [span + 1 for span in self.spans]

    def _scrub(self, rows: list[int]) -> None:
        # A failed row may have left inf/NaN keys or values in its slot. Masked-out columns still enter the
        # attention sum (as 0 * value), so they would poison the slot's next row: zero them now.
        if rows:
            self.decoder.cache.clear_slots(rows)

    def _keep_rows(self, keep: list[int]) -> None:
        # `self.states` already holds the kept rows, in slot order. Rows beyond the first len(keep) slots move
        # into the freed slots among them: one row copied per freed slot, not the whole batch reshuffled.
        decoder, static = self.decoder, self.decoder.cache
        count = len(keep)
        self.spans = [self.spans[i] for i in keep]
        if not keep:
            static.set_column(0)
            return
        freed = sorted(set(range(count)) - set(keep))
        movers = [slot for slot in keep if slot >= count]
        if movers:
            static.move_slots(movers, freed, decoder.tokens, decoder.positions)
            slot_of = dict(zip(movers, freed))
            slots = [slot_of.get(slot, slot) for slot in keep]
            order = sorted(range(count), key=slots.__getitem__)
            self.states = [self.states[i] for i in order]
            self.spans = [self.spans[i] for i in order]
        # Drop the columns no remaining row uses when the cache is full or when that lets steps attend over a
        # narrower width.
        longest = max(self.spans)
        if static.column >= static.capacity or decoder.width_bucket(longest + 1) < decoder.width_bucket(
            static.column + 1
        ):
            static.shift(longest - static.column, count)

    def _plan_rows(self) -> None:
        numbers = self.tables.assign([state.row.delta for state in self.states])
        self.decoder.row_numbers.zero_()
        if numbers:
            self.decoder.row_numbers[: len(numbers)] = torch.tensor(numbers, dtype=torch.long)
        self._linear = not self.tables.empty
