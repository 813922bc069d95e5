"""The one error a server answer raises, and how it is read from any non-2xx response.

The API answers `{"error": {"code": ..., "message": ...}}`; a framework-level error (FastAPI's `{"detail": ...}`)
or a proxy's plain-text page is turned into the same shape, with the code `http_<status>`.
"""

from __future__ import annotations

import json

import httpx

__all__ = ["DeltaServeClientError", "error_from_response"]


class DeltaServeClientError(Exception):
    """The server answered with a non-2xx status. `code` is its machine-readable error code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def error_from_response(response: httpx.Response) -> DeltaServeClientError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "code" in error:
            return DeltaServeClientError(status, str(error["code"]), str(error.get("message", "")))
        if "detail" in body:  # a framework-level error that did not go through the API's error handler
            detail = body["detail"]
            message = detail if isinstance(detail, str) else json.dumps(detail)
            return DeltaServeClientError(status, f"http_{status}", message)
    return DeltaServeClientError(status, f"http_{status}", response.text.strip() or response.reason_phrase)
