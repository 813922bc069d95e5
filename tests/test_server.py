"""The server launcher (service/server.py): uvicorn's settings, the header timeout against slow senders, the
connection limit, and the drain that SIGTERM starts. uvicorn runs in this process, on a trivial app."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from service.config import Settings
from service.server import DrainingServer, HeaderTimeoutH11Protocol, build_config

HEADER_TIMEOUT = 1.0
DRIP_INTERVAL = 0.5  # a slowloris client sends one byte this often: never silent for a whole header timeout
REQUEST = b"GET /hello HTTP/1.1\r\nHost: test\r\nUser-Agent: slow\r\nAccept: */*\r\n\r\n"


def hello_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


@dataclass
class Running:
    server: DrainingServer
    url: str
    port: int

    def connections(self) -> int:
        return len(self.server.server_state.connections)


@contextmanager
def running(settings: Settings) -> Iterator[Running]:
    """The launcher's server (build_config + DrainingServer) on a free loopback port, in a thread."""
    server = DrainingServer(build_config(hello_app(), settings, log_level="warning"), begin_drain=lambda: None)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Running(server, f"http://127.0.0.1:{port}", port)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@dataclass
class Drip:
    """What a slowloris client saw: whether the server closed the connection, after how long and how many bytes."""

    closed: bool
    seconds: float
    bytes_sent: int
    answer: bytes = b""


def drip(sock: socket.socket, data: bytes, started: threading.Event | None = None) -> Drip:
    """Send `data` one byte every DRIP_INTERVAL on `sock`, until the server closes it (or answers)."""
    start = time.monotonic()
    sock.settimeout(DRIP_INTERVAL)
    sent = 0
    try:
        for byte in data:
            sock.sendall(bytes([byte]))
            sent += 1
            if started is not None:
                started.set()
            try:
                answer = sock.recv(1024)
            except TimeoutError:
                continue  # still open, nothing said: send the next byte
            return Drip(closed=answer == b"", seconds=time.monotonic() - start, bytes_sent=sent, answer=answer)
    except (BrokenPipeError, ConnectionResetError):
        return Drip(closed=True, seconds=time.monotonic() - start, bytes_sent=sent)
    return Drip(closed=False, seconds=time.monotonic() - start, bytes_sent=sent)


def open_socket(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response (the hello app's have a Content-Length), read off a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1024)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(1024)
    return data


def test_config_takes_the_settings() -> None:
    settings = Settings(
        host="127.0.0.2", port=8123, max_connections=7, keep_alive_s=2.5, shutdown_grace_s=4.0, header_timeout_s=1.5
    )
    config = build_config(hello_app(), settings, log_level="debug")
    assert (config.host, config.port) == ("127.0.0.2", 8123)
    assert config.limit_concurrency == 8  # uvicorn refuses at `open connections >= limit`: 7 are served
    assert (config.timeout_keep_alive, config.timeout_graceful_shutdown) == (2.5, 4.0)
    assert isinstance(config.http, type) and issubclass(config.http, HeaderTimeoutH11Protocol)
    assert config.http.header_timeout_s == 1.5
    assert config.lifespan == "on"


def test_exit_signal_drains_first() -> None:
    """On SIGTERM the app is told to drain before uvicorn's own shutdown is set off."""
    config = build_config(hello_app(), Settings())
    exiting_when_drain_began: list[bool] = []

    def begin_drain() -> None:
        exiting_when_drain_began.append(draining.should_exit)

    draining = DrainingServer(config, begin_drain=begin_drain)
    draining.handle_exit(signal.SIGTERM, None)
    assert exiting_when_drain_began == [False] and draining.should_exit


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with running(Settings(port=0, header_timeout_s=HEADER_TIMEOUT, keep_alive_s=30)) as served:
        yield served


def test_slow_senders_are_closed_while_others_are_served(server: Running) -> None:
    slow = [open_socket(server.port) for _ in range(3)]
    started = [threading.Event() for _ in slow]
    with ThreadPoolExecutor(len(slow)) as pool:
        drips = [pool.submit(drip, sock, REQUEST, event) for sock, event in zip(slow, started)]
        for event in started:
            assert event.wait(10)
        # Meanwhile: every slow connection is open and has begun its headers.
        assert httpx.get(f"{server.url}/hello", timeout=10).json() == {"hello": "world"}
        results = [future.result(timeout=30) for future in drips]
    for sock in slow:
        sock.close()
    for result in results:
        assert result.closed and result.answer == b""
        assert result.bytes_sent < len(REQUEST)  # closed long before its headers could be complete
        assert result.seconds < HEADER_TIMEOUT + 3.0  # generous: the timeout, not the end of the drip


def test_headers_complete_in_time_are_served(server: Running) -> None:
    """A pause inside the headers is fine while the whole header block arrives within the timeout."""
    with open_socket(server.port) as sock:
        sock.sendall(REQUEST[:10])
        time.sleep(HEADER_TIMEOUT / 3)
        sock.sendall(REQUEST[10:])
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")


def test_the_timeout_counts_again_for_each_request_on_a_kept_alive_connection(server: Running) -> None:
    with open_socket(server.port) as sock:
        sock.sendall(REQUEST)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        # Idle for longer than the header timeout: that is the keep-alive timeout's business (30 s here).
        time.sleep(HEADER_TIMEOUT * 1.5)
        sock.sendall(REQUEST)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        # The next request's headers are timed from its first byte.
        result = drip(sock, REQUEST)
    assert result.closed and result.bytes_sent < len(REQUEST)
    assert result.seconds < HEADER_TIMEOUT + 3.0


def test_max_connections_and_the_header_timeout_free_them() -> None:
    with running(Settings(port=0, max_connections=2, header_timeout_s=HEADER_TIMEOUT)) as served:
        first = open_socket(served.port)
        first.sendall(REQUEST[:1])
        wait_for(lambda: served.connections() == 1, "the first slow connection")
        assert httpx.get(f"{served.url}/hello", timeout=10).status_code == 200  # 2 open: within the limit
        wait_for(lambda: served.connections() == 1, "the answered connection to close")
        second = open_socket(served.port)
        second.sendall(REQUEST[:1])
        wait_for(lambda: served.connections() == 2, "the second slow connection")
        assert httpx.get(f"{served.url}/hello", timeout=10).status_code == 503  # a third is one too many
        for sock in (first, second):
            sock.settimeout(HEADER_TIMEOUT + 5.0)
            assert sock.recv(1024) == b""  # closed by the header timeout
            sock.close()
        wait_for(lambda: served.connections() == 0, "the slow connections to be gone")
        assert httpx.get(f"{served.url}/hello", timeout=10).status_code == 200
