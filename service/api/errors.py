"""Every error leaves as `{"error": {"code", "message"}}` with its HTTP status: one place for the shape."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.openapi import allowed_methods
from service.errors import DeltaServeError
from service.schemas.errors import ErrorResponse

log = logging.getLogger(__name__)

# What every route may answer besides its success, for the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "The body is not valid JSON or UTF-8, or the upload's files are wrong",
        401: "A key is needed (Authorization: Bearer <key>)",
        403: "The key is wrong",
        404: "No such adapter, pipeline or path",
        408: "The client sent its body too slowly",
        413: "The body is larger than allowed",
        415: "Pickle weights are refused",
        422: "The request or the adapter is invalid; the message names the field",
        429: "Too much work is queued; retry after Retry-After seconds",
        500: "One request failed in the model (its batch went on)",
        503: "The server is starting or shutting down, or the request waited past its deadline",
    }.items()
}

_HTTP_CODES = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_body(exc: BaseException) -> dict:
    """The error shape for an exception met after a streamed answer started (its status is sent already)."""
    if isinstance(exc, DeltaServeError):
        return {"error": {"code": exc.code, "message": exc.message}}
    log.error("unhandled error in a stream", exc_info=exc)
    return {"error": {"code": "internal_error", "message": "the server failed to finish this stream; see its log"}}


_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
OPENAI_PREFIX = "/v1/"  # the OpenAI protocol's routes answer errors in its own shape


def error_response(status: int, code: str, message: str, headers: dict | None = None, *,
                   openai: bool = False, param: str | None = None) -> JSONResponse:
    if openai:
        kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    else:
        body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def _describe(errors: list[dict]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DeltaServeError)
    async def _service_error(request: Request, exc: DeltaServeError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return error_response(exc.status, exc.code, exc.message, headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return error_response(422, "invalid_request", _describe(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Starlette names only the first matching route's methods; the document, all
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
        return error_response(exc.status_code, code, str(exc.detail), headers or None)

    # Unexpected errors are caught by `UnexpectedErrors` (a middleware), not by an exception handler for
    # Exception: Starlette runs that one outermost and re-raises after answering, and uvicorn then closes the
    # connection, failing the next request a client (or a proxy) sends on it.


class UnexpectedErrors:
    """Answer an unexpected error with a 500 in the error shape, and keep the connection usable."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started:  # part of a response is out already: all that is left is to drop the connection
                raise
            response = error_response(500, "internal_error", "the server failed to handle this request; see its log")
            await response(scope, receive, send)
