"""Typed Python client for the DeltaServe HTTP API, sync and async, on httpx.

Every API call is described once, as a `_Call`: how to build the request and how to read the response.
`DeltaServeClient` and `AsyncDeltaServeClient` only send calls; neither holds any request or parsing logic.

    with DeltaServeClient("http://127.0.0.1:8000", api_key="...", admin_key="...") as client:
        client.upload_adapter("spelling", "path/to/peft_adapter_dir")
        print(client.generate("Fix: teh cat", adapter="spelling", max_new_tokens=32).text)

Keys: the admin key goes only on writes (uploads, deletes, pipeline definitions), the API key on inference and
reads; a key that is not set is not sent. Defaults come from the environment: `DELTASERVE_URL`,
`DELTASERVE_API_KEY` (else the first of the server's comma-separated `DELTASERVE_API_KEYS`), `DELTASERVE_ADMIN_KEY`.

A non-2xx answer raises `DeltaServeClientError`; a network failure raises httpx's own `httpx.TransportError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypedDict, TypeVar, Union
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "AdapterRecord",
    "AsyncDeltaServeClient",
    "DEFAULT_URL",
    "DeltaServeClient",
    "DeltaServeClientError",
    "GenerateResult",
    "GenerationParams",
    "PipelineRecord",
    "PipelineResult",
    "PipelineStep",
    "StepResult",
]

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 300.0  # generation of long outputs on a CPU can take minutes

# The two files of a saved PEFT adapter, as the multipart upload names them.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
ARCHIVE_TYPES = {".zip": "application/zip", ".tar.gz": "application/gzip", ".tgz": "application/gzip"}

T = TypeVar("T")
_R = TypeVar("_R", bound="_Result")
Role = Literal["none", "api", "admin"]


class DeltaServeClientError(Exception):
    """The server answered with a non-2xx status. `code` is its machine-readable error code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class GenerationParams(TypedDict, total=False):
    """Generation parameters; any left out take the server's defaults."""

    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    stop: str | Sequence[str]


GENERATION_PARAMS = frozenset(GenerationParams.__annotations__)


