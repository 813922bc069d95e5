"""Asyncio-facing dynamic batcher: concurrent requests -> forward batches on one model thread.

Policy: oldest first. A batch starts from the oldest waiting request and takes up to `max_batch_size`
requests in arrival order: from the whole queue when `mixed_batches` (rows may use different adapters;
the engine applies a delta per row), else only requests for the oldest request's adapter. Serving by age
means a busy adapter cannot starve a quiet one. A batch waits at most `max_batch_wait_ms` (counted from
its oldest request) to fill up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.engine.batch import RowRequest
from service.engine.engine import Engine
from service.engine.generate import GenerationResult
from service.engine.sampling import SamplingParams
from service.errors import EngineUnavailable

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    row: RowRequest
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> int:
        # Batching key: the compiled delta object itself, so two versions of one adapter never share a batch.
        return 0 if self.row.delta is None else id(self.row.delta)


class Batcher:
    def __init__(self, engine: Engine, *, max_batch_size: int = 16, max_batch_wait_ms: float = 5.0, mixed_batches: bool = True):
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_batch_wait = max_batch_wait_ms / 1000.0
        self.mixed_batches = mixed_batches
        self._queue: list[_Waiting] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deltaserve-model")

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="deltaserve-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for waiting in self._queue:
            if not waiting.future.done():
                waiting.future.set_exception(EngineUnavailable("the server is shutting down"))
        self._queue.clear()
        self._executor.shutdown(wait=True)

    # -- requests ---------------------------------------------------------------------------------
    async def submit(self, row: RowRequest) -> GenerationResult:
        if self._task is None:
            raise EngineUnavailable("the batcher is not running")
        waiting = _Waiting(row=row, future=asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        self._arrived.set()
        return await waiting.future

    async def generate(self, text: str, adapter: str | None, params: SamplingParams) -> GenerationResult:
        # The adapter name is resolved now: a replacement uploaded later does not affect this request.
        row = self.engine.make_row(text, self.engine.get(adapter), params)
        return await self.submit(row)

    # -- the loop ---------------------------------------------------------------------------------
    def _candidates(self) -> list[_Waiting]:
        if self.mixed_batches:
            return self._queue[: self.max_batch_size]
        key = self._queue[0].key
        return [w for w in self._queue if w.key == key][: self.max_batch_size]

    async def _wait_to_fill(self) -> None:
        deadline = self._queue[0].enqueued + self.max_batch_wait
        while len(self._candidates()) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._wait_to_fill()
            batch = self._candidates()
            taken = set(map(id, batch))
            self._queue = [w for w in self._queue if id(w) not in taken]
            batch = [w for w in batch if not w.future.done()]  # the caller went away
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self.engine.generate_rows, [w.row for w in batch])
            except Exception as exc:  # one broken batch must not take the server down
                log.exception("batch of %d rows failed", len(batch))
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
                continue
            for waiting, result in zip(batch, results):
                if not waiting.future.done():
                    waiting.future.set_result(result)
