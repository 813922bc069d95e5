"""The soak's shared client: what the server holds (`Catalogue`), and `Soak`, which sends one request and records
how it ended in the ledger."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.soak_ledger import Expect, Ledger, Outcome, error_code, judge
from bench.soak_server import Limits

PROMPTS = [
    "What is the capital of France?",
    "Which planet is the largest in the solar system?",
    "Who painted the Mona Lisa?",
    "When was the Beijing Olympic held?",
    "Name three colours of the rainbow.",
    "The quick brown fox jumps over the lazy",
]
FINISH_REASONS = frozenset({"stop", "length", "timeout"})
NAMED_PIPELINE = "soak-chain"
CANCEL_NEW_TOKENS = 64  # long enough that the cancellation usually lands mid-generation
MAX_BACKOFF_S = 5.0


@dataclass
class Catalogue:
    """What the server holds, as the soak's requests pick from it."""

    stable: list[str]  # adapters never replaced or deleted during the run
    swapped: list[str]  # replaced again and again while requests for them run
    pipelines: dict[str, list[str]]  # named pipeline -> its step names
    base_model: str = ""  # the base model's name on the OpenAI routes (what /ready reports)
    chat_template: bool = True  # the base model's tokenizer has one (else chat is refused, and not sent)
    versions: dict[str, int] = field(default_factory=dict)  # the swapped adapters' current versions
    temporary: list[str] = field(default_factory=list)  # created then deleted by the churn, most recent last


class Soak:
    """One run's client, ledger, limits and clock, shared by every task."""

    def __init__(self, client: httpx.AsyncClient, ledger: Ledger, limits: Limits, catalogue: Catalogue,
                 deadline: float, compare_answers: bool, excluded: tuple[str, ...] = ()):
        self.client = client
        self.ledger = ledger
        self.limits = limits
        self.catalogue = catalogue
        self.deadline = deadline
        self.compare_answers = compare_answers
        from bench.soak_hostile import poisons  # the poisons are requests sent through a Soak: imported late

        self.poisons = [p for p in poisons(limits) if not any(word in p.label for word in excluded)]

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def send(self, action: str, method: str, path: str, expect: Expect, *, back_off: bool = True,
                   **kwargs: Any) -> httpx.Response | None:
        """Send one request and record how it ended; the response when it came back as `expect` allows. Shed
        with 429, it waits Retry-After before returning (unless `back_off` is False), as clients should."""
        at_s, started = self.ledger.now(), time.perf_counter()
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            self.ledger.record(Outcome(action, None, None, time.perf_counter() - started, at_s=at_s,
                                       violation=f"transport error: {type(exc).__name__}: {exc!r}"))
            return None
        violation = judge(response, expect)
        code = error_code(response) if response.status_code >= 400 else None
        self.ledger.record(Outcome(action, response.status_code, code, time.perf_counter() - started,
                                   violation=violation, at_s=at_s))
        if response.status_code == 429 and back_off:
            await asyncio.sleep(retry_after_s(response))
        return response if violation is None else None


def retry_after_s(response: httpx.Response, most: float = MAX_BACKOFF_S) -> float:
    try:
        return min(float(response.headers.get("retry-after", 1)), most)
    except ValueError:
        return 1.0
