"""The API's operations, each written once: how to build its request and how to read its answer.

Each function here takes exactly the arguments of the client method of the same name and returns a `Call`
(a request description plus a parser). `DeltaServeClient` and `AsyncDeltaServeClient` turn every one of them
into a method that sends the call, so the two clients cannot drift apart, and the docstrings here are theirs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx

from clients.types import (
    AdapterRecord,
    GenerateResult,
    GenerationParams,
    PipelineRecord,
    PipelineResult,
    PipelineStep,
    Result,
    StepLike,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

T = TypeVar("T")
_R = TypeVar("_R", bound=Result)
Role = Literal["none", "api", "admin"]  # which key the call carries

# The two files of a saved PEFT adapter, as the multipart upload names them; AdapterHub's save_adapter names its
# weights file otherwise (a head saved beside it is not sent: the server serves the base model's own).
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
ADAPTERHUB_WEIGHTS = "adapter.safetensors"
ARCHIVE_TYPES = {".zip": "application/zip", ".tar.gz": "application/gzip", ".tgz": "application/gzip"}
GENERATION_PARAMS = frozenset(GenerationParams.__annotations__)


@dataclass
class Call(Generic[T]):
    """One request to send, and how to read its answer into a `T`."""

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


# --- request and answer helpers ----------------------------------------------------------------------------------


def _segment(name: str) -> str:
    return quote(name, safe="")


def _content_type(filename: str) -> str:
    return "application/json" if filename.endswith(".json") else "application/octet-stream"


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


def _steps_json(steps: Sequence[StepLike]) -> list[dict[str, Any]]:
    return [step.to_json() if isinstance(step, PipelineStep) else dict(step) for step in steps]


def _json(response: httpx.Response) -> Any:
    return response.json()


def _one(cls: type[_R]) -> Callable[[httpx.Response], _R]:
    return lambda response: cls.from_json(response.json())


def _many(cls: type[_R], key: str) -> Callable[[httpx.Response], list[_R]]:
    return lambda response: [cls.from_json(item) for item in response.json()[key]]


def _nothing(response: httpx.Response) -> None:
    return None


# --- health ------------------------------------------------------------------------------------------------------


def health() -> Call[dict[str, Any]]:
    """The server process is alive."""
    return Call("GET", "/health", "none", _json)


def ready() -> Call[bool]:
    """True when the model is loaded and the server takes requests (200), False while it is not (503)."""
    return Call("GET", "/ready", "none", lambda response: response.status_code == 200, passthrough=frozenset({503}))


# --- generation --------------------------------------------------------------------------------------------------


def generate(text: str, adapter: str | None = None, **params: Unpack[GenerationParams]) -> Call[GenerateResult]:
    """Generate from one text with `adapter` (None: the base model); parameters left out take the server's defaults."""
    body = {"adapter": adapter, "text": text, **_generation_params(params)}
    return Call("POST", "/generate", "api", _one(GenerateResult), json=body)


def generate_many(
    texts: Sequence[str], adapter: str | None = None, **params: Unpack[GenerationParams]
) -> Call[list[GenerateResult]]:
    """Generate from several texts as one batch request; the results come back in the order of `texts`."""
    if isinstance(texts, str):
        raise TypeError("generate_many takes a list of texts; use generate for one text")
    body = {"adapter": adapter, "texts": list(texts), **_generation_params(params)}

    def parse(response: httpx.Response) -> list[GenerateResult]:
        data = response.json()
        results = [GenerateResult.from_json(out) for out in data["outputs"]]
        for result in results:
            result.adapter = data.get("adapter")
        return results

    return Call("POST", "/generate", "api", parse, json=body)


# --- adapters ----------------------------------------------------------------------------------------------------


def upload_adapter(
    name: str,
    path: str | os.PathLike[str],
    description: str | None = None,
    prompt_template: str | None = None,
) -> Call[AdapterRecord]:
    """Upload (or replace) an adapter. A directory saved by PEFT goes up as multipart; a .zip or .tar.gz archive
    of one as the raw body. Needs the admin key."""
    source = Path(path)
    metadata = {k: v for k, v in (("description", description), ("prompt_template", prompt_template)) if v is not None}
    call = Call("PUT", f"/adapters/{_segment(name)}", "admin", _one(AdapterRecord))
    if source.is_dir():
        names = list(ADAPTER_FILES)
        if not (source / names[1]).is_file() and (source / ADAPTERHUB_WEIGHTS).is_file():
            names[1] = ADAPTERHUB_WEIGHTS
        missing = [f for f in names if not (source / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{source} is not a saved PEFT or AdapterHub adapter: missing {', '.join(missing)} "
                "(save with safe_serialization=True or use_safetensors=True; pickled .bin weights are not accepted)"
            )
        call.files = [("files", (f, (source / f).read_bytes(), _content_type(f))) for f in names]
        call.data = metadata or None
        return call
    if not source.is_file():
        raise FileNotFoundError(f"no such adapter directory or archive: {source}")
    content_type = next((t for ext, t in ARCHIVE_TYPES.items() if source.name.lower().endswith(ext)), None)
    if content_type is None:
        raise ValueError(f"{source}: expected a directory, a .zip or a .tar.gz archive")
    call.content = source.read_bytes()
    call.headers["Content-Type"] = content_type
    call.params = metadata or None
    return call


def list_adapters() -> Call[list[AdapterRecord]]:
    """Every adapter in the store."""
    return Call("GET", "/adapters", "api", _many(AdapterRecord, "adapters"))


def get_adapter(name: str) -> Call[AdapterRecord]:
    """One adapter's record."""
    return Call("GET", f"/adapters/{_segment(name)}", "api", _one(AdapterRecord))


def delete_adapter(name: str) -> Call[None]:
    """Delete an adapter. Needs the admin key."""
    return Call("DELETE", f"/adapters/{_segment(name)}", "admin", _nothing)


# --- pipelines ---------------------------------------------------------------------------------------------------


def run_pipeline(text: str, steps: Sequence[StepLike]) -> Call[PipelineResult]:
    """Run the steps given here over `text`."""
    body = {"text": text, "steps": _steps_json(steps)}
    return Call("POST", "/pipeline", "api", _one(PipelineResult), json=body)


def put_pipeline(name: str, steps: Sequence[StepLike], description: str | None = None) -> Call[PipelineRecord]:
    """Save (or replace) a named pipeline. Needs the admin key."""
    body = {"steps": _steps_json(steps), "description": description}
    return Call("PUT", f"/pipelines/{_segment(name)}", "admin", _one(PipelineRecord), json=body)


def list_pipelines() -> Call[list[PipelineRecord]]:
    """Every saved pipeline."""
    return Call("GET", "/pipelines", "api", _many(PipelineRecord, "pipelines"))


def get_pipeline(name: str) -> Call[PipelineRecord]:
    """One saved pipeline's definition."""
    return Call("GET", f"/pipelines/{_segment(name)}", "api", _one(PipelineRecord))


def delete_pipeline(name: str) -> Call[None]:
    """Delete a saved pipeline. Needs the admin key."""
    return Call("DELETE", f"/pipelines/{_segment(name)}", "admin", _nothing)


def run_named_pipeline(name: str, text: str) -> Call[PipelineResult]:
    """Run a saved pipeline over `text`."""
    return Call("POST", f"/pipelines/{_segment(name)}", "api", _one(PipelineResult), json={"text": text})
