"""Fixtures of the client tests: `call` runs one client method through the sync and the async client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients import (
    AsyncDeltaServeClient,
    DeltaServeClient,
)
from tests.client.helpers import (
    ADMIN_KEY,
    API_KEY,
    URL,
    Server,
)


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """call(server, "method", *args, **kwargs): run one client method against `server`, sync or async."""

    def run(server: Server, method: str, *args: Any, client_options: dict | None = None, **kwargs: Any) -> Any:
        options = {"base_url": URL, "api_key": API_KEY, "admin_key": ADMIN_KEY, **(client_options or {})}
        transport = httpx.MockTransport(server)
        if request.param == "sync":
            with DeltaServeClient(transport=transport, **options) as client:
                return getattr(client, method)(*args, **kwargs)

        async def go() -> Any:
            async with AsyncDeltaServeClient(transport=transport, **options) as client:
                return await getattr(client, method)(*args, **kwargs)

        return asyncio.run(go())

    return run


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "spelling"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (folder / "adapter_model.safetensors").write_bytes(b"\x00weights\xff")
    (folder / "README.md").write_text("not sent")
    return folder


