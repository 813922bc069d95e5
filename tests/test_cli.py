"""The `deltaserve` CLI: client commands against a mock server, and `serve` / `prepare-model` with nothing
started (the server launcher and the model preparation are replaced)."""

from __future__ import annotations

import io
import json
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients import DeltaServeClient
from clients import cli as client_cli
from deltaserve import cli
from service import cli as server_cli

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


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("DELTASERVE_"):
            monkeypatch.delenv(name)
    return monkeypatch


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


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def invoke(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


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


# --- serve and prepare-model ---------------------------------------------------------------------------------


class Served:
    """Replaces the launcher (service.server.serve): records what it would have run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[dict[str, Any]] = []
        monkeypatch.setattr("service.server.serve", self.serve)

    def serve(self, settings: Any, *, log_level: str) -> int:
        self.calls.append({"settings": settings, "host": settings.host, "port": settings.port, "log_level": log_level})
        return 0

    @property
    def settings(self) -> Any:
        assert len(self.calls) == 1
        return self.calls[0]["settings"]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Served:
    return Served(monkeypatch)


def test_serve_refuses_a_public_host_without_keys(served: Served, run: Run) -> None:
    code, _out, err = run("serve", "--host", "0.0.0.0")
    assert code == 2 and served.calls == []
    assert "refusing to serve on 0.0.0.0:8000 without keys" in err
    assert "DELTASERVE_ADMIN_KEY" in err and "--insecure" in err


def test_serve_refuses_a_public_host_from_the_environment(
    served: Served, run: Run, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("DELTASERVE_HOST", "192.168.1.20")
    assert run("serve")[0] == 2 and served.calls == []


def test_serve_insecure_starts_with_a_warning(served: Served, run: Run) -> None:
    code, _, err = run("serve", "--host", "0.0.0.0", "--insecure")
    assert code == 0
    assert served.calls[0]["host"] == "0.0.0.0" and served.calls[0]["port"] == 8000
    assert "warning: --insecure" in err


@pytest.mark.parametrize("keys", [{"DELTASERVE_ADMIN_KEY": "a"}, {"DELTASERVE_API_KEYS": "k1,k2"}])
def test_serve_public_host_with_keys(
    served: Served, run: Run, clean_env: pytest.MonkeyPatch, keys: dict[str, str]
) -> None:
    for name, value in keys.items():
        clean_env.setenv(name, value)
    code, _, err = run("serve", "--host", "0.0.0.0")
    assert (code, err) == (0, "")
    assert served.calls[0]["host"] == "0.0.0.0"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LocalHost", "::1", "[::1]"])
def test_serve_loopback_without_keys_says_so(served: Served, run: Run, host: str) -> None:
    code, _, err = run("serve", "--host", host)
    assert code == 0 and served.calls[0]["host"] == host
    assert "bound to loopback only" in err and "no keys are set" in err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("", False),
        ("128.0.0.1", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert server_cli.is_loopback(host) is loopback


def test_serve_defaults_are_the_settings_defaults(served: Served, run: Run) -> None:
    assert run("serve")[0] == 0
    call = served.calls[0]
    assert (call["host"], call["port"], call["log_level"]) == ("127.0.0.1", 8000, "info")
    settings = served.settings
    assert settings.load_demo_adapters is True and settings.max_batch_size == 16 and settings.dtype == "auto"


def test_serve_flags_override_the_environment(
    served: Served, run: Run, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("DELTASERVE_PORT", "9000")
    clean_env.setenv("DELTASERVE_MAX_BATCH_SIZE", "4")
    clean_env.setenv("DELTASERVE_DEVICE", "cpu")
    clean_env.setenv("DELTASERVE_DTYPE", "float32")
    clean_env.setenv("DELTASERVE_MAX_BATCH_WAIT_MS", "2.5")
    clean_env.setenv("DELTASERVE_LOAD_DEMO_ADAPTERS", "true")
    clean_env.setenv("DELTASERVE_API_KEYS", "k1, k2")
    code, _, err = run(
        "serve",
        "--port",
        "9100",
        "--max-batch-size",
        "32",
        "--dtype",
        "bfloat16",
        "--adapters-dir",
        str(tmp_path / "store"),
        "--base-model",
        "some/model",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-demo-adapters",
        "--log-level",
        "debug",
    )
    assert (code, err) == (0, "")
    settings = served.settings
    assert served.calls[0]["port"] == 9100 and served.calls[0]["log_level"] == "debug"
    # Flags given win ...
    assert (settings.port, settings.max_batch_size, settings.dtype) == (9100, 32, "bfloat16")
    assert settings.adapters_dir == tmp_path / "store" and settings.cache_dir == tmp_path / "cache"
    assert settings.base_model == "some/model" and settings.load_demo_adapters is False
    # ... and the environment stays for the flags not given.
    assert (settings.device, settings.max_batch_wait_ms, settings.api_keys) == ("cpu", 2.5, ["k1", "k2"])


def test_serve_decode_and_batching_flags(served: Served, run: Run, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DELTASERVE_KV_CACHE_TOKENS", "512")
    assert run("serve")[0] == 0
    defaults = served.settings
    assert (defaults.decode, defaults.kv_cache_tokens, defaults.cuda_graphs, defaults.mixed_batches) == (
        "auto",
        512,
        True,
        True,
    )
    assert (
        run("serve", "--decode", "static", "--kv-cache-tokens", "4096", "--no-cuda-graphs", "--no-mixed-batches")[0]
        == 0
    )
    settings = served.calls[1]["settings"]
    assert (settings.decode, settings.kv_cache_tokens, settings.cuda_graphs, settings.mixed_batches) == (
        "static",
        4096,
        False,
        False,
    )
    with pytest.raises(SystemExit):
        run("serve", "--decode", "graphs")


def test_serve_environment_alone(served: Served, run: Run, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DELTASERVE_PORT", "9000")
    clean_env.setenv("DELTASERVE_LOAD_DEMO_ADAPTERS", "false")
    assert run("serve", "--device", "cuda:1")[0] == 0
    settings = served.settings
    assert (settings.port, settings.load_demo_adapters, settings.device) == (9000, False, "cuda:1")


def test_serve_invalid_settings_exit_2(served: Served, run: Run, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DELTASERVE_PORT", "not-a-port")
    code, _, err = run("serve")
    assert code == 2 and err.startswith("error: invalid settings") and served.calls == []
    with pytest.raises(SystemExit):
        run("serve", "--dtype", "int4")


def test_prepare_model(
    run: Run, monkeypatch: pytest.MonkeyPatch, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prepared: list[Any] = []
    fake = types.ModuleType("service.engine.base_model")

    def prepare_base_model(settings: Any) -> Path:
        prepared.append(settings)
        return tmp_path / "model"

    fake.prepare_base_model = prepare_base_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "service.engine.base_model", fake)
    clean_env.setenv("DELTASERVE_CACHE_DIR", str(tmp_path / "env-cache"))
    code, out, _ = run("prepare-model", "--base-model", "some/model")
    assert code == 0 and prepared[0].base_model == "some/model" and prepared[0].cache_dir == tmp_path / "env-cache"
    assert out == f"base model ready: {tmp_path / 'model'} (cache: {tmp_path / 'env-cache'})\n"
    assert run("prepare-model", "--cache-dir", str(tmp_path / "flag-cache"))[0] == 0
    assert prepared[1].cache_dir == tmp_path / "flag-cache" and prepared[1].base_model is None
