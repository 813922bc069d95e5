"""Helpers of the client tests: a mock server, the answers it gives, and a multipart reader."""

from __future__ import annotations

import json
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import httpx

URL = "http://deltaserve.test"
API_KEY = "api-secret"
ADMIN_KEY = "admin-secret"

RECORD = {
    "name": "spelling",
    "kind": "lora",
    "base_model": "SmolLM2-135M-Instruct",
    "parameters": 73728,
    "bytes": 295000,
    "sha256": "ab" * 32,
    "version": 2,
    "created_at": "2025-01-01T00:00:00Z",
    "updated_at": "2025-01-02T00:00:00Z",
    "description": "fixes spelling",
    "prompt_template": None,
}
GENERATED = {"adapter": "spelling", "text": "the cat", "finish_reason": "stop", "prompt_tokens": 5,
             "completion_tokens": 3}
PIPELINE_RUN = {
    "outputs": {"spelling": "the cat", "tone": "The cat."},
    "steps": [
        {"name": "spelling", "adapter": "spelling", "input": "teh cat", "output": "the cat", "finish_reason": "stop",
         "ms": 12.5},
        {"name": "tone", "adapter": None, "input": "the cat", "output": "The cat.", "finish_reason": "length",
         "ms": 8.0},
    ],
}
PIPELINE = {"name": "fix", "steps": [{"name": "spelling", "adapter": "spelling"}], "description": "fix it"}


class Server:
    """One expected request: checks method, path and key, runs `check` on it, answers `status` with `body`."""

    def __init__(self, method: str, path: str, *, key: str | None, status: int = 200, body: Any = None,
                 check: Callable[[httpx.Request], None] | None = None, text: str | None = None):
        self.method, self.path, self.key = method, path, key
        self.status, self.body, self.text, self.check = status, body, text, check
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.method == self.method
        assert request.url.raw_path.decode().split("?")[0] == self.path
        expected = f"Bearer {self.key}" if self.key else None
        assert request.headers.get("authorization") == expected
        if self.check:
            self.check(request)
        if self.text is not None:
            return httpx.Response(self.status, text=self.text)
        return httpx.Response(self.status, json=self.body) if self.body is not None else httpx.Response(self.status)

    @property
    def json(self) -> Any:
        assert len(self.requests) == 1
        return json.loads(self.requests[0].content)


def multipart(request: httpx.Request) -> list[tuple[str, str | None, bytes]]:
    """(field name, filename, content) for each part of a multipart/form-data request."""
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + request.content)
    return [(part.get_param("name", header="content-disposition"), part.get_filename(),
             part.get_payload(decode=True)) for part in message.iter_parts()]


