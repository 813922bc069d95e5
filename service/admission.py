"""Admission control: how much work may be queued or running at once, and refusing the rest early.

Like TGI's `max_concurrent_requests` and vLLM's token budget: a request past a bound is refused at once
with 429 and Retry-After (nothing of it has run), instead of waiting in an unbounded queue. While the
server drains for shutdown, every new request gets 503. A request takes a lease when it arrives and gives
it back when it ends, however it ends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from service.errors import InvalidRequest, Overloaded, ShuttingDown


@dataclass
class AdmissionStats:
    admitted: int = 0
    refused_overloaded: int = 0
    refused_draining: int = 0


class Lease:
    """One request's share: one request slot plus the tokens it has declared so far."""

    def __init__(self, admission: Admission):
        self._admission = admission
        self.tokens = 0
        self._open = True

    def add_tokens(self, tokens: int, *, refuse: bool = True) -> None:
        """Declare `tokens` more (prompt + new tokens of rows about to be queued); past the bound this raises
        Overloaded, unless `refuse` is False (work of a request that was admitted as a whole)."""
        self._admission._take_tokens(tokens, refuse)
        self.tokens += tokens

    def give_back_tokens(self, tokens: int) -> None:
        """Those rows are done; the request may go on (a pipeline's next step)."""
        self._admission._give_back_tokens(tokens)
        self.tokens -= tokens

    def release(self) -> None:
        if self._open:
            self._open = False
            self._admission._give_back(self.tokens)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Admission:
    def __init__(self, *, max_requests: int, max_tokens: int):
        self.max_requests, self.max_tokens = max_requests, max_tokens
        self.requests = 0  # requests holding a lease
        self.tokens = 0  # tokens they declared
        self.draining = False
        self.stats = AdmissionStats()
        self._lock = threading.Lock()

    def begin_drain(self) -> None:
        """From now on every new request is refused with 503 (the server is about to exit)."""
        self.draining = True

    def lease(self) -> Lease:
        """A request slot, or ShuttingDown (503) / Overloaded (429)."""
        with self._lock:
            if self.draining:
                self.stats.refused_draining += 1
                raise ShuttingDown("the server is shutting down; retry on another instance or shortly")
            if self.requests >= self.max_requests:
                self.stats.refused_overloaded += 1
                raise Overloaded(
                    f"{self.requests} requests are already queued or running (DELTASERVE_MAX_CONCURRENT_REQUESTS); "
                    "retry shortly"
                )
            self.requests += 1
            self.stats.admitted += 1
        return Lease(self)

    def _take_tokens(self, tokens: int, refuse: bool) -> None:
        if refuse and tokens > self.max_tokens:  # could never be admitted, however long the client waits
            raise InvalidRequest(
                f"the request needs {tokens} tokens (prompts + max_new_tokens), more than the "
                f"{self.max_tokens} the server holds for all requests together (DELTASERVE_MAX_QUEUED_TOKENS)"
            )
        with self._lock:
            if refuse and self.tokens + tokens > self.max_tokens:
                self.stats.refused_overloaded += 1
                raise Overloaded(
                    f"queued and running requests hold {self.tokens} of {self.max_tokens} tokens "
                    "(DELTASERVE_MAX_QUEUED_TOKENS); retry shortly"
                )
            self.tokens += tokens

    def _give_back_tokens(self, tokens: int) -> None:
        with self._lock:
            self.tokens -= tokens

    def _give_back(self, tokens: int) -> None:
        with self._lock:
            self.requests -= 1
            self.tokens -= tokens

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests,
                "tokens": self.tokens,
                "max_requests": self.max_requests,
                "max_tokens": self.max_tokens,
                "draining": self.draining,
                **self.stats.__dict__,
            }