def _generation_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Only the parameters the caller set, with `stop` always a list; unknown names are a TypeError."""
    unknown = set(params) - GENERATION_PARAMS
    if unknown:
        raise TypeError(f"unknown generation parameter(s): {', '.join(sorted(unknown))}")
    out = {key: value for key, value in params.items() if value is not None}
    if isinstance(out.get("stop"), str):
        out["stop"] = [out["stop"]]
    elif "stop" in out:
        out["stop"] = list(out["stop"])
    return out


# --- results -------------------------------------------------------------------------------------------------


@dataclass
class _Result:
    """A response object: the documented fields, plus the JSON it came from in `raw`."""

    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    @classmethod
    def from_json(cls: type[_R], data: Mapping[str, Any]) -> _R:
        names = [f.name for f in fields(cls) if f.name != "raw"]  # type: ignore[arg-type]
        return cls(**{name: data.get(name) for name in names}, raw=dict(data))  # type: ignore[call-arg]


@dataclass
class GenerateResult(_Result):
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int
    adapter: str | None = None


@dataclass
class AdapterRecord(_Result):
    name: str
    kind: str
    base_model: str
    parameters: int
    bytes: int
    sha256: str
    version: int
    created_at: str
    updated_at: str
    description: str | None = None
    prompt_template: str | None = None


@dataclass
class StepResult(_Result):
    name: str
    adapter: str | None
    input: str
    output: str
    finish_reason: str
    ms: float


@dataclass
class PipelineResult(_Result):
    outputs: dict[str, str]
    steps: list[StepResult]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PipelineResult:
        steps = [StepResult.from_json(step) for step in data.get("steps") or []]
        return cls(outputs=dict(data.get("outputs") or {}), steps=steps, raw=dict(data))

    @property
    def output(self) -> str:
        """The last step's output: the pipeline's answer."""
        return self.steps[-1].output if self.steps else ""


@dataclass
class PipelineRecord(_Result):
    name: str
    steps: list[dict[str, Any]]
    description: str | None = None


@dataclass
class PipelineStep:
    """One step of a pipeline: the adapter to run (None: the base model), an optional `input` template over the
    pipeline's text and earlier steps' outputs such as "{spelling}", and generation parameters (None: defaults)."""

    name: str
    adapter: str | None = None
    input: str | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {key: value for key, value in asdict(self).items() if value is not None}
        data["adapter"] = self.adapter  # null means the base model; always sent
        return data


StepLike = Union[PipelineStep, Mapping[str, Any]]  # a plain dict is sent as it is


def _steps_json(steps: Sequence[StepLike]) -> list[dict[str, Any]]:
    return [step.to_json() if isinstance(step, PipelineStep) else dict(step) for step in steps]


# --- calls: one per API operation, shared by both clients ----------------------------------------------------


@dataclass
class _Call(Generic[T]):
    method: str
    path: str
    role: Role
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: dict[str, str] | None = None
    content: bytes | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    data: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    passthrough: frozenset[int] = frozenset()  # non-2xx statuses handed to `parse` instead of raised


def _segment(name: str) -> str:
    return quote(name, safe="")


def _content_type(filename: str) -> str:
    return "application/json" if filename.endswith(".json") else "application/octet-stream"


def _json(response: httpx.Response) -> Any:
    return response.json()


def _one(cls: type[_R]) -> Callable[[httpx.Response], _R]:
    return lambda response: cls.from_json(response.json())


def _many(cls: type[_R], key: str) -> Callable[[httpx.Response], list[_R]]:
    return lambda response: [cls.from_json(item) for item in response.json()[key]]


def _none(response: httpx.Response) -> None:
    return None


def _error_from(response: httpx.Response) -> DeltaServeClientError:
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


def _health() -> _Call[dict[str, Any]]:
    return _Call("GET", "/health", "none", _json)


def _ready() -> _Call[bool]:
    return _Call("GET", "/ready", "none", lambda r: r.status_code == 200, passthrough=frozenset({503}))


def _generate(text: str, adapter: str | None, params: Mapping[str, Any]) -> _Call[GenerateResult]:
    body = {"adapter": adapter, "text": text, **_generation_params(params)}
    return _Call("POST", "/generate", "api", _one(GenerateResult), json=body)


def _generate_many(
    texts: Sequence[str], adapter: str | None, params: Mapping[str, Any]
) -> _Call[list[GenerateResult]]:
    if isinstance(texts, str):
        raise TypeError("generate_many takes a list of texts; use generate for one text")
    body = {"adapter": adapter, "texts": list(texts), **_generation_params(params)}

    def parse(response: httpx.Response) -> list[GenerateResult]:
        data = response.json()
        results = [GenerateResult.from_json(out) for out in data["outputs"]]
        for result in results:
            result.adapter = data.get("adapter")
        return results

    return _Call("POST", "/generate", "api", parse, json=body)


def _upload_adapter(
    name: str, path: str | os.PathLike[str], description: str | None, prompt_template: str | None
) -> _Call[AdapterRecord]:
    """A directory holding a saved PEFT adapter goes up as multipart; a .zip or .tar.gz file as the raw body."""
    source = Path(path)
    fields_ = {k: v for k, v in (("description", description), ("prompt_template", prompt_template)) if v is not None}
    call = _Call("PUT", f"/adapters/{_segment(name)}", "admin", _one(AdapterRecord))
    if source.is_dir():
        missing = [f for f in ADAPTER_FILES if not (source / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{source} is not a saved PEFT adapter: missing {', '.join(missing)} "
                "(save with safe_serialization=True; pickled .bin weights are not accepted)"
            )
        call.files = [("files", (f, (source / f).read_bytes(), _content_type(f))) for f in ADAPTER_FILES]
        call.data = fields_ or None
        return call
    if not source.is_file():
        raise FileNotFoundError(f"no such adapter directory or archive: {source}")
    content_type = next((t for ext, t in ARCHIVE_TYPES.items() if source.name.lower().endswith(ext)), None)
    if content_type is None:
        raise ValueError(f"{source}: expected a directory, a .zip or a .tar.gz archive")
    call.content = source.read_bytes()
    call.headers["Content-Type"] = content_type
    call.params = fields_ or None
    return call


def _list_adapters() -> _Call[list[AdapterRecord]]:
    return _Call("GET", "/adapters", "api", _many(AdapterRecord, "adapters"))


def _get_adapter(name: str) -> _Call[AdapterRecord]:
    return _Call("GET", f"/adapters/{_segment(name)}", "api", _one(AdapterRecord))


def _delete_adapter(name: str) -> _Call[None]:
    return _Call("DELETE", f"/adapters/{_segment(name)}", "admin", _none)


def _run_pipeline(text: str, steps: Sequence[StepLike]) -> _Call[PipelineResult]:
    body = {"text": text, "steps": _steps_json(steps)}
    return _Call("POST", "/pipeline", "api", _one(PipelineResult), json=body)


def _put_pipeline(name: str, steps: Sequence[StepLike], description: str | None) -> _Call[PipelineRecord]:
    body = {"steps": _steps_json(steps), "description": description}
    return _Call("PUT", f"/pipelines/{_segment(name)}", "admin", _one(PipelineRecord), json=body)


def _list_pipelines() -> _Call[list[PipelineRecord]]:
    return _Call("GET", "/pipelines", "api", _many(PipelineRecord, "pipelines"))


def _get_pipeline(name: str) -> _Call[PipelineRecord]:
    return _Call("GET", f"/pipelines/{_segment(name)}", "api", _one(PipelineRecord))


def _delete_pipeline(name: str) -> _Call[None]:
    return _Call("DELETE", f"/pipelines/{_segment(name)}", "admin", _none)


def _run_named_pipeline(name: str, text: str) -> _Call[PipelineResult]:
    return _Call("POST", f"/pipelines/{_segment(name)}", "api", _one(PipelineResult), json={"text": text})


# --- the clients ---------------------------------------------------------------------------------------------


def _env_api_key() -> str | None:
    key = os.environ.get("DELTASERVE_API_KEY")
    if key:
        return key
    server_keys = [k.strip() for k in os.environ.get("DELTASERVE_API_KEYS", "").split(",") if k.strip()]
    return server_keys[0] if server_keys else None


class _ClientBase:
    """Configuration, request building and response checking; the subclasses only send."""

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

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: _Call[Any]) -> httpx.Request:
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
    def _result(call: _Call[T], response: httpx.Response) -> T:
        if response.is_success or response.status_code in call.passthrough:
            return call.parse(response)
        raise _error_from(response)


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

    def _send(self, call: _Call[T]) -> T:
        return self._result(call, self._http.send(self._request(self._http, call)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DeltaServeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> dict[str, Any]:
        return self._send(_health())

    def ready(self) -> bool:
        """True when the model is loaded and the server takes requests (200), False while it is not (503)."""
        return self._send(_ready())

    def generate(self, text: str, adapter: str | None = None, **params: Unpack[GenerationParams]) -> GenerateResult:
        return self._send(_generate(text, adapter, params))

    def generate_many(
        self, texts: Sequence[str], adapter: str | None = None, **params: Unpack[GenerationParams]
    ) -> list[GenerateResult]:
        return self._send(_generate_many(texts, adapter, params))

    def upload_adapter(
        self,
        name: str,
        path: str | os.PathLike[str],
        description: str | None = None,
        prompt_template: str | None = None,
    ) -> AdapterRecord:
        return self._send(_upload_adapter(name, path, description, prompt_template))

    def list_adapters(self) -> list[AdapterRecord]:
        return self._send(_list_adapters())

    def get_adapter(self, name: str) -> AdapterRecord:
        return self._send(_get_adapter(name))

    def delete_adapter(self, name: str) -> None:
        return self._send(_delete_adapter(name))

    def run_pipeline(self, text: str, steps: Sequence[StepLike]) -> PipelineResult:
        return self._send(_run_pipeline(text, steps))

    def put_pipeline(self, name: str, steps: Sequence[StepLike], description: str | None = None) -> PipelineRecord:
        return self._send(_put_pipeline(name, steps, description))

    def list_pipelines(self) -> list[PipelineRecord]:
        return self._send(_list_pipelines())

    def get_pipeline(self, name: str) -> PipelineRecord:
        return self._send(_get_pipeline(name))

    def delete_pipeline(self, name: str) -> None:
        return self._send(_delete_pipeline(name))

    def run_named_pipeline(self, name: str, text: str) -> PipelineResult:
        return self._send(_run_named_pipeline(name, text))


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

    async def _send(self, call: _Call[T]) -> T:
        return self._result(call, await self._http.send(self._request(self._http, call)))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncDeltaServeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def health(self) -> dict[str, Any]:
        return await self._send(_health())

    async def ready(self) -> bool:
        return await self._send(_ready())

    async def generate(
        self, text: str, adapter: str | None = None, **params: Unpack[GenerationParams]
    ) -> GenerateResult:
        return await self._send(_generate(text, adapter, params))

    async def generate_many(
        self, texts: Sequence[str], adapter: str | None = None, **params: Unpack[GenerationParams]
    ) -> list[GenerateResult]:
        return await self._send(_generate_many(texts, adapter, params))

    async def upload_adapter(
        self,
        name: str,
        path: str | os.PathLike[str],
        description: str | None = None,
        prompt_template: str | None = None,
    ) -> AdapterRecord:
        return await self._send(_upload_adapter(name, path, description, prompt_template))

    async def list_adapters(self) -> list[AdapterRecord]:
        return await self._send(_list_adapters())

    async def get_adapter(self, name: str) -> AdapterRecord:
        return await self._send(_get_adapter(name))

    async def delete_adapter(self, name: str) -> None:
        return await self._send(_delete_adapter(name))

    async def run_pipeline(self, text: str, steps: Sequence[StepLike]) -> PipelineResult:
        return await self._send(_run_pipeline(text, steps))

    async def put_pipeline(
        self, name: str, steps: Sequence[StepLike], description: str | None = None
    ) -> PipelineRecord:
        return await self._send(_put_pipeline(name, steps, description))

    async def list_pipelines(self) -> list[PipelineRecord]:
        return await self._send(_list_pipelines())

    async def get_pipeline(self, name: str) -> PipelineRecord:
        return await self._send(_get_pipeline(name))

    async def delete_pipeline(self, name: str) -> None:
        return await self._send(_delete_pipeline(name))

    async def run_named_pipeline(self, name: str, text: str) -> PipelineResult:
        return await self._send(_run_named_pipeline(name, text))
