"""Completing requests: limits, the adapter and its template, tokenizing, queueing rows on the batcher.

The event loop only does I/O here: resolving an adapter (which may compile it from disk), templating and
tokenizing run in worker threads, and the model runs on the batcher's own thread. Every input is bounded
before any work is spent on it: characters before tokenizing, tokens before queueing, and the number of
requests in flight (admission).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from service.admission import Admission, Lease
from service.config import Settings
from service.engine import Engine, GenerationResult, SamplingParams
from service.engine.batch import RowRequest
from service.engine.batcher import Batcher
from service.engine.rows import StreamDelta
from service.errors import InvalidRequest, check_encodable
from service.registry import AdapterRegistry, ResolvedAdapter

Params = SamplingParams | Sequence[SamplingParams]  # one for every row, or one per row


@dataclass(frozen=True)
class RowOptions:
    special_tokens: bool = True  # the tokenizer adds its special tokens (False: the text has them, e.g. chat)
    fit_new_tokens: bool = False  # max_new_tokens is a default: lower it to what fits beside the prompt


def _per_row(params: Params, rows: int) -> list[SamplingParams]:
    if isinstance(params, SamplingParams):
        return [params] * rows
    if len(params) != rows:
        raise ValueError(f"{len(params)} sampling parameters for {rows} rows")
    return list(params)


def _tokens(rows: list[RowRequest]) -> int:
    """What the rows may hold at most: prompt, virtual tokens, and every new token they may make."""
    return sum(len(row.prompt_ids) + row.extra_tokens + row.params.max_new_tokens for row in rows)


class Inference:
    def __init__(self, settings: Settings, registry: AdapterRegistry, engine: Engine, batcher: Batcher,
                 admission: Admission):
        self.settings = settings
        self.registry = registry
        self.engine = engine
        self.batcher = batcher
        self.admission = admission

    # -- checks that cost nothing (run them before any other work) ---------------------------------
    def check_params(self, params: SamplingParams, where: str = "max_new_tokens") -> None:
        limit = self.settings.max_new_tokens_limit
        if params.max_new_tokens > limit:
            raise InvalidRequest(
                f"{where} may be at most {limit} (DELTASERVE_MAX_NEW_TOKENS_LIMIT), not {params.max_new_tokens}"
            )

    def check_text(self, text: str, where: str = "text") -> None:
        self.check_chars(len(text), where)
        check_encodable(text, where)

    def check_chars(self, chars: int, where: str) -> None:
        limit = self.settings.max_input_chars
        if chars > limit:
            raise InvalidRequest(
                f"{where} has {chars} characters, more than the {limit} allowed (DELTASERVE_MAX_INPUT_CHARS)"
            )

    def deadline(self) -> float:
        return time.monotonic() + self.settings.request_timeout_s

    def _check_request(self, texts: Sequence[str], params: Params) -> None:
        for row_params in _per_row(params, len(texts)):
            self.check_params(row_params)
        for index, text in enumerate(texts):
            self.check_text(text, "text" if len(texts) == 1 else f"texts[{index}]")

    # -- requests -----------------------------------------------------------------------------------
    async def generate(
        self, adapter: str | None, texts: Sequence[str], params: Params, options: RowOptions = RowOptions()
    ) -> list[GenerationResult]:
        """One request: every text with one adapter (or the base model), each text a row of the shared batch.
        `params` is one SamplingParams for every row or one per text."""
        self._check_request(texts, params)
        with self.admission.lease() as lease:
            return await self.run(adapter, texts, params, lease=lease, deadline=self.deadline(), options=options)

    async def run(
        self,
        adapter: str | None,
        texts: Sequence[str],
        params: Params,
        *,
        lease: Lease,
        deadline: float,
        refuse_when_full: bool = True,
        options: RowOptions = RowOptions(),
    ) -> list[GenerationResult]:
        """Rows for `texts` under an admitted request's `lease`. Their tokens count against the token bound
        while they run; `refuse_when_full=False` (the steps of an admitted pipeline) counts them without
        refusing, so an admitted pipeline is never cut off halfway."""
        resolved = await asyncio.to_thread(self.registry.resolve, adapter)
        rows = await asyncio.to_thread(self._rows, resolved, texts, params, deadline, options)
        tokens = _tokens(rows)
        lease.add_tokens(tokens, refuse=refuse_when_full)
        try:
            return await self._submit_all(rows)
        finally:
            lease.give_back_tokens(tokens)

    async def stream(
        self, adapter: str | None, texts: Sequence[str], params: Params, options: RowOptions = RowOptions()
    ) -> AsyncGenerator[tuple[int, StreamDelta | GenerationResult], None]:
        """One request, streamed: `(row index, StreamDelta)` as each row's output grows, `(row index,
        GenerationResult)` when a row ends. A row's failure raises its error. Closing the iterator early (the
        client went away) drops the request's rows at the next token boundary."""
        self._check_request(texts, params)
        with self.admission.lease() as lease:
            async with contextlib.aclosing(
                self.stream_rows(adapter, texts, params, lease=lease, deadline=self.deadline(), options=options)
            ) as items:
                async for item in items:
                    yield item

    async def stream_rows(
        self,
        adapter: str | None,
        texts: Sequence[str],
        params: Params,
        *,
        lease: Lease,
        deadline: float,
        refuse_when_full: bool = True,
        options: RowOptions = RowOptions(),
    ) -> AsyncGenerator[tuple[int, StreamDelta | GenerationResult], None]:
        """`run`, streamed: rows for `texts` under an admitted request's `lease` (see `stream`)."""
        resolved = await asyncio.to_thread(self.registry.resolve, adapter)
        rows = await asyncio.to_thread(self._rows, resolved, texts, params, deadline, options)
        tokens = _tokens(rows)
        lease.add_tokens(tokens, refuse=refuse_when_full)
        merged: asyncio.Queue = asyncio.Queue()

        async def forward(index: int, row: RowRequest) -> None:
            try:
                async with contextlib.aclosing(self.batcher.stream(row)) as items:
                    async for item in items:
                        merged.put_nowait((index, item))
            except Exception as exc:
                merged.put_nowait((index, exc))

        tasks = [asyncio.ensure_future(forward(i, row)) for i, row in enumerate(rows)]
        try:
            ended = 0
            while ended < len(rows):
                index, item = await merged.get()
                if isinstance(item, Exception):
                    raise item
                ended += isinstance(item, GenerationResult)
                yield index, item
        finally:
            for task in tasks:  # a row failed or the caller went away: every row of the request stops
                task.cancel()
            lease.give_back_tokens(tokens)

    def _rows(
        self, resolved: ResolvedAdapter, texts: Sequence[str], params: Params, deadline: float, options: RowOptions
    ) -> list[RowRequest]:
        return [
            self.engine.make_row(
                resolved.apply_template(text),
                resolved.delta,
                row_params,
                deadline,
                resolved.name,
                special_tokens=options.special_tokens,
                fit_new_tokens=options.fit_new_tokens,
            )
            for text, row_params in zip(texts, _per_row(params, len(texts)))
        ]

    async def _submit_all(self, rows: list[RowRequest]) -> list[GenerationResult]:
        tasks = [asyncio.ensure_future(self.batcher.submit(row)) for row in rows]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:  # one row failed or the caller went away: its siblings stop too
                task.cancel()
