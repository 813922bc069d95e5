"""Server-Sent Events: one place for the wire format and for starting a stream.

A streamed answer's status is sent with its first event, so a request that fails before producing anything
(a bad adapter, a full queue) must still get its plain 4xx/5xx: `start_stream` waits for the first event
before the response starts, and only errors after that go into the stream as an event. When the client
goes away, Starlette cancels the response, which closes the event iterator; closing the generation's own
iterator drops its rows at the next token boundary.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # and no proxy buffering (nginx)


def streamed_answer(description: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entry of a route whose 200 answer is JSON, or events when the request asks to stream."""
    return {200: {"content": {"text/event-stream": {}}, "description": description}}


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One event; `data` is JSON-encoded unless it is already a string (e.g. OpenAI's "[DONE]")."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


async def start_stream(events: AsyncIterator[bytes], on_error: Callable[[Exception], bytes]) -> StreamingResponse:
    """A streaming response over `events`, started once the first event exists (errors before it raise
    here, as for any request). An error after it becomes the event `on_error` makes, and ends the stream."""
    iterator = aiter(events)
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        first = b""
    except BaseException:
        with contextlib.suppress(Exception):
            await iterator.aclose()  # type: ignore[attr-defined]
        raise

    async def body() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(iterator):  # type: ignore[type-var]
            if first:
                yield first
            try:
                async for event in iterator:
                    yield event
            except Exception as exc:
                yield on_error(exc)

    return StreamingResponse(body(), media_type="text/event-stream", headers=HEADERS)
