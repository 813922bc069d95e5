"""The Python client against a mock server: the requests it sends (method, path, body, keys) and how it reads
answers and errors. Every method runs through both the sync and the async client."""

from __future__ import annotations

import asyncio
import inspect
import json
import tarfile
import zipfile
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
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
    PipelineRecord,
    PipelineResult,
    PipelineStep,
    calls,
)

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


def multipart(request: httpx.Request) -> list[tuple[str, str | None, bytes]]:
    """(field name, filename, content) for each part of a multipart/form-data request."""
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + request.content)
    return [(part.get_param("name", header="content-disposition"), part.get_filename(),
             part.get_payload(decode=True)) for part in message.iter_parts()]


# --- generation ----------------------------------------------------------------------------------------------


def test_generate_sends_only_the_params_given(call: Callable[..., Any]) -> None:
    server = Server("POST", "/generate", key=API_KEY, body=GENERATED)
    result = call(server, "generate", "teh cat", adapter="spelling", max_new_tokens=8, temperature=0.0, stop=".")
    assert server.json == {"adapter": "spelling", "text": "teh cat", "max_new_tokens": 8, "temperature": 0.0,
                           "stop": ["."]}
    assert result == GenerateResult(text="the cat", finish_reason="stop", prompt_tokens=5, completion_tokens=3,
                                    adapter="spelling")
    assert result.raw == GENERATED


def test_generate_defaults_to_the_base_model_and_server_defaults(call: Callable[..., Any]) -> None:
    server = Server("POST", "/generate", key=API_KEY, body={**GENERATED, "adapter": None})
    call(server, "generate", "hello", seed=None, top_p=0.9, top_k=40, stop=["a", "b"])
    assert server.json == {"adapter": None, "text": "hello", "top_p": 0.9, "top_k": 40, "stop": ["a", "b"]}


def test_generate_rejects_unknown_params(call: Callable[..., Any]) -> None:
    server = Server("POST", "/generate", key=API_KEY, body=GENERATED)
    with pytest.raises(TypeError, match="max_tokens"):
        call(server, "generate", "hello", max_tokens=5)
    assert server.requests == []


def test_generate_many(call: Callable[..., Any]) -> None:
    outputs = [{"text": "a", "finish_reason": "stop", "prompt_tokens": 2, "completion_tokens": 1},
               {"text": "bb", "finish_reason": "length", "prompt_tokens": 3, "completion_tokens": 4}]
    server = Server("POST", "/generate", key=API_KEY, body={"adapter": "spelling", "outputs": outputs})
    results = call(server, "generate_many", ["x", "y"], adapter="spelling", seed=7)
    assert server.json == {"adapter": "spelling", "texts": ["x", "y"], "seed": 7}
    assert [(r.text, r.finish_reason, r.completion_tokens, r.adapter) for r in results] == [
        ("a", "stop", 1, "spelling"), ("bb", "length", 4, "spelling")]
    assert results[1].raw == outputs[1]


def test_generate_many_refuses_a_single_string(call: Callable[..., Any]) -> None:
    with pytest.raises(TypeError):
        call(Server("POST", "/generate", key=API_KEY), "generate_many", "one text")


# --- adapters ------------------------------------------------------------------------------------------------


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "spelling"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (folder / "adapter_model.safetensors").write_bytes(b"\x00weights\xff")
    (folder / "README.md").write_text("not sent")
    return folder


def test_upload_directory_as_multipart(call: Callable[..., Any], adapter_dir: Path) -> None:
    server = Server("PUT", "/adapters/spelling", key=ADMIN_KEY, status=201, body=RECORD)
    record = call(server, "upload_adapter", "spelling", adapter_dir, description="fixes spelling",
                  prompt_template="Human: {text}\n\nAssistant: ")
    parts = multipart(server.requests[0])
    assert sorted(parts) == sorted([
        ("files", "adapter_config.json", b'{"peft_type": "LORA"}'),
        ("files", "adapter_model.safetensors", b"\x00weights\xff"),
        ("description", None, b"fixes spelling"),
        ("prompt_template", None, b"Human: {text}\n\nAssistant: "),
    ])
    assert record == AdapterRecord(**RECORD)


def test_upload_directory_without_optional_fields(call: Callable[..., Any], adapter_dir: Path) -> None:
    server = Server("PUT", "/adapters/spelling", key=ADMIN_KEY, body=RECORD)
    call(server, "upload_adapter", "spelling", str(adapter_dir))
    assert [name for name, _, _ in multipart(server.requests[0])] == ["files", "files"]


def test_upload_directory_needs_both_files(call: Callable[..., Any], adapter_dir: Path) -> None:
    (adapter_dir / "adapter_model.safetensors").unlink()
    (adapter_dir / "adapter_model.bin").write_bytes(b"pickle")
    server = Server("PUT", "/adapters/spelling", key=ADMIN_KEY, body=RECORD)
    with pytest.raises(FileNotFoundError, match=r"adapter_model\.safetensors"):
        call(server, "upload_adapter", "spelling", adapter_dir)
    with pytest.raises(FileNotFoundError, match="no such"):
        call(server, "upload_adapter", "spelling", adapter_dir / "missing.zip")
    assert server.requests == []


