"""The real `deltaserve serve` command as a subprocess, on the tiny test model saved to a directory: SIGTERM (or
SIGINT) while generations are running lets every one of them finish, refuses new connections, and exits with
status 0.

New requests are checked after uvicorn has closed its listening socket, so they are refused connections. A request
that arrives between the signal and that moment (at most 0.1 s) reaches the app, which answers it with 503
`shutting_down` once the admission is wired into the routes; that answer is the routes' tests' business."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy_helpers import local_command, local_env

GRACE_S = 60.0  # generous: the drain below takes seconds on a loaded 2-core machine
REQUESTS = 8
NEW_TOKENS = 200  # the tiny model holds 256 positions; long enough to be running when SIGTERM comes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model: Any, tokenizer: Any) -> Path:
    """The tiny model and its tokenizer as a local directory that DELTASERVE_BASE_MODEL can name."""
    directory = tmp_path_factory.mktemp("tiny-model")
    tiny_model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def server(model_dir: Path, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    env = local_env(
        DELTASERVE_BASE_MODEL=str(model_dir), DELTASERVE_DEVICE="cpu", DELTASERVE_LOAD_DEMO_ADAPTERS="false",
        DELTASERVE_ADAPTERS_DIR=str(tmp_path / "store"), DELTASERVE_MAX_BATCH_SIZE=str(REQUESTS),
    )
    command = local_command(["deltaserve", "serve", "--port", str(port), "--shutdown-grace-s", str(GRACE_S)])
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    served = Server(process, f"http://127.0.0.1:{port}", port, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{served.url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not become ready:\n{served.log_tail()}")
            time.sleep(0.2)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:  # refused: nothing listens any more
        return False


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    at: float  # time.monotonic() when it was read


def generate(url: str, index: int) -> Answer:
    body = {"text": f"The quick brown fox {index}", "max_new_tokens": NEW_TOKENS}
    response = httpx.post(f"{url}/generate", json=body, timeout=GRACE_S + 60)
    is_json = response.headers.get("content-type", "").startswith("application/json")
    return Answer(response.status_code, response.json() if is_json else {"text": response.text}, time.monotonic())


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_finishes_running_requests_refuses_new_ones_and_exits_0(server: Server, stop_signal: int) -> None:
    with ThreadPoolExecutor(REQUESTS) as pool:
        running = [pool.submit(generate, server.url, i) for i in range(REQUESTS)]
        # Every request has been accepted and is in the running batch before the signal.
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/stats", timeout=10).json()["engine"]["rows"] < REQUESTS:
            assert not any(f.done() for f in running), "a request ended before all of them were running"
            assert time.monotonic() < deadline, "the requests did not all start"
            time.sleep(0.02)
        server.process.send_signal(stop_signal)

        # uvicorn stops accepting connections (it looks every 0.1 s) while the generations go on.
        deadline = time.monotonic() + 30
        while accepts_connections(server.port):
            assert time.monotonic() < deadline, "the server still accepts connections after the signal"
            time.sleep(0.02)
        stopped_accepting = time.monotonic()
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"{server.url}/generate", json={"text": "too late", "max_new_tokens": 1}, timeout=10)

        answers = [future.result(timeout=GRACE_S + 60) for future in running]

    for answer in answers:
        assert answer.status == 200, answer.body
        assert answer.body["finish_reason"] in ("length", "stop") and answer.body["completion_tokens"] >= 1
    assert any(answer.body["finish_reason"] == "length" and answer.body["completion_tokens"] == NEW_TOKENS
               for answer in answers)
    # Not vacuous: some generations were still running after the server had stopped accepting connections.
    assert any(answer.at > stopped_accepting for answer in answers), server.log_tail()

    assert server.process.wait(timeout=GRACE_S) == 0, server.log_tail()
