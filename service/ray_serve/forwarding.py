"""An HTTP request as plain data, and replaying it into an ASGI app in this process.

The router reads a request once (to learn its adapter), then hands it to a replica as a `ForwardedRequest`. The
replica runs it through its own FastAPI app, the very app a single process serves, so routes, errors, limits and
auth are the same. The answer comes back as a `ResponseStart` and then body chunks, as the app sends them, so
streams stay streams.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from starlette.types import ASGIApp, Message

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class ForwardedRequest:
    method: str
    path: str
    query_string: bytes
    headers: Headers
    body: bytes
    client: tuple[str, int] | None = None


@dataclass(frozen=True)
class ResponseStart:
    status: int
    headers: Headers


@dataclass(frozen=True)
class ForwardedResponse:
    """A whole answer (for calls that need no streaming: every replica's /stats)."""

    replica: str
    status: int
    headers: Headers
    body: bytes


def scope_of(request: ForwardedRequest) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode("utf-8"),
        "query_string": request.query_string,
        "root_path": "",
        "headers": list(request.headers),
        "client": request.client,
        "server": ("deltaserve-replica", 0),
        "state": {},
    }


async def call_app(app: ASGIApp, request: ForwardedRequest) -> AsyncGenerator[ResponseStart | bytes, None]:
    """Run `request` through `app`: its ResponseStart, then each non-empty body chunk. Closing the iterator early
    (the client went away) tells the app the client disconnected, as a server would."""
    sent: asyncio.Queue[Message] = asyncio.Queue()
    body_sent = False
    disconnected = asyncio.Event()

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await sent.put(message)

    async def run() -> None:
        try:
            await app(scope_of(request), receive, send)
        finally:
            await sent.put({"type": "app.finished"})

    task = asyncio.ensure_future(run())
    try:
        while True:
            message = await sent.get()
            kind = message["type"]
            if kind == "http.response.start":
                yield ResponseStart(message["status"], [(bytes(k), bytes(v)) for k, v in message.get("headers", [])])
            elif kind == "http.response.body":
                if message.get("body"):
                    yield bytes(message["body"])
                if not message.get("more_body", False):
                    break
            elif kind == "app.finished":
                await task  # raises what the app raised
                raise RuntimeError("the app finished without a complete answer")
    finally:
        disconnected.set()
        if not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=5)
            except asyncio.TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        elif not task.cancelled():
            task.exception()  # retrieved: an app that failed after its answer was logged by the app itself


async def call_app_whole(app: ASGIApp, request: ForwardedRequest, replica: str) -> ForwardedResponse:
    start: ResponseStart | None = None
    chunks: list[bytes] = []
    async with contextlib.aclosing(call_app(app, request)) as parts:
        async for part in parts:
            if isinstance(part, ResponseStart):
                start = part
            else:
                chunks.append(part)
    assert start is not None
    return ForwardedResponse(replica, start.status, start.headers, b"".join(chunks))
