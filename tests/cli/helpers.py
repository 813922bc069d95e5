"""Helpers of the CLI tests: what `run` returns, and a mock server for the client commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from clients import DeltaServeClient
from clients import cli as client_cli

Run = Callable[..., tuple[int, str, str]]


RECORD = {"name": "spelling", "kind": "lora", "base_model": "smollm2", "parameters": 73728, "bytes": 295000,
          "sha256": "cd" * 32, "version": 1, "created_at": "t0", "updated_at": "t0", "description": "fixes spelling",
          "prompt_template": None}
GENERATED = {"adapter": "spelling", "text": "the cat", "finish_reason": "stop", "prompt_tokens": 5,
             "completion_tokens": 3}
RUN = {"outputs": {"spelling": "the cat", "tone": "The cat."},
       "steps": [{"name": "spelling", "adapter": "spelling", "input": "teh cat", "output": "the cat",
                  "finish_reason": "stop", "ms": 3.0},
                 {"name": "tone", "adapter": None, "input": "the cat", "output": "The cat.", "finish_reason": "stop",
                  "ms": 2.0}]}
PIPELINE = {"name": "fix", "steps": [{"name": "spelling", "adapter": "spelling"}, {"name": "tone", "adapter": None}],
            "description": "fix it"}


class MockServer:
    """Answers (method, path) from `routes` with (status, json body); records every request."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.clients: list[DeltaServeClient] = []

        def factory(**options: Any) -> DeltaServeClient:
            client = DeltaServeClient(transport=httpx.MockTransport(self.handle), **options)
            self.clients.append(client)
            return client

        monkeypatch.setattr(client_cli, "client_factory", factory)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        if key not in self.routes:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": f"no route {key}"}})
        status, body = self.routes[key]
        return httpx.Response(status, json=body) if body is not None else httpx.Response(status)

    def json(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def auth(self, index: int = -1) -> str | None:
        return self.requests[index].headers.get("authorization")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> MockServer:
    return MockServer(monkeypatch)


