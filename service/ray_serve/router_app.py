"""The router's ASGI app: read a request once, learn its adapter, and relay it to a replica where that adapter is
warm (Serve's multiplexed routing), streaming the answer back as the replica sends it.

It answers nothing itself but two things a single replica cannot: a replica that died under a request (503
`replica_failed`, or an error event on a started stream; never a hang, never a truncated answer passed off as
whole), and the per-replica views `GET /replicas/stats` and `GET /replicas/metrics`, fanned out to every replica
with the caller's own credentials (each replica checks them as a single process would).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import ray.exceptions
from starlette.types import Message, Receive, Scope, Send

from service.api.errors import OPENAI_PREFIX, error_response
from service.api.sse import sse_event
from service.config import Settings
from service.errors import DeltaServeError, PipelineNotFound, ReplicaFailed, RequestTimeout
from service.ray_serve.forwarding import ForwardedRequest, ForwardedResponse, ResponseStart
from service.ray_serve.merged_metrics import merge_expositions
from service.ray_serve.routing import routing_key
from service.store import PipelineDocuments

log = logging.getLogger(__name__)

REPLICA_HEADER = b"x-deltaserve-replica"
FAN_OUT = {"/replicas/stats": "/stats", "/replicas/metrics": "/metrics"}
RECORD_FILE = "record.json"


class RouterApp:
    def __init__(self, engine: Any, settings: Settings):
        self.engine = engine  # the EngineReplica deployment's handle
        self.settings = settings
        self.store_root = Path(settings.adapters_dir)
        # Reads only (definitions of named pipelines, to route them by their first adapter): no writer's lock.
        self.pipelines = PipelineDocuments(self.store_root / ".pipelines", contextlib.nullcontext())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            body = await self._read_body(receive, method, path)
        except DeltaServeError as exc:
            await self._refuse(scope, receive, send, exc)
            return
        if body is None:
            return  # the client left while sending
        request = ForwardedRequest(method, path, scope.get("query_string", b""), list(scope.get("headers", [])),
                                   body, scope.get("client"))
        if method == "GET" and path in FAN_OUT:
            await self._fan_out(scope, receive, send, request, FAN_OUT[path])
            return
        key = await asyncio.to_thread(routing_key, method, path, body, adapter_exists=self._adapter_exists,
                                      pipeline_steps=self._pipeline_steps)
        await self._relay(scope, receive, send, request, key)

    # -- reading ----------------------------------------------------------------------------------
    async def _read_body(self, receive: Receive, method: str, path: str) -> bytes | None:
        """The body, bounded: past the route's limit one byte more is kept, so the replica's own check answers the
        413 exactly as a single process does; a client pausing past BODY_TIMEOUT_S gets the same 408."""
        upload = method == "PUT" and path.startswith("/adapters/")
        limit = self.settings.max_upload_bytes if upload else self.settings.max_request_bytes
        chunks, size = [], 0
        while True:
            try:
                message: Message = await asyncio.wait_for(receive(), self.settings.body_timeout_s)
            except asyncio.TimeoutError:
                raise RequestTimeout(f"the client paused more than {self.settings.body_timeout_s:g} s while sending "
                                     "the body (DELTASERVE_BODY_TIMEOUT_S)") from None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk[: limit + 1 - size])
            size += len(chunks[-1])
            if size > limit or not message.get("more_body", False):
                return b"".join(chunks)

    def _adapter_exists(self, name: str) -> bool:
        return (self.store_root / name / RECORD_FILE).is_file()

    def _pipeline_steps(self, name: str) -> object:
        try:
            return self.pipelines.get(name).get("steps")
        except PipelineNotFound:
            return None

    # -- relaying ---------------------------------------------------------------------------------
    async def _relay(self, scope: Scope, receive: Receive, send: Send, request: ForwardedRequest,
                     key: str | None) -> None:
        parts = self.engine.options(stream=True, multiplexed_model_id=key or "").forward.remote(request)
        start: ResponseStart | None = None
        sent_start = False
        try:
            async for part in parts:
                if isinstance(part, ResponseStart):
                    start = part  # held until the first chunk: a replica lost before it still gets a clean 503
                    continue
                if not sent_start:
                    await self._send_start(send, start)
                    sent_start = True
                await send({"type": "http.response.body", "body": part, "more_body": True})
        except ray.exceptions.RayError as exc:
            failure = _failure(exc)
            if not sent_start:
                await self._refuse(scope, receive, send, failure)
                return
            if start is not None and _is_event_stream(start):
                await send({"type": "http.response.body", "body": self._error_event(request.path, failure),
                            "more_body": False})
                return
            raise  # the connection is dropped: a truncated answer must never look complete
        if not sent_start:
            await self._send_start(send, start)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _send_start(send: Send, start: ResponseStart | None) -> None:
        if start is None:
            raise RuntimeError("the replica sent no answer")
        await send({"type": "http.response.start", "status": start.status, "headers": start.headers})

    @staticmethod
    def _error_event(path: str, failure: DeltaServeError) -> bytes:
        if path.startswith(OPENAI_PREFIX):
            return sse_event({"error": {"message": failure.message, "type": "server_error", "param": None,
                                        "code": failure.code}})
        return sse_event({"error": {"code": failure.code, "message": failure.message}}, "error")

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: DeltaServeError) -> None:
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
        response = error_response(error.status, error.code, error.message, headers,
                                  openai=scope["path"].startswith(OPENAI_PREFIX))
        await response(scope, receive, send)

    # -- every replica ----------------------------------------------------------------------------
    async def _fan_out(self, scope: Scope, receive: Receive, send: Send, request: ForwardedRequest,
                       target: str) -> None:
        forwarded = ForwardedRequest("GET", target, b"", request.headers, b"", request.client)
        try:
            answers: list[ForwardedResponse] = await self.engine.broadcast("call", forwarded).results_async()
        except ray.exceptions.RayError as exc:
            await self._refuse(scope, receive, send, _failure(exc))
            return
        answers.sort(key=lambda answer: answer.replica)
        refused = next((answer for answer in answers if answer.status != 200), None)
        if refused is not None:  # e.g. 401/403: the replicas' own answer to these credentials
            await send({"type": "http.response.start", "status": refused.status, "headers": refused.headers})
            await send({"type": "http.response.body", "body": refused.body})
            return
        if target == "/stats":
            body = json.dumps({"replicas": [{"replica": answer.replica, **json.loads(answer.body)}
                                            for answer in answers]}).encode()
            content_type = b"application/json"
        else:
            body = merge_expositions({answer.replica: answer.body.decode() for answer in answers})
            content_type = b"text/plain; version=0.0.4; charset=utf-8"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _failure(exc: BaseException) -> DeltaServeError:
    if isinstance(exc, ray.exceptions.RayActorError):
        log.warning("a replica failed under a request: %s", exc)
        return ReplicaFailed("the replica running this request failed; send it again (the other replicas serve it)")
    log.error("a replica raised", exc_info=exc)
    return DeltaServeError("the replica failed to answer this request; see its log", code="internal_error", status=500)


def _is_event_stream(start: ResponseStart) -> bool:
    return any(name.lower() == b"content-type" and value.startswith(b"text/event-stream")
               for name, value in start.headers)
