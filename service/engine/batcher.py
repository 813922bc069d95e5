"""Asyncio-facing continuous batcher: concurrent requests -> one running batch on one model thread.

Rows join the running batch at token boundaries and leave as soon as they finish, so a long generation
never holds short ones back. Policy: oldest first. Free places in the running batch (up to
`max_batch_size`) go to the oldest waiting requests: from the whole queue when `mixed_batches` (rows may
use different adapters; the engine applies a delta per row); otherwise only requests for the running
batch's adapter join, and once the oldest waiting request wants another adapter nothing more joins, so
the batch drains and that adapter goes next. Serving by age means a busy adapter cannot starve a quiet one.
An idle batcher waits at most `max_batch_wait_ms` (from the oldest request) for a batch to fill up.

A caller either awaits a row's result (`submit`) or also receives its output token by token as the batch
produces it (`stream`). The model runs on its own thread; everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.engine.batch import RowRequest
from service.engine.decode_loop import RunningBatch
from service.engine.engine import Engine
from service.engine.rows import GenerationResult, RowState, StreamDelta
from service.errors import DeadlineExceeded, EngineUnavailable

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Ticket:
    """One queued or running row, as its caller and the batcher see it."""

    row: RowRequest
    future: asyncio.Future  # the final GenerationResult, or the row's own error
    deltas: asyncio.Queue | None = None  # streaming callers: StreamDelta items, then None when the row ends
    enqueued: float = field(default_factory=time.monotonic)
    started: float | None = None  # when its first token was chosen
    last_token: float | None = None

    @property
    def key(self) -> int:
        # Batching key: the compiled version, so two versions of one adapter never share a by-adapter batch.
        return 0 if self.row.delta is None else self.row.delta.uid

    def cancelled(self) -> bool:
        return self.future.cancelled()


class BatchObserver:
    """What the batcher reports as it goes (metrics implement it); these defaults ignore everything."""

    def step(self, rows: int) -> None:
        """A forward pass over `rows` rows is about to run (a decode step)."""

    def tokens(self, ticket: Ticket, count: int, now: float) -> None:
        """`count` more tokens of `ticket`'s row were chosen at `now` (ticket.started/last_token are before)."""

    def finished(self, ticket: Ticket, state: RowState, now: float) -> None:
        """The row ended (any finish reason, errors included)."""


