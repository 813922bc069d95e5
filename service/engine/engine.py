"""The engine: the frozen base model, the compiled adapters by name, and one batch at a time through it."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch

from service.engine.adapter_cache import AdapterCache
from service.engine.base_model import FrozenBase
from service.engine.batch import RowRequest
from service.engine.decode_loop import EngineStats, RunningBatch, generate_batch
from service.engine.deltas import CompiledDelta, compile_adapter, compile_directory
from service.engine.deltas.adapterhub_head import check_head
from service.engine.fair_lock import FairLock
from service.engine.module_hooks import ModuleHooks
from service.engine.rows import GenerationResult
from service.engine.sampling import SamplingParams
from service.engine.static_decode import StaticDecoder, StaticRunningBatch
from service.errors import InvalidAdapterWeights, InvalidRequest

log = logging.getLogger(__name__)

PROBE_TEXT = "The quick brown fox jumps over the lazy dog. 1, 2, 3."


class Engine:
    def __init__(self, base: FrozenBase, *, max_resident_adapters: int = 64, max_cpu_adapters: int = 512,
                 decode: str = "auto", max_batch_size: int = 16, kv_cache_tokens: int = 2048, cuda_graphs: bool = True):
        """`decode`: "eager" (growing cache, the plain path), "static" (preallocated cache of `kv_cache_tokens`
        per row for `max_batch_size` rows; with `cuda_graphs`, decode steps replay CUDA graphs on a GPU), or
        "auto": static on CUDA, eager elsewhere."""
        self.base = base
        self.hooks = ModuleHooks(base.model)
        if decode not in ("auto", "eager", "static"):
            raise ValueError(f"decode must be 'auto', 'eager' or 'static', not {decode!r}")
        if decode == "static" or (decode == "auto" and base.device.type == "cuda"):
            self.decoder: StaticDecoder | None = StaticDecoder(
                base,
                self.hooks,
                slots=max_batch_size,
                capacity=min(kv_cache_tokens, base.max_positions),
                cuda_graphs=cuda_graphs,
            )
        else:
            self.decoder = None
        self.adapters = AdapterCache(
            lambda directory: compile_directory(Path(directory), base, device=torch.device("cpu")),
            device=base.device,
            dtype=base.dtype,
            max_device=max_resident_adapters,
            max_cpu=max_cpu_adapters,
        )
        self._model_lock = FairLock()  # one forward pass at a time (the hooks read one batch's tables), in turn
        self.stats = EngineStats()

    # -- adapters ---------------------------------------------------------------------------------
    def compile(self, directory: Path) -> CompiledDelta:
        """Check and compile an adapter folder without serving it; raises an AdapterError naming what does not fit."""
        return compile_directory(Path(directory), self.base)

    def compile_parsed(self, config: dict, weights: Path) -> CompiledDelta:
        """The same, for an upload whose config the store has already parsed (each upload is parsed once)."""
        return compile_adapter(config, weights, self.base)

    def check_head(self, directory: Path) -> None:
        """An uploaded AdapterHub head is accepted only as a copy of the base model's own output layer."""
        check_head(Path(directory), self.base)

    def check_output(self, delta: CompiledDelta) -> None:
        """Run the adapter once on a probe prompt and refuse it if the model's output is not finite: weights
        that pass every shape check can still overflow inside the model (a poisoned or absurdly scaled delta)."""
        row = self.make_row(PROBE_TEXT, delta, SamplingParams(max_new_tokens=1))
        result = generate_batch(self.new_batch(EngineStats()), [row])[0]  # not the service's counters
        if result.error is not None:
            raise InvalidAdapterWeights(
                f"the adapter makes the model's output on a probe prompt fail ({result.error.message}); "
                "its weights are broken or far too large"
            )

    def register(self, name: str, delta: CompiledDelta, source: Path | None = None, meta: Any = None) -> None:
        """Serve `delta` as `name` from now on, with `meta` (the store's record). Requests already holding the
        previous version finish on it: swapping the entry is the whole switch. Without `source` it can never
        be evicted."""
        self.adapters.add(name, source, delta, meta)

    def load(self, name: str, directory: Path, meta: Any = None) -> CompiledDelta:
        started = time.perf_counter()
        delta = self.compile(directory)
        self.register(name, delta, directory, meta)
        log.info("Loaded adapter %s (%s) in %.1f ms", name, delta.kind, (time.perf_counter() - started) * 1000)
        return delta

    def know(self, name: str, directory: Path, meta: Any = None) -> None:
        """Serve `name` from `directory`, compiled on first use (start-up with thousands of adapters)."""
        self.adapters.add(name, directory, meta=meta)

    def unregister(self, name: str) -> None:
        self.adapters.remove(name)

    def get(self, name: str | None) -> CompiledDelta | None:
        return None if name is None else self.adapters.get(name)

    def lookup(self, name: str) -> tuple[CompiledDelta, Any]:
        """The compiled adapter and its metadata, of one version (may compile it from disk: call off the event loop)."""
        return self.adapters.lookup(name)

    def meta(self, name: str) -> Any:
        """The metadata `name` is served with (the store's record of its version); None when unknown."""
        return self.adapters.meta(name)

    def names(self) -> list[str]:
        return self.adapters.names()

    # -- generation -------------------------------------------------------------------------------
    def tokenize(self, text: str, special_tokens: bool = True) -> list[int]:
        # By default the tokenizer's defaults, exactly what a PEFT user's `tokenizer(text)` gives; a text made by
        # the chat template carries its special tokens already (special_tokens=False adds none).
        return self.base.tokenizer(text, add_special_tokens=special_tokens)["input_ids"]

    def make_row(
        self,
        text: str,
        delta: CompiledDelta | None,
        params: SamplingParams,
        deadline: float | None = None,
        adapter: str | None = None,
        *,
        special_tokens: bool = True,
        fit_new_tokens: bool = False,
    ) -> RowRequest:
        """One row; `fit_new_tokens`: lower max_new_tokens to what fits beside the prompt (a default, not a
        request's own number, which is refused when it does not fit)."""
        prompt_ids = self.tokenize(text, special_tokens)
        row = RowRequest(prompt_ids=prompt_ids, delta=delta, params=params, deadline=deadline, adapter=adapter)
        extra = row.extra_tokens
        if not prompt_ids and not extra:
            raise InvalidRequest("the text is empty after tokenization")
        room = self.max_tokens_per_row - len(prompt_ids) - extra
        if fit_new_tokens and 0 < room < params.max_new_tokens:
            params = dataclasses.replace(params, max_new_tokens=room)
            row.params = params
        total = len(prompt_ids) + extra + params.max_new_tokens
        if total > self.max_tokens_per_row:
            if self.max_tokens_per_row < self.base.max_positions:
                limit = (
                    f"the {self.max_tokens_per_row} tokens a row may hold in the KV cache (DELTASERVE_KV_CACHE_TOKENS)"
                )
            elif self.base.sliding_window == self.base.max_positions:
                limit = f"the base model's {self.base.max_positions}-token sliding attention window"
            else:
                limit = f"the base model's {self.base.max_positions} positions"
            raise InvalidRequest(
                f"prompt ({len(prompt_ids)} tokens) + virtual tokens ({extra}) + max_new_tokens "
                f"({params.max_new_tokens}) = {total} exceeds {limit}"
            )
        return row

    @property
    def max_tokens_per_row(self) -> int:
        return self.base.max_positions if self.decoder is None else self.decoder.capacity

    def new_batch(self, stats: EngineStats | None = None) -> RunningBatch:
        """An empty running batch that rows can join and leave at token boundaries (the batcher's). It takes
        the static path when that is on and no other batch holds it; close() the batch to give it back."""
        if self.decoder is not None and self.decoder.try_lease():
            return StaticRunningBatch(self.base, self.hooks, stats or self.stats, self._model_lock, self.decoder)
        return RunningBatch(self.base, self.hooks, stats or self.stats, self._model_lock)

    def decode_info(self) -> dict:
        """Which decode path serves the running batch, for /stats."""
        if self.decoder is None:
            return {"path": "eager"}
        return {
            "path": "static+cuda_graphs" if self.decoder.use_graphs else "static",
            "kv_cache_tokens": self.decoder.capacity,
            "slots": self.decoder.slots,
            "graphs_captured": self.decoder.captures,
        }

    def warm_up(self) -> None:
        """Capture the decode graphs before the first request (no-op on the eager path and on CPU)."""
        if self.decoder is not None:
            started = time.perf_counter()
            self.decoder.warm_up()
            log.info("Warm-up took %.1f s", time.perf_counter() - started)

    def generate_rows(self, rows: list[RowRequest]) -> list[GenerationResult]:
        """Run `rows` together to completion (rows may use different deltas)."""
        return generate_batch(self.new_batch(), rows)

    def generate(
        self, texts: list[str], adapter: str | None = None, params: SamplingParams | None = None
    ) -> list[GenerationResult]:
        """Synchronous convenience: one batch, one adapter (or the base model) for every text."""
        delta = self.get(adapter)
        params = params or SamplingParams()
        return self.generate_rows([self.make_row(text, delta, params) for text in texts])
