"""The Python client against a mock server: the requests it sends (method, path, body, keys) and how it reads
the answers, for generation, adapters and pipelines, through both the sync and the async client."""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients import (
    AdapterRecord,
    GenerateResult,
    PipelineRecord,
    PipelineResult,
    PipelineStep,
)
from tests.client.helpers import (
    ADMIN_KEY,
    API_KEY,
    GENERATED,
    PIPELINE,
    PIPELINE_RUN,
    RECORD,
    Server,
    multipart,
)

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


