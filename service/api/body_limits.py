"""Request bodies are bounded in size and in how slowly they may arrive, before any route sees them.

A pure ASGI middleware, so it works under any server (uvicorn, Ray Serve). JSON requests are read here in
full (at most `max_request_bytes`), so a route never parses more than that; an adapter upload (up to
`max_upload_bytes`, streamed to disk by its route) is counted while it streams, so a chunked body with no
Content-Length stops at the limit too. Either way a client that pauses longer than `body_timeout_s` between
two parts of its body gets 408.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import OPENAI_PREFIX, error_response
from service.config import Settings
from service.errors import DeltaServeError, PayloadTooLarge, RequestTimeout

# Multipart framing (boundaries, part headers, the description and template fields) on top of the files.
UPLOAD_FRAMING_BYTES = 256 * 1024


def _is_upload(scope: Scope) -> bool:
    return scope["method"] == "PUT" and scope["path"].startswith("/adapters/")


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimits:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.json_limit = settings.max_request_bytes
        self.upload_limit = settings.max_upload_bytes + UPLOAD_FRAMING_BYTES
        self.timeout = settings.body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = _is_upload(scope)
        limit = self.upload_limit if upload else self.json_limit
        too_large = (PayloadTooLarge.upload(self.upload_limit - UPLOAD_FRAMING_BYTES) if upload else PayloadTooLarge(
            f"the request body is larger than the {limit} bytes allowed (DELTASERVE_MAX_REQUEST_BYTES)"))
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(send, too_large, scope["path"])
            return
        if upload:  # streamed by the route: count and time it as it goes
            await self.app(scope, _counting(receive, limit, too_large, self.timeout), send)
            return
        try:
            body, rest = await self._read_all(receive, limit, too_large)
        except DeltaServeError as exc:
            await self._refuse(send, exc, scope["path"])
            return
        if body is None:  # the client went away while sending
            return
        await self.app(scope, _replaying(body, rest), send)

    async def _read_all(self, receive: Receive, limit: int, too_large: PayloadTooLarge) -> tuple[bytes | None, Receive]:
        chunks, size = [], 0
        while True:
            message = await _within(receive(), self.timeout)
            if message["type"] == "http.disconnect":
                return None, receive
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), receive

    @staticmethod
    async def _refuse(send: Send, error: DeltaServeError, path: str) -> None:
        response = error_response(error.status, error.code, error.message, {"Connection": "close"},
                                  openai=path.startswith(OPENAI_PREFIX))
        await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


async def _within(message: Awaitable[Message], timeout: float) -> Message:
    try:
        return await asyncio.wait_for(message, timeout)
    except asyncio.TimeoutError:
        raise RequestTimeout(
            f"the client paused more than {timeout:g} s while sending the body (DELTASERVE_BODY_TIMEOUT_S)"
        ) from None


def _counting(
    receive: Receive, limit: int, too_large: PayloadTooLarge, timeout: float
) -> Callable[[], Awaitable[Message]]:
    size = 0
    finished = False

    async def counted() -> Message:
        nonlocal size, finished
        if finished:  # after the body only a disconnect can come, whenever it comes
            return await receive()
        message = await _within(receive(), timeout)
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise too_large
            finished = not message.get("more_body", False)
        return message

    return counted


def _replaying(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for a disconnect, as the route's watcher expects

    return replay
