"""Typed Python client for the DeltaServe HTTP API, sync and async, on httpx.

    with DeltaServeClient("http://127.0.0.1:8000", api_key="...", admin_key="...") as client:
        client.upload_adapter("spelling", "path/to/peft_adapter_dir")
        print(client.generate("Fix: teh cat", adapter="spelling", max_new_tokens=32).text)

Every API operation is written once, in `clients.calls`; each client here only lists them, turned into methods
that send the call with its own httpx client (`_sync_method` / `_async_method`).

Keys: the admin key goes only on writes (uploads, deletes, pipeline definitions), the API key on inference and
reads; a key that is not set is not sent. Defaults come from the environment: `DELTASERVE_URL`,
`DELTASERVE_API_KEY` (else the first of the server's comma-separated `DELTASERVE_API_KEYS`), `DELTASERVE_ADMIN_KEY`.

A non-2xx answer raises `DeltaServeClientError`; a network failure raises httpx's own `httpx.TransportError`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import httpx

from clients import calls
from clients.calls import Call, Role
from clients.errors import error_from_response

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_URL", "AsyncDeltaServeClient", "DeltaServeClient"]

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 300.0  # generation of long outputs on a CPU can take minutes

T = TypeVar("T")
P = ParamSpec("P")


def _env_api_key() -> str | None:
    key = os.environ.get("DELTASERVE_API_KEY")
    if key:
        return key
    server_keys = [k.strip() for k in os.environ.get("DELTASERVE_API_KEYS", "").split(",") if k.strip()]
    return server_keys[0] if server_keys else None


class _ClientBase:
    """Configuration, request building and answer checking; the subclasses only send."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
    ):
        self.base_url = (base_url or os.environ.get("DELTASERVE_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else _env_api_key()
        self.admin_key = admin_key if admin_key is not None else (os.environ.get("DELTASERVE_ADMIN_KEY") or None)
        self.timeout = timeout

    def _auth(self, role: Role) -> dict[str, str]:
        key = {"none": None, "api": self.api_key, "admin": self.admin_key}[role]
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        return http.build_request(
            call.method,
            call.path,
            json=call.json,
            params=call.params,
            content=call.content,
            files=call.files,
            data=call.data,
            headers={**call.headers, **self._auth(call.role)},
        )

    @staticmethod
    def _result(call: Call[T], response: httpx.Response) -> T:
        if response.is_success or response.status_code in call.passthrough:
            return call.parse(response)
        raise error_from_response(response)


def _present_as(method: Callable[..., Any], build: Callable[..., Any]) -> None:
    """Give `method` the operation's name, docstring and arguments (after `self`), for help() and inspect."""
    method.__name__ = method.__qualname__ = build.__name__
    method.__doc__ = build.__doc__
    signature = inspect.signature(build)
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[this, *signature.parameters.values()], return_annotation=inspect.Signature.empty
    )


def _sync_method(build: Callable[P, Call[T]]) -> Callable[Concatenate[DeltaServeClient, P], T]:
    def method(self: DeltaServeClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._send(build(*args, **kwargs))

    _present_as(method, build)
    return method


def _async_method(build: Callable[P, Call[T]]) -> Callable[Concatenate[AsyncDeltaServeClient, P], Awaitable[T]]:
    async def method(self: AsyncDeltaServeClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._send(build(*args, **kwargs))

    _present_as(method, build)
    return method


class DeltaServeClient(_ClientBase):
    """Synchronous client. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ):
        super().__init__(base_url, api_key=api_key, admin_key=admin_key, timeout=timeout)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def _send(self, call: Call[T]) -> T:
        return self._result(call, self._http.send(self._request(self._http, call)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    health = _sync_method(calls.health)
    ready = _sync_method(calls.ready)
    generate = _sync_method(calls.generate)
    generate_many = _sync_method(calls.generate_many)
    upload_adapter = _sync_method(calls.upload_adapter)
    list_adapters = _sync_method(calls.list_adapters)
    get_adapter = _sync_method(calls.get_adapter)
    delete_adapter = _sync_method(calls.delete_adapter)
    run_pipeline = _sync_method(calls.run_pipeline)
    put_pipeline = _sync_method(calls.put_pipeline)
    list_pipelines = _sync_method(calls.list_pipelines)
    get_pipeline = _sync_method(calls.get_pipeline)
    delete_pipeline = _sync_method(calls.delete_pipeline)
    run_named_pipeline = _sync_method(calls.run_named_pipeline)


class AsyncDeltaServeClient(_ClientBase):
    """Asynchronous client with the same methods as `DeltaServeClient`, awaited. Use `async with`, or `aclose()`."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        admin_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        super().__init__(base_url, api_key=api_key, admin_key=admin_key, timeout=timeout)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    async def _send(self, call: Call[T]) -> T:
        return self._result(call, await self._http.send(self._request(self._http, call)))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    health = _async_method(calls.health)
    ready = _async_method(calls.ready)
    generate = _async_method(calls.generate)
    generate_many = _async_method(calls.generate_many)
    upload_adapter = _async_method(calls.upload_adapter)
    list_adapters = _async_method(calls.list_adapters)
    get_adapter = _async_method(calls.get_adapter)
    delete_adapter = _async_method(calls.delete_adapter)
    run_pipeline = _async_method(calls.run_pipeline)
    put_pipeline = _async_method(calls.put_pipeline)
    list_pipelines = _async_method(calls.list_pipelines)
    get_pipeline = _async_method(calls.get_pipeline)
    delete_pipeline = _async_method(calls.delete_pipeline)
    run_named_pipeline = _async_method(calls.run_named_pipeline)
