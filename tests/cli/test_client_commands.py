"""The `deltaserve` client commands (generate, adapters, pipeline) against a mock server."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import httpx
import pytest

from clients import DeltaServeClient
from clients import cli as client_cli
from deltaserve import cli
from tests.cli.helpers import GENERATED, PIPELINE, RECORD, RUN, MockServer, Run


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> MockServer:
    return MockServer(monkeypatch)


# --- generate ------------------------------------------------------------------------------------------------


def test_generate_prints_text(server: MockServer, run: Run) -> None:
    server.routes[("POST", "/generate")] = (200, GENERATED)
    code, out, err = run("generate", "--adapter", "spelling", "--max-new-tokens", "8", "--temperature", "0",
                         "--top-p", "0.9", "--top-k", "5", "--seed", "3", "--stop", ".", "--stop", "\n", "teh cat")
    assert (code, out, err) == (0, "the cat\n", "")
    assert server.json() == {"adapter": "spelling", "text": "teh cat", "max_new_tokens": 8, "temperature": 0.0,
                             "top_p": 0.9, "top_k": 5, "seed": 3, "stop": [".", "\n"]}


def test_generate_json_and_defaults(server: MockServer, run: Run) -> None:
    server.routes[("POST", "/generate")] = (200, {**GENERATED, "adapter": None})
    code, out, _ = run("generate", "--json", "hello")
    assert code == 0 and json.loads(out) == {**GENERATED, "adapter": None}
    assert server.json() == {"adapter": None, "text": "hello"}


def test_generate_many_texts_is_one_batch(server: MockServer, run: Run) -> None:
    outputs = [{"text": "A", "finish_reason": "stop", "prompt_tokens": 1, "completion_tokens": 1},
               {"text": "B", "finish_reason": "length", "prompt_tokens": 1, "completion_tokens": 2}]
    server.routes[("POST", "/generate")] = (200, {"adapter": None, "outputs": outputs})
    assert run("generate", "a", "b") == (0, "A\nB\n", "")
    assert server.json() == {"adapter": None, "texts": ["a", "b"]}
    _code, out, _ = run("generate", "--json", "a", "b")
    assert json.loads(out) == {"adapter": None, "outputs": outputs}


def test_generate_reads_stdin(server: MockServer, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    server.routes[("POST", "/generate")] = (200, GENERATED)
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\n"))
    assert run("generate", "-")[0] == 0
    assert server.json()["text"] == "from stdin\n"


def test_connection_options_and_keys(server: MockServer, run: Run, clean_env: pytest.MonkeyPatch) -> None:
    server.routes[("POST", "/generate")] = (200, GENERATED)
    server.routes[("DELETE", "/adapters/spelling")] = (204, None)
    # Before the command or after it; flags win over the environment.
    clean_env.setenv("DELTASERVE_URL", "http://from-env:1")
    clean_env.setenv("DELTASERVE_API_KEY", "env-api")
    clean_env.setenv("DELTASERVE_ADMIN_KEY", "env-admin")
    assert run("--url", "http://box:8001", "generate", "x")[0] == 0
    assert str(server.requests[-1].url) == "http://box:8001/generate"
    assert server.auth() == "Bearer env-api"
    assert run("generate", "--url", "http://box:8002", "--api-key", "flag-api", "--timeout", "9", "x")[0] == 0
    assert str(server.requests[-1].url) == "http://box:8002/generate" and server.auth() == "Bearer flag-api"
    assert server.clients[-1].timeout == 9.0
    assert run("adapters", "delete", "spelling")[0] == 0
    assert str(server.requests[-1].url) == "http://from-env:1/adapters/spelling"
    assert server.auth() == "Bearer env-admin"
    assert run("--admin-key", "flag-admin", "adapters", "delete", "spelling")[0] == 0
    assert server.auth() == "Bearer flag-admin"


def test_server_error_prints_code_and_exits_1(server: MockServer, run: Run) -> None:
    server.routes[("POST", "/generate")] = (
        404, {"error": {"code": "adapter_not_found", "message": "no adapter named 'nope'"}})
    assert run("generate", "--adapter", "nope", "x") == (1, "", "error: adapter_not_found: no adapter named 'nope'\n")


def test_unreachable_server_exits_1(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(client_cli, "client_factory",
                        lambda **options: DeltaServeClient(transport=httpx.MockTransport(refuse), **options))
    code, out, err = run("--url", "http://nowhere:9", "adapters", "list")
    assert (code, out) == (1, "")
    assert err.startswith("error: connection: ConnectError http://nowhere:9/adapters: connection refused")


def test_usage_errors_exit_2(run: Run) -> None:
    with pytest.raises(SystemExit) as caught:
        run("generate")
    assert caught.value.code == 2
    with pytest.raises(SystemExit):
        run("pipeline", "run", "--step", "no-equals-sign", "x")
    assert run()[0] == 2  # no command: help on stderr


# --- adapters ------------------------------------------------------------------------------------------------


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"w")
    return tmp_path


def test_adapters_upload(server: MockServer, run: Run, adapter_dir: Path) -> None:
    server.routes[("PUT", "/adapters/spelling")] = (201, RECORD)
    code, out, _ = run("--admin-key", "adm", "adapters", "upload", "spelling", str(adapter_dir), "--description",
                       "fixes spelling", "--prompt-template", "Q: {text}")
    assert code == 0
    assert out == f"uploaded spelling: lora, 73728 parameters, version 1, sha256 {'cd' * 32}\n"
    request = server.requests[-1]
    assert request.headers["authorization"] == "Bearer adm"
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert b'name="prompt_template"' in request.content and b"Q: {text}" in request.content
    code, out, _ = run("adapters", "upload", "spelling", str(adapter_dir), "--json")
    assert json.loads(out) == RECORD


def test_adapters_upload_reads_the_folders_metadata(server: MockServer, run: Run, adapter_dir: Path) -> None:
    server.routes[("PUT", "/adapters/spelling")] = (201, RECORD)
    extras = {"description": "from the file", "prompt_template": "F: {text}"}
    (adapter_dir / "deltaserve.json").write_text(json.dumps(extras))
    assert run("adapters", "upload", "spelling", str(adapter_dir))[0] == 0
    sent = server.requests[-1].content
    assert b"from the file" in sent and b"F: {text}" in sent and b"deltaserve.json" not in sent
    assert run("adapters", "upload", "spelling", str(adapter_dir), "--prompt-template", "Flag: {text}")[0] == 0
    sent = server.requests[-1].content
    assert b"Flag: {text}" in sent and b"F: {text}" not in sent and b"from the file" in sent  # a flag wins
    (adapter_dir / "deltaserve.json").write_text("[1, 2]")
    code, _, err = run("adapters", "upload", "spelling", str(adapter_dir))
    assert code == 2 and "must hold a JSON object" in err


def test_adapters_upload_bad_path_exits_2(server: MockServer, run: Run, tmp_path: Path) -> None:
    code, _out, err = run("adapters", "upload", "x", str(tmp_path / "missing"))
    assert code == 2 and err.startswith("error: no such adapter directory or archive")
    assert server.requests == []


def test_adapters_list_show_delete(server: MockServer, run: Run) -> None:
    server.routes[("GET", "/adapters")] = (
        200,
        {"adapters": [RECORD, {**RECORD, "name": "tone-formal", "kind": "ia3", "version": 12, "description": None}]},
    )
    code, out, _ = run("adapters", "list")
    assert code == 0
    assert out.splitlines() == [
        "NAME         KIND  VERSION  PARAMETERS  DESCRIPTION",
        "spelling     lora  1        73728       fixes spelling",
        "tone-formal  ia3   12       73728",
    ]
    code, out, _ = run("adapters", "list", "--json")
    assert [a["name"] for a in json.loads(out)["adapters"]] == ["spelling", "tone-formal"]

    server.routes[("GET", "/adapters/spelling")] = (200, RECORD)
    code, out, _ = run("adapters", "show", "spelling")
    assert code == 0 and json.loads(out) == RECORD

    server.routes[("DELETE", "/adapters/spelling")] = (204, None)
    assert run("adapters", "delete", "spelling") == (0, "deleted adapter spelling\n", "")
    code, _, err = run("adapters", "delete", "nope")
    assert code == 1 and err.startswith("error: not_found:")


# --- pipelines -----------------------------------------------------------------------------------------------


def test_pipeline_run_with_steps(server: MockServer, run: Run) -> None:
    server.routes[("POST", "/pipeline")] = (200, RUN)
    code, out, _ = run(
        "pipeline",
        "run",
        "--step",
        "spelling=spelling",
        "--step",
        "tone=:Make formal: {spelling}",
        "--step",
        "x=a=b:c:d",
        "--max-new-tokens",
        "16",
        "teh cat",
    )
    assert (code, out) == (0, "The cat.\n")
    assert server.json() == {
        "text": "teh cat",
        "steps": [
            {"name": "spelling", "adapter": "spelling", "max_new_tokens": 16},
            {"name": "tone", "adapter": None, "input": "Make formal: {spelling}", "max_new_tokens": 16},
            {"name": "x", "adapter": "a=b", "input": "c:d", "max_new_tokens": 16},
        ],
    }
    code, out, _ = run("pipeline", "run", "--json", "--step", "spelling=spelling", "teh cat")
    assert json.loads(out) == RUN


def test_pipeline_run_from_file(server: MockServer, run: Run, tmp_path: Path) -> None:
    server.routes[("POST", "/pipeline")] = (200, RUN)
    definition = tmp_path / "def.json"
    definition.write_text(
        json.dumps(
            {
                "steps": [{"name": "s", "adapter": "a", "temperature": 0.5}, {"name": "t", "adapter": None}],
                "description": "ignored by run",
            }
        )
    )
    assert run("pipeline", "run", "--file", str(definition), "--temperature", "0", "hi")[0] == 0
    assert server.json() == {
        "text": "hi",
        "steps": [
            {"name": "s", "adapter": "a", "temperature": 0.5},
            {"name": "t", "adapter": None, "temperature": 0.0},
        ],
    }
    definition.write_text(json.dumps([{"name": "s", "adapter": "a"}]))  # a bare list works too
    assert run("pipeline", "run", "--file", str(definition), "hi")[0] == 0
    assert server.json()["steps"] == [{"name": "s", "adapter": "a"}]


@pytest.mark.parametrize("content", ["not json", '{"no_steps": []}', '"a string"'])
def test_pipeline_bad_file_exits_2(server: MockServer, run: Run, tmp_path: Path, content: str) -> None:
    definition = tmp_path / "def.json"
    definition.write_text(content)
    code, _, err = run("pipeline", "run", "--file", str(definition), "hi")
    assert code == 2 and err.startswith("error:")
    assert run("pipeline", "put", "p", "--file", str(tmp_path / "missing.json"))[0] == 2
    assert server.requests == []


def test_pipeline_needs_steps_or_file_not_both(run: Run, tmp_path: Path) -> None:
    for argv in (["pipeline", "run", "hi"], ["pipeline", "run", "--step", "a=b", "--file", "f.json", "hi"]):
        with pytest.raises(SystemExit) as caught:
            run(*argv)
        assert caught.value.code == 2


def test_pipeline_put_list_show_delete_run_named(server: MockServer, run: Run, tmp_path: Path) -> None:
    server.routes[("PUT", "/pipelines/fix")] = (201, PIPELINE)
    definition = tmp_path / "def.json"
    definition.write_text(json.dumps({"steps": PIPELINE["steps"], "description": "from file"}))
    code, out, _ = run("--admin-key", "adm", "pipeline", "put", "fix", "--file", str(definition))
    assert (code, out) == (0, "saved pipeline fix: spelling -> tone\n")
    assert server.json() == {"steps": PIPELINE["steps"], "description": "from file"}
    assert server.auth() == "Bearer adm"
    assert run("pipeline", "put", "fix", "--step", "spelling=spelling", "--description", "flag wins")[0] == 0
    assert server.json() == {"steps": [{"name": "spelling", "adapter": "spelling"}], "description": "flag wins"}

    server.routes[("GET", "/pipelines")] = (
        200,
        {"pipelines": [PIPELINE, {"name": "bare", "steps": [], "description": None}]},
    )
    code, out, _ = run("pipeline", "list")
    assert out.splitlines() == ["fix\tspelling(spelling) -> tone(base)\tfix it", "bare"]
    code, out, _ = run("pipeline", "list", "--json")
    assert json.loads(out)["pipelines"][0] == PIPELINE

    server.routes[("GET", "/pipelines/fix")] = (200, PIPELINE)
    code, out, _ = run("pipeline", "show", "fix")
    assert json.loads(out) == PIPELINE

    server.routes[("POST", "/pipelines/fix")] = (200, RUN)
    assert run("--api-key", "k", "pipeline", "run-named", "fix", "teh cat") == (0, "The cat.\n", "")
    assert server.json() == {"text": "teh cat"} and server.auth() == "Bearer k"
    code, out, _ = run("pipeline", "run-named", "--json", "fix", "teh cat")
    assert json.loads(out) == RUN

    server.routes[("DELETE", "/pipelines/fix")] = (204, None)
    assert run("pipeline", "delete", "fix") == (0, "deleted pipeline fix\n", "")


def test_help_documents_the_step_syntax(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["pipeline", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "NAME=ADAPTER[:INPUT]" in out and '"steps"' in out


