"""The Python client's errors, keys and configuration; its multipart upload as FastAPI parses it; and the two
clients made from one list of operations."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import (  # annotations are strings here: FastAPI resolves module globals
    FastAPI,
    File,
    Form,
    UploadFile,
)

from clients import (
    AdapterRecord,
    AsyncDeltaServeClient,
    DeltaServeClient,
    DeltaServeClientError,
    GenerateResult,
    calls,
)
from tests.client.helpers import (
    ADMIN_KEY,
    API_KEY,
    GENERATED,
    RECORD,
    URL,
    Server,
)

# --- health, errors, configuration ---------------------------------------------------------------------------


def test_health_and_ready(call: Callable[..., Any]) -> None:
    assert call(Server("GET", "/health", key=None, body={"status": "ok"}), "health") == {"status": "ok"}
    assert call(Server("GET", "/ready", key=None, body={"status": "ready"}), "ready") is True
    loading = {"error": {"code": "not_ready", "message": "the model is loading"}}
    assert call(Server("GET", "/ready", key=None, status=503, body=loading), "ready") is False
    with pytest.raises(DeltaServeClientError) as caught:
        call(Server("GET", "/ready", key=None, status=500, text="boom"), "ready")
    assert caught.value.status == 500


def test_error_body_becomes_client_error(call: Callable[..., Any]) -> None:
    body = {"error": {"code": "adapter_not_found", "message": "no adapter named 'nope'"}}
    with pytest.raises(DeltaServeClientError) as caught:
        call(Server("POST", "/generate", key=API_KEY, status=404, body=body), "generate", "x", adapter="nope")
    error = caught.value
    assert (error.status, error.code, error.message) == (404, "adapter_not_found", "no adapter named 'nope'")
    assert str(error) == "404 adapter_not_found: no adapter named 'nope'"


@pytest.mark.parametrize(("status", "kwargs", "code", "message"), [
    (502, {"text": "Bad Gateway from proxy"}, "http_502", "Bad Gateway from proxy"),
    (500, {"text": ""}, "http_500", "Internal Server Error"),
    (422, {"body": {"detail": [{"loc": ["body", "text"], "msg": "Field required"}]}}, "http_422", "Field required"),
    (405, {"body": {"detail": "Method Not Allowed"}}, "http_405", "Method Not Allowed"),
])
def test_error_fallbacks(call: Callable[..., Any], status: int, kwargs: dict, code: str, message: str) -> None:
    with pytest.raises(DeltaServeClientError) as caught:
        call(Server("DELETE", "/adapters/x", key=ADMIN_KEY, status=status, **kwargs), "delete_adapter", "x")
    assert (caught.value.status, caught.value.code) == (status, code)
    assert message in caught.value.message


def test_each_key_goes_only_where_it_belongs(call: Callable[..., Any]) -> None:
    server = Server("GET", "/adapters", key=None, body={"adapters": []})  # never the admin key on a read
    assert call(server, "list_adapters", client_options={"api_key": None}) == []
    server = Server("DELETE", "/adapters/x", key=None, status=204)
    call(server, "delete_adapter", "x", client_options={"admin_key": None})
    server = Server("POST", "/generate", key=None, body=GENERATED)
    call(server, "generate", "x", client_options={"api_key": None})


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("DELTASERVE_URL", "DELTASERVE_API_KEY", "DELTASERVE_API_KEYS", "DELTASERVE_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_come_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    client = DeltaServeClient()
    assert (client.base_url, client.api_key, client.admin_key) == ("http://127.0.0.1:8000", None, None)
    client.close()
    clean_env.setenv("DELTASERVE_URL", "http://gpu-box:9000/")
    clean_env.setenv("DELTASERVE_API_KEYS", " first , second")
    clean_env.setenv("DELTASERVE_ADMIN_KEY", "root")
    client = AsyncDeltaServeClient()
    assert (client.base_url, client.api_key, client.admin_key) == ("http://gpu-box:9000", "first", "root")
    clean_env.setenv("DELTASERVE_API_KEY", "mine")
    assert DeltaServeClient(api_key=None).api_key == "mine"
    assert DeltaServeClient(api_key="given", admin_key="given-admin").admin_key == "given-admin"


def test_base_url_with_a_path_prefix(call: Callable[..., Any]) -> None:
    server = Server("GET", "/deltaserve/health", key=None, body={"status": "ok"})
    call(server, "health", client_options={"base_url": "http://proxy.test/deltaserve/"})
    assert str(server.requests[0].url) == "http://proxy.test/deltaserve/health"


def test_network_errors_are_httpx_errors(call: Callable[..., Any]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(httpx.ConnectError):
        call(refuse, "health")


# --- against a real ASGI app: the multipart upload is what FastAPI parses -------------------------------------


def test_multipart_upload_parses_in_fastapi(adapter_dir: Path) -> None:
    app = FastAPI()

    @app.put("/adapters/{name}", status_code=201)
    async def upload(name: str, files: Annotated[list[UploadFile], File()],
                     description: Annotated[str | None, Form()] = None,
                     prompt_template: Annotated[str | None, Form()] = None) -> dict:
        sizes = {f.filename: len(await f.read()) for f in files}
        return {**RECORD, "name": name, "description": description, "prompt_template": prompt_template,
                "parameters": sizes["adapter_model.safetensors"], "bytes": sum(sizes.values())}

    async def go() -> AdapterRecord:
        async with AsyncDeltaServeClient(URL, admin_key=ADMIN_KEY, transport=httpx.ASGITransport(app)) as client:
            return await client.upload_adapter("demo", adapter_dir, description="d", prompt_template="{text}!")

    record = asyncio.run(go())
    assert (record.name, record.description, record.prompt_template, record.parameters) == ("demo", "d", "{text}!", 9)
    assert record.bytes == 9 + len('{"peft_type": "LORA"}')


def test_raw_json_is_not_shared_between_results() -> None:
    data = dict(GENERATED)
    result = GenerateResult.from_json(data)
    data["text"] = "changed"
    assert result.raw["text"] == "the cat"


# --- the two clients are one list of operations ----------------------------------------------------------------


OPERATIONS = sorted(name for name, value in vars(calls).items()
                    if inspect.isfunction(value) and value.__module__ == calls.__name__ and not name.startswith("_"))


def test_both_clients_have_every_operation_with_its_arguments_and_docs() -> None:
    assert {"generate", "upload_adapter", "run_named_pipeline"} <= set(OPERATIONS)
    for name in OPERATIONS:
        build = getattr(calls, name)
        wanted = list(inspect.signature(build).parameters.values())
        for client in (DeltaServeClient(URL), AsyncDeltaServeClient(URL)):
            method = getattr(client, name)
            assert list(inspect.signature(method).parameters.values()) == wanted, (type(client).__name__, name)
            assert method.__doc__ == build.__doc__ and method.__doc__
        assert inspect.iscoroutinefunction(getattr(AsyncDeltaServeClient, name))
        assert not inspect.iscoroutinefunction(getattr(DeltaServeClient, name))