class Batcher:
    def __init__(self, engine: Engine, *, max_batch_size: int = 16, max_batch_wait_ms: float = 5.0,
                 mixed_batches: bool = True, observer: BatchObserver | None = None):
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_batch_wait = max_batch_wait_ms / 1000.0
        self.mixed_batches = mixed_batches
        self.observer = observer or BatchObserver()
        self._queue: list[Ticket] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._running: RunningBatch | None = None  # the running batch, once the loop has started
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deltaserve-model")
        self.cancelled_waiting = 0  # rows whose callers went away before they joined the running batch

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="deltaserve-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for ticket in self._queue:
            self._fail(ticket, EngineUnavailable("the server is shutting down"))
        self._queue.clear()
        self._executor.shutdown(wait=True)
        if self._running is not None:
            for state in self._running.states:
                self._fail(state.ticket, EngineUnavailable("the server is shutting down"))
            self._running.close()  # give the static path back to the engine
            self._running = None

    # -- requests ---------------------------------------------------------------------------------
    def _enqueue(self, row: RowRequest, streaming: bool) -> Ticket:
        if self._task is None:
            raise EngineUnavailable("the batcher is not running")
        ticket = Ticket(row=row, future=asyncio.get_running_loop().create_future(),
                        deltas=asyncio.Queue() if streaming else None)
        self._queue.append(ticket)
        self._arrived.set()
        return ticket

    async def submit(self, row: RowRequest) -> GenerationResult:
        return await self._enqueue(row, streaming=False).future

    async def stream(self, row: RowRequest) -> AsyncGenerator[StreamDelta | GenerationResult, None]:
        """The row's output as it is produced (StreamDelta items), then its GenerationResult. Leaving the
        iteration early (the client went away) drops the row at the next token boundary."""
        ticket = self._enqueue(row, streaming=True)
        assert ticket.deltas is not None
        try:
            while True:
                getting = asyncio.ensure_future(ticket.deltas.get())
                try:
                    await asyncio.wait({getting, ticket.future}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not getting.done():
                        getting.cancel()
                if getting.done() and not getting.cancelled():
                    delta = getting.result()
                    if delta is not None:
                        yield delta
                        continue
                if ticket.future.done():
                    while not ticket.deltas.empty():  # deltas queued before the end, never dropped
                        if (delta := ticket.deltas.get_nowait()) is not None:
                            yield delta
                    yield ticket.future.result()  # raises the row's error, if it failed
                    return
        finally:
            if not ticket.future.done():
                ticket.future.cancel()

    async def generate(self, text: str, adapter: str | None, params) -> GenerationResult:
        # The adapter name is resolved now: a replacement uploaded later does not affect this request.
        row = self.engine.make_row(text, self.engine.get(adapter), params)
        return await self.submit(row)

    def queued(self) -> int:
        """Rows waiting to join the running batch."""
        return len(self._queue)

    def running(self) -> int:
        """Rows in the running batch."""
        return 0 if self._running is None else len(self._running)

    def rows_by_adapter(self) -> dict[str, dict[str | None, int]]:
        """Waiting and running rows per adapter name (None = the base model)."""
        counts: dict[str, dict[str | None, int]] = {"waiting": {}, "running": {}}
        for ticket in self._queue:
            counts["waiting"][ticket.row.adapter] = counts["waiting"].get(ticket.row.adapter, 0) + 1
        for state in self._running.states if self._running is not None else []:
            counts["running"][state.row.adapter] = counts["running"].get(state.row.adapter, 0) + 1
        return counts

    # -- the loop ---------------------------------------------------------------------------------
    def _joining(self, running_key: int | None, free: int) -> list[Ticket]:
        if self.mixed_batches:
            return self._queue[:free]
        key = self._queue[0].key
        if running_key is not None and key != running_key:
            return []  # let the running batch drain: the oldest waiting request wants another adapter
        return [t for t in self._queue if t.key == key][:free]

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

    async def _model(self, fn: Callable, *args):
        def call():
            try:
                return fn(*args)
            except StopIteration as exc:  # asyncio cannot carry StopIteration across a future: it would hang
                raise RuntimeError(f"the model thread raised {exc!r}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _expire_queued(self, now: float) -> None:
        for ticket in self._queue:
            deadline = ticket.row.deadline
            if deadline is not None and now >= deadline:
                self._fail(ticket, DeadlineExceeded(
                    "the request waited past its deadline (DELTASERVE_REQUEST_TIMEOUT_S) without starting"))

    async def _run(self) -> None:
        running = self._running = self.engine.new_batch()
        running_key: int | None = None  # by-adapter mode: the adapter key of the running rows
        while True:
            self._expire_queued(time.monotonic())
            self.cancelled_waiting += sum(t.cancelled() for t in self._queue)
            self._queue = [t for t in self._queue if not t.future.done()]  # callers that went away, expired rows
            if not len(running) and not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            joining: list[Ticket] = []
            try:
                free = min(self.max_batch_size - len(running), running.free_rows())
                if self._queue and free > 0:
                    if not len(running):
                        running_key = None
                        await self._wait_to_fill()
                    joining = self._joining(running_key, free)
                    if joining:
                        taken = set(map(id, joining))
                        self._queue = [t for t in self._queue if id(t) not in taken]
                        running_key = joining[0].key
                        finished = await self._model(running.admit, [t.row for t in joining], joining)
                        self._report(running.states, finished)
                gone = [state for state in running.states if state.ticket.cancelled()]
                if gone:  # their callers went away (e.g. the HTTP client disconnected): stop spending steps
                    await self._model(running.finish_early, gone, "cancelled")
                    self._report([], gone)
                now = time.monotonic()
                late = [s for s in running.states if s.row.deadline is not None and now >= s.row.deadline]
                if late:  # past their deadline: they end now with what they have
                    await self._model(running.finish_early, late, "timeout")
                    self._report([], late)
                if len(running):
                    self.observer.step(len(running))
                    finished = await self._model(running.step)
                    self._report(running.states, finished)
            except Exception as exc:  # one broken batch must not take the server down
                log.exception("the running batch failed")
                for state in running.states:
                    self._fail(state.ticket, exc)
                for ticket in joining:
                    self._fail(ticket, exc)
                running.close()
                running = self._running = self.engine.new_batch()

    def _report(self, running: list[RowState], finished: list[RowState]) -> None:
        """After a forward pass: new tokens to streaming callers and the observer; results to finished rows."""
        now = time.monotonic()
        for state in [*running, *finished]:
            ticket: Ticket = state.ticket
            new_tokens = len(state.tokens) - state.emitted_tokens
            if new_tokens > 0:
                self.observer.tokens(ticket, new_tokens, now)
                if ticket.started is None:
                    ticket.started = now
                ticket.last_token = now
            if ticket.deltas is not None and not ticket.future.done():
                if (delta := state.take_delta()) is not None:
                    ticket.deltas.put_nowait(delta)
            else:
                state.emitted_tokens = len(state.tokens)
        for state in finished:
            ticket = state.ticket
            self.observer.finished(ticket, state, now)
            if ticket.future.done():
                continue
            if state.error is not None:  # this row failed alone; the batch went on
                ticket.future.set_exception(state.error)
            else:
                ticket.future.set_result(state.result())
            if ticket.deltas is not None:
                ticket.deltas.put_nowait(None)

    @staticmethod
    def _fail(ticket: Ticket, error: BaseException) -> None:
        if not ticket.future.done():
            ticket.future.set_exception(error)
        if ticket.deltas is not None:
            ticket.deltas.put_nowait(None)
