"""Asyncio-facing continuous batcher: concurrent requests -> one running batch on one model thread.

Rows join the running batch at token boundaries and leave as soon as they finish, so a long generation
never holds short ones back. Policy: oldest first. Free places in the running batch (up to
`max_batch_size`) go to the oldest waiting requests: from the whole queue when `mixed_batches` (rows may
use different adapters; the engine applies a delta per row); otherwise only requests for the running
batch's adapter join, and once the oldest waiting request wants another adapter nothing more joins, so
the batch drains and that adapter goes next. Serving by age means a busy adapter cannot starve a quiet one.
An idle batcher waits at most `max_batch_wait_ms` (from the oldest request) for a batch to fill up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.engine.batch import RowRequest
from service.engine.engine import Engine
from service.engine.rows import GenerationResult
from service.engine.sampling import SamplingParams
from service.errors import DeadlineExceeded, EngineUnavailable

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    row: RowRequest
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> int:
        # Batching key: the compiled version, so two versions of one adapter never share a by-adapter batch.
        return 0 if self.row.delta is None else self.row.delta.uid


class Batcher:
    def __init__(self, engine: Engine, *, max_batch_size: int = 16, max_batch_wait_ms: float = 5.0, mixed_batches: bool = True):
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_batch_wait = max_batch_wait_ms / 1000.0
        self.mixed_batches = mixed_batches
        self._queue: list[_Waiting] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._running = None  # the running batch, once the loop has started
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
        if self._running is not None:
            self._running.close()  # give the static path back to the engine
            self._running = None

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
    def _joining(self, running_key: int | None, free: int) -> list[_Waiting]:
        if self.mixed_batches:
            return self._queue[:free]
        key = self._queue[0].key
        if running_key is not None and key != running_key:
            return []  # let the running batch drain: the oldest waiting request wants another adapter
        return [w for w in self._queue if w.key == key][:free]

    async def _wait_to_fill(self) -> None:
        deadline = self._queue[0].enqueued + self.max_batch_wait
        while len(self._joining(None, self.max_batch_size)) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return

    async def _model(self, fn, *args):
        def call():
            try:
                return fn(*args)
            except StopIteration as exc:  # asyncio cannot carry StopIteration across a future: it would hang
                raise RuntimeError(f"the model thread raised {exc!r}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def queued(self) -> int:
        """Rows waiting to join the running batch."""
        return len(self._queue)

    def running(self) -> int:
        """Rows in the running batch."""
        return 0 if self._running is None else len(self._running)

    def _expire_queued(self, now: float) -> None:
        for waiting in self._queue:
            deadline = waiting.row.deadline
            if deadline is not None and now >= deadline and not waiting.future.done():
                waiting.future.set_exception(
                    DeadlineExceeded("the request waited past its deadline (DELTASERVE_REQUEST_TIMEOUT_S) without starting")
                )

    async def _run(self) -> None:
        running = self._running = self.engine.new_batch()
        running_key: int | None = None  # by-adapter mode: the adapter key of the running rows
        while True:
            self._expire_queued(time.monotonic())
            self._queue = [w for w in self._queue if not w.future.done()]  # callers that went away, expired rows
            if not len(running) and not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            try:
                free = min(self.max_batch_size - len(running), running.free_rows())
                if self._queue and free > 0:
                    if not len(running):
                        running_key = None
                        await self._wait_to_fill()
                    joining = self._joining(running_key, free)
                    if joining:
                        taken = set(map(id, joining))
                        self._queue = [w for w in self._queue if id(w) not in taken]
                        running_key = joining[0].key
                        self._resolve(await self._model(running.admit, [w.row for w in joining], [w.future for w in joining]))
                gone = [state for state in running.states if state.ticket.cancelled()]
                if gone:  # their callers went away (e.g. the HTTP client disconnected): stop spending steps
                    await self._model(running.finish_early, gone, "cancelled")
                now = time.monotonic()
                late = [s for s in running.states if s.row.deadline is not None and now >= s.row.deadline]
                if late:  # past their deadline: they end now with what they have
                    await self._model(running.finish_early, late, "timeout")
                    self._resolve(late)
                if len(running):
                    self._resolve(await self._model(running.step))
            except Exception as exc:  # one broken batch must not take the server down
                log.exception("the running batch failed")
                for state in running.states:
                    if not state.ticket.done():
                        state.ticket.set_exception(exc)
                for waiting in locals().get("joining") or []:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
                running.close()
                running = self._running = self.engine.new_batch()

    @staticmethod
    def _resolve(finished) -> None:
        for state in finished:
            if state.ticket.done():
                continue
            if state.error is not None:  # this row failed alone; the batch went on
                state.ticket.set_exception(state.error)
            else:
                state.ticket.set_result(state.result())
