"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis), against the real
server process on the tiny model, open and with keys: no 500, every answer documented (status, content type,
body schema, headers), bad input refused, auth enforced where the document says.

`positive_data_acceptance` is left out: some valid-looking requests are refused by rules a JSON Schema cannot
state (a text empty after tokenizing, duplicate step names, a max_new_tokens over the server's setting, upload
files that are not an adapter), and those refusals are 4xx by design."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.factory import adapter_configs, build_tiny_model, build_tokenizer, save_adapter
from tests.test_soak import REPO_ROOT

pytestmark = pytest.mark.fuzz

ST = Path(sys.executable).with_name("st")
KEY = "fuzz-key"


@pytest.fixture(scope="module")
def model_and_adapters(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("fuzz")
    tokenizer = build_tokenizer()
    model = build_tiny_model(len(tokenizer))
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    adapters = [save_adapter(model, config, root / kind.replace("_", "-"))
                for kind, config in list(adapter_configs(str(root / "model")).items())[:3]]
    return root / "model", adapters


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("keys", [False, True], ids=["open", "with-keys"])
def test_the_api_conforms_to_its_own_document_under_fuzzing(model_and_adapters, tmp_path, keys):
    if not ST.exists():
        pytest.fail(f"schemathesis is not installed ({ST}); `make test` installs it")
    model, adapters = model_and_adapters
    port = _free_port()
    env = {**os.environ, "DELTASERVE_ADAPTERS_DIR": str(tmp_path / "store"), "DELTASERVE_LOAD_DEMO_ADAPTERS": "false",
           "OMP_NUM_THREADS": "1", **({"DELTASERVE_ADMIN_KEY": KEY, "DELTASERVE_API_KEYS": KEY} if keys else {})}
    server = subprocess.Popen([sys.executable, "-m", "deltaserve", "serve", "--base-model", str(model), "--port",
                               str(port), "--max-new-tokens-limit", "64"], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {KEY}"} if keys else {}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        for adapter in adapters:  # names the fuzzer's requests can resolve
            files = [("files", (f.name, f.read_bytes())) for f in sorted(adapter.iterdir()) if f.suffix != ".md"]
            assert (
                httpx.put(f"{url}/adapters/{adapter.name}", files=files, headers=headers, timeout=60).status_code == 201
            )
        command = [
            str(ST),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "25",
            "--seed",
            "7",
            "--workers",
            "1",
            "--no-color",
            "--request-timeout",
            "60",
            *(["-H", f"Authorization: Bearer {KEY}"] if keys else []),
        ]
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stdout[-6000:]
        assert "passed" in run.stdout.splitlines()[-1] or "warnings" in run.stdout.splitlines()[-1]
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp_path / "store", ignore_errors=True)
