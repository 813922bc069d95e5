"""The server process: uvicorn configured from `Settings`, with a header timeout and a draining shutdown.

`serve(settings)` is what `deltaserve serve` runs, and so what the Docker image's CMD runs:
- uvicorn's h11 protocol, pinned because the header timeout below is built on it; `max_connections` sets uvicorn's
  `limit_concurrency` (503 for a request on a connection past it), `keep_alive_s` its `timeout_keep_alive`,
  `shutdown_grace_s` its `timeout_graceful_shutdown`;
- `header_timeout_s`: a connection must finish sending a request's headers within this, counted from when it
  opens or, on a kept-alive connection, from the next request's first byte; otherwise it is closed, so slow
  senders (slowloris) cannot hold connections. uvicorn has no such setting; `HeaderTimeoutH11Protocol` adds it;
- SIGTERM / SIGINT: the app's admission starts draining first (new generate and pipeline requests get 503
  `shutting_down`), then uvicorn stops accepting connections, gives the running requests `shutdown_grace_s` to
  finish, runs the app's shutdown, and the process exits with status 0.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.config import Settings

__all__ = ["DrainingServer", "HeaderTimeoutH11Protocol", "build_config", "header_timeout_protocol", "serve"]

STARTUP_FAILURE = 3  # uvicorn's exit status when the app cannot start (e.g. the model does not load)


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol (one instance per connection) that closes the connection when a request's headers
    have not all arrived `header_timeout_s` after the connection opened, or after the first byte of the next
    request on a kept-alive connection. An idle kept-alive connection is left to uvicorn's keep-alive timeout."""

    header_timeout_s: ClassVar[float] = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        # h11's `their_state` is IDLE until it has parsed a whole request line and header block.
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.debug("%s: request headers not complete after %gs; closing", self.client, self.header_timeout_s)
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutH11Protocol]:
    """The protocol class to give uvicorn (it makes one per connection), with this header timeout."""

    class Protocol(HeaderTimeoutH11Protocol):
        header_timeout_s = seconds

    return Protocol


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which calls `begin_drain` on SIGTERM / SIGINT before its own graceful shutdown starts."""

    def __init__(self, config: uvicorn.Config, begin_drain: Callable[[], None]):
        super().__init__(config)
        self.begin_drain = begin_drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # First, so that a request arriving before uvicorn closes its sockets (it looks every 0.1 s) gets a 503
        # rather than a place in the batch. Only sets a flag: safe in a signal handler, and again on a second signal.
        self.begin_drain()
        super().handle_exit(sig, frame)


def build_config(app: Callable[..., Any], settings: Settings, *, log_level: str = "info") -> uvicorn.Config:
    """uvicorn's configuration for `app` (an ASGI app) from the settings."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        http=header_timeout_protocol(settings.header_timeout_s),
        ws="none",  # the API has no websockets
        lifespan="on",  # a failed start-up (the model does not load) ends the process instead of being ignored
        # uvicorn answers 503 once `open connections (this one included) >= limit`: + 1 serves max_connections.
        limit_concurrency=settings.max_connections + 1,
        # uvicorn annotates these two as int; it only hands them to call_later / wait_for, which take seconds as float.
        timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
        timeout_graceful_shutdown=settings.shutdown_grace_s,  # type: ignore[arg-type]
    )


@contextmanager
def _exit_zero_on_stop_signals() -> Iterator[None]:
    """While uvicorn runs it handles SIGTERM and SIGINT itself; when it is done it restores the handlers it found
    and raises the signal again for them (uvicorn >= 0.29, "cooperative signal handling"). Python's own defaults
    would then end the process by the signal (status 143) or a KeyboardInterrupt. The handlers installed here end
    it with status 0 instead, since the shutdown the signal asked for has been done; the same holds for a signal
    that comes before uvicorn has installed its handlers."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def exit_zero(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    previous = {sig: signal.signal(sig, exit_zero) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(settings: Settings, *, log_level: str = "info") -> int:
    """Run the server until SIGTERM / SIGINT; the exit status: 0, or STARTUP_FAILURE when it could not start."""
    # torch and the engine: imported only when a server really starts
    from service.main import create_app

    app = create_app(settings)
    config = build_config(app, settings, log_level=log_level)
    server = DrainingServer(config, begin_drain=app.state.admission.begin_drain)
    with _exit_zero_on_stop_signals():
        server.run()
    return 0 if server.started else STARTUP_FAILURE