def _zip(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            archive.write(folder / name, name)
    return target


def _tar(folder: Path, target: Path) -> Path:
    with tarfile.open(target, "w:gz") as archive:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            archive.add(folder / name, name)
    return target


@pytest.mark.parametrize(("make", "filename", "content_type"), [
    (_zip, "spelling.zip", "application/zip"),
    (_tar, "spelling.tar.gz", "application/gzip"),
    (_tar, "spelling.TGZ", "application/gzip"),
])
def test_upload_archive_as_raw_body(call: Callable[..., Any], adapter_dir: Path, tmp_path: Path,
                                    make: Callable[[Path, Path], Path], filename: str, content_type: str) -> None:
    archive = make(adapter_dir, tmp_path / filename)

    def check(request: httpx.Request) -> None:
        assert request.headers["content-type"] == content_type
        assert request.content == archive.read_bytes()
        assert dict(request.url.params) == {"description": "d e", "prompt_template": "Q: {text} A:"}

    server = Server("PUT", "/adapters/spelling", key=ADMIN_KEY, body=RECORD, check=check)
    call(server, "upload_adapter", "spelling", archive, description="d e", prompt_template="Q: {text} A:")
    assert len(server.requests) == 1


def test_upload_archive_without_fields_has_no_query(call: Callable[..., Any], adapter_dir: Path,
                                                    tmp_path: Path) -> None:
    archive = _zip(adapter_dir, tmp_path / "a.zip")
    server = Server("PUT", "/adapters/spelling", key=ADMIN_KEY, body=RECORD)
    call(server, "upload_adapter", "spelling", archive)
    assert server.requests[0].url.query == b""


def test_upload_refuses_other_files(call: Callable[..., Any], tmp_path: Path) -> None:
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.zip"):
        call(Server("PUT", "/adapters/x", key=ADMIN_KEY), "upload_adapter", "x", other)


def test_list_get_delete_adapters(call: Callable[..., Any]) -> None:
    server = Server("GET", "/adapters", key=API_KEY, body={"adapters": [RECORD, {**RECORD, "name": "tone"}]})
    records = call(server, "list_adapters")
    assert [r.name for r in records] == ["spelling", "tone"]
    assert records[0] == AdapterRecord(**RECORD)

    server = Server("GET", "/adapters/spelling", key=API_KEY, body=RECORD)
    assert call(server, "get_adapter", "spelling").sha256 == "ab" * 32

    server = Server("DELETE", "/adapters/spelling", key=ADMIN_KEY, status=204)
    assert call(server, "delete_adapter", "spelling") is None
    assert len(server.requests) == 1


def test_names_are_escaped_in_paths(call: Callable[..., Any]) -> None:
    server = Server("GET", "/adapters/a%20b%2Fc", key=API_KEY, body=RECORD)
    call(server, "get_adapter", "a b/c")


# --- pipelines -----------------------------------------------------------------------------------------------


def test_run_pipeline(call: Callable[..., Any]) -> None:
    server = Server("POST", "/pipeline", key=API_KEY, body=PIPELINE_RUN)
    steps = [PipelineStep("spelling", adapter="spelling", max_new_tokens=16),
             {"name": "tone", "adapter": None, "input": "{spelling}", "temperature": 0.7}]
    result = call(server, "run_pipeline", "teh cat", steps)
    assert server.json == {"text": "teh cat", "steps": [
        {"name": "spelling", "adapter": "spelling", "max_new_tokens": 16},
        {"name": "tone", "adapter": None, "input": "{spelling}", "temperature": 0.7},
    ]}
    assert isinstance(result, PipelineResult)
    assert result.outputs == {"spelling": "the cat", "tone": "The cat."}
    assert [(s.name, s.adapter, s.input, s.output, s.finish_reason, s.ms) for s in result.steps] == [
        ("spelling", "spelling", "teh cat", "the cat", "stop", 12.5),
        ("tone", None, "the cat", "The cat.", "length", 8.0),
    ]
    assert result.output == "The cat."
    assert result.raw == PIPELINE_RUN


def test_pipeline_step_to_json_keeps_the_base_model_explicit() -> None:
    assert PipelineStep("base").to_json() == {"name": "base", "adapter": None}
    assert PipelineStep("s", "a", "{x}", stop=["\n"], seed=0).to_json() == {
        "name": "s", "adapter": "a", "input": "{x}", "stop": ["\n"], "seed": 0}


def test_put_pipeline(call: Callable[..., Any]) -> None:
    server = Server("PUT", "/pipelines/fix", key=ADMIN_KEY, status=201, body=PIPELINE)
    record = call(server, "put_pipeline", "fix", [PipelineStep("spelling", "spelling")], description="fix it")
    assert server.json == {"steps": [{"name": "spelling", "adapter": "spelling"}], "description": "fix it"}
    assert record == PipelineRecord(**PIPELINE)

    server = Server("PUT", "/pipelines/fix", key=ADMIN_KEY, body=PIPELINE)
    call(server, "put_pipeline", "fix", [{"name": "spelling", "adapter": "spelling"}])
    assert server.json["description"] is None


def test_list_get_delete_run_named_pipelines(call: Callable[..., Any]) -> None:
    server = Server("GET", "/pipelines", key=API_KEY, body={"pipelines": [PIPELINE]})
    assert call(server, "list_pipelines") == [PipelineRecord(**PIPELINE)]

    server = Server("GET", "/pipelines/fix", key=API_KEY, body=PIPELINE)
    assert call(server, "get_pipeline", "fix").steps == PIPELINE["steps"]

    server = Server("DELETE", "/pipelines/fix", key=ADMIN_KEY, status=204)
    assert call(server, "delete_pipeline", "fix") is None

    server = Server("POST", "/pipelines/fix", key=API_KEY, body=PIPELINE_RUN)
    assert call(server, "run_named_pipeline", "fix", "teh cat").output == "The cat."
    assert server.json == {"text": "teh cat"}


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
