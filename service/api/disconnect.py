"""Stop spending model steps on a request whose client has gone away.

Starlette does not cancel a handler when its client disconnects, so a long generation would run to its
token limit for nobody. The handler's work runs as a task while the connection is watched; on disconnect
the task is cancelled, which cancels its batcher futures, and the batcher drops those rows (queued or
running) at the next token boundary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from service.errors import ClientDisconnected

T = TypeVar("T")

POLL_SECONDS = 0.25


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientDisconnected("the client disconnected; its generation was stopped")
    finally:
        if not task.done():
            task.cancel()
