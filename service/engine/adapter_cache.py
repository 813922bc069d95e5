"""Where compiled adapters live: a bounded tier on the model's device, a bounded CPU tier, and the disk.

Each known adapter carries its caller's metadata (the store's record: version, prompt template), returned
together with the compiled form by `lookup`, so a reader never pairs one version's delta with another's
metadata. `get(name)` returns the adapter on the model's device: from the device tier (a hit), promoted from the
CPU tier, or compiled from its directory on disk (a cold load). Past `max_device` (and `max_cpu`) the
least recently used unpinned adapter moves down a tier (and off the CPU tier, back to disk only). When the
model runs on the CPU the two tiers are one. Requests that already hold an adapter keep it alive: evicting
only drops the cache's reference.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from service.engine.deltas import CompiledDelta
from service.errors import AdapterNotFound

log = logging.getLogger(__name__)


@dataclass
class AdapterCacheStats:
    hits: int = 0  # already on the model's device
    promotions: int = 0  # moved up from the CPU tier
    loads: int = 0  # compiled from disk (cold)
    evictions: int = 0  # moved off the device tier
    cpu_evictions: int = 0  # dropped from the CPU tier (back to disk only)
    load_ms_total: float = 0.0
    load_ms_last: float = 0.0


@dataclass(frozen=True)
class _Known:
    source: Path | None  # the folder to compile from; None: no files, never evicted
    meta: Any  # the caller's, e.g. the store record of this version


class AdapterCache:
    def __init__(
        self,
        compile_fn: Callable[[Path], CompiledDelta],  # directory -> compiled on the CPU, in the model's dtype
        device: torch.device,
        dtype: torch.dtype,
        max_device: int,
        max_cpu: int,
        cpu_tier: bool | None = None,  # default: only when the device is not the CPU
    ):
        self._compile = compile_fn
        self._device, self._dtype = device, dtype
        self._separate_cpu_tier = device.type != "cpu" if cpu_tier is None else cpu_tier
        self.max_device, self.max_cpu = max_device, max_cpu
        self._known: dict[str, _Known] = {}  # every adapter that can be served
        self._resident: OrderedDict[str, CompiledDelta] = OrderedDict()  # on the device, least recent first
        self._cpu: OrderedDict[str, CompiledDelta] = OrderedDict()
        self._pinned: set[str] = set()
        self._lock = threading.RLock()
        self.stats = AdapterCacheStats()

    # -- registration -----------------------------------------------------------------------------
    def add(self, name: str, source: Path | None, compiled: CompiledDelta | None = None, meta: Any = None) -> None:
        """Know `name` (replacing any previous version); `compiled`, when given, becomes resident now."""
        with self._lock:
            self._forget(name)
            self._known[name] = _Known(None if source is None else Path(source), meta)
            if compiled is not None:
                self._make_resident(name, compiled)

    def remove(self, name: str) -> None:
        with self._lock:
            self._forget(name)
            self._known.pop(name, None)
            self._pinned.discard(name)

    def pin(self, name: str) -> None:
        with self._lock:
            self._require(name)
            self._pinned.add(name)

    def unpin(self, name: str) -> None:
        with self._lock:
            self._pinned.discard(name)

    # -- lookup -----------------------------------------------------------------------------------
    def lookup(self, name: str) -> tuple[CompiledDelta, Any]:
        """The adapter on the model's device and its metadata, of one and the same version."""
        with self._lock:
            return self.get(name), self._known[name].meta

    def get(self, name: str) -> CompiledDelta:
        with self._lock:
            self._require(name)
            if name in self._resident:
                self._resident.move_to_end(name)
                self.stats.hits += 1
                return self._resident[name]
            if name in self._cpu:
                self.stats.promotions += 1
                return self._make_resident(name, self._cpu.pop(name))
            started = time.perf_counter()
            source = self._known[name].source
            assert source is not None  # adapters without files are never evicted, so always resident
            compiled = self._compile(source)
            elapsed = (time.perf_counter() - started) * 1000
            self.stats.loads += 1
            self.stats.load_ms_total += elapsed
            self.stats.load_ms_last = elapsed
            log.info("Loaded adapter %s (%s) from disk in %.1f ms", name, compiled.kind, elapsed)
            return self._make_resident(name, compiled)

    def meta(self, name: str) -> Any:
        """The metadata `name` was added with (None when it is unknown)."""
        with self._lock:
            known = self._known.get(name)
            return None if known is None else known.meta

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._known)

    def snapshot(self) -> dict:
        with self._lock:
            return {
                **asdict(self.stats),
                "known": len(self._known),
                "resident": list(self._resident),
                "cpu": list(self._cpu),
                "pinned": sorted(self._pinned),
                "max_device": self.max_device,
                "max_cpu": self.max_cpu if self._separate_cpu_tier else 0,
            }

    # -- tiers ------------------------------------------------------------------------------------
    def _require(self, name: str) -> None:
        if name not in self._known:
            raise AdapterNotFound(f"no adapter named '{name}'")

    def _forget(self, name: str) -> None:
        self._resident.pop(name, None)
        self._cpu.pop(name, None)

    def _make_resident(self, name: str, compiled: CompiledDelta) -> CompiledDelta:
        on_device = compiled.to(self._device, self._dtype)
        self._resident[name] = on_device
        self._evict()
        return on_device

    def _evictable(self, tier: OrderedDict) -> str | None:
        # Adapters with no files on disk could not come back, so they stay like pinned ones.
        return next((n for n in tier if n not in self._pinned and self._known[n].source is not None), None)

    def _evict(self) -> None:
        while len(self._resident) > self.max_device and (name := self._evictable(self._resident)):
            compiled = self._resident.pop(name)
            self.stats.evictions += 1
            if self._separate_cpu_tier and self.max_cpu > 0:
                self._cpu[name] = compiled.to(torch.device("cpu"), self._dtype)
        while len(self._cpu) > self.max_cpu and (name := self._evictable(self._cpu)):
            self._cpu.pop(name)
            self.stats.cpu_evictions += 1
