"""`deltaserve serve` and `prepare-model` with nothing started: the server launcher and the model preparation are
replaced."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from service import cli as server_cli
from tests.cli.helpers import Run

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


def test_serve_replicas_must_be_positive(served: Served, run: Run, clean_env: pytest.MonkeyPatch) -> None:
    code, _, err = run("serve", "--replicas", "0")
    assert code == 2 and "--replicas must be at least 1" in err and served.calls == []


def test_serve_replicas_without_ray_says_what_to_install(served: Served, run: Run, clean_env: pytest.MonkeyPatch,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as on a machine without the extra
    monkeypatch.delitem(sys.modules, "service.ray_serve.launch", raising=False)
    monkeypatch.delitem(sys.modules, "service.ray_serve.app", raising=False)
    monkeypatch.delitem(sys.modules, "service.ray_serve.deployments", raising=False)
    import service.ray_serve  # the package keeps its submodules as attributes once any test has imported them

    for submodule in ("launch", "app", "deployments"):
        monkeypatch.delattr(service.ray_serve, submodule, raising=False)
    code, _, err = run("serve", "--replicas", "2")
    assert code == 2 and "pip install 'deltaserve[ray]'" in err and served.calls == []
