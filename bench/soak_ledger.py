"""Every request the soak sends, what it expected and what came back: the ledger the verdict is read from.

A request ends in exactly one way: a 2xx answer with a valid body, a 429 shed with Retry-After, a clean
refusal (an expected 4xx with `{"error": {"code", "message"}}`), a 503 past its deadline, a failure (500,
another 5xx, a transport error), or its own client's cancellation. Anything the request's `Expect` does not
allow is also a violation.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

OVERLOADED, PAST_DEADLINE = (429, "overloaded"), (503, "deadline_exceeded")  # the documented sheddings
Validator = Callable[[Any], str | None]  # a valid 2xx body -> None, else what is wrong with it


@dataclass(frozen=True)
class Expect:
    """What a request may be answered with. `sheddable`: an inference request, so 429 with Retry-After (and
    503 past its deadline) are clean refusals too."""

    statuses: frozenset[int]
    sheddable: bool = False
    validate: Validator | None = None
    events: bool = False  # a 2xx is Server-Sent Events: `validate` gets them as [(event name or None, data)]

    @classmethod
    def of(
        cls, *statuses: int, sheddable: bool = False, validate: Validator | None = None, events: bool = False
    ) -> Expect:
        return cls(frozenset(statuses), sheddable, validate, events)


def parse_events(text: str) -> list[tuple[str | None, str]]:
    """Server-Sent Events -> [(event name or None, data)], in order; blank-line separated, one data line each."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        events.append((fields.get("event"), fields.get("data", "")))
    return events


@dataclass
class Outcome:
    action: str  # what was sent, e.g. "generate.greedy", "poison.seed_2_70", "churn.replace"
    status: int | None  # None: no HTTP answer (a transport error or our own cancellation)
    code: str | None  # a refusal's error code
    seconds: float
    cancelled: bool = False
    violation: str | None = None
    at_s: float = 0.0  # when it was sent, in seconds since the ledger was opened

    @property
    def answered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def failed(self) -> bool:
        return (not self.cancelled and self.status is None) or (self.status is not None and self.status >= 500
                                                               and not self.past_deadline)

    @property
    def past_deadline(self) -> bool:
        return (self.status, self.code) == PAST_DEADLINE


def error_code(response: httpx.Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else None


def is_error_body(response: httpx.Response) -> bool:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str)


def judge(response: httpx.Response, expect: Expect) -> str | None:
    """None when the answer is one `expect` allows and well formed, else what is wrong."""
    status = response.status_code
    if expect.sheddable and status in (429, 503):
        if not response.headers.get("retry-after"):
            return f"{status} without Retry-After"
        if (status, error_code(response)) in (PAST_DEADLINE, OVERLOADED):
            return None
    if status not in expect.statuses:
        return f"unexpected status {status}: {response.text[:300]}"
    if status >= 400:
        return None if is_error_body(response) else f"{status} without an error body: {response.text[:300]}"
    if status == 204 or expect.validate is None:
        return None
    if expect.events:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return f"{status} that is not an event stream: {response.text[:300]}"
        return expect.validate(parse_events(response.text))
    try:
        body = response.json()
    except ValueError:
        return f"{status} with a body that is not JSON: {response.text[:300]}"
    return expect.validate(body)


@dataclass
class Ledger:
    outcomes: list[Outcome] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    inconsistencies: list[dict[str, Any]] = field(default_factory=list)
    first_answers: dict[str, str] = field(default_factory=dict)
    opened: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return round(time.monotonic() - self.opened, 3)

    def record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if outcome.violation:
            self.violate(outcome.action, outcome.violation, status=outcome.status, at_s=outcome.at_s)

    def violate(self, action: str, what: str, **details: Any) -> None:
        self.violations.append({"action": action, "what": what, "at_s": self.now(), **details})

    def compare(self, key: dict[str, Any], text: str) -> None:
        """Greedy and seeded requests are reproducible whatever shares their batch (README); a request seen
        before must give the text it gave the first time."""
        label = json.dumps(key, sort_keys=True)
        first = self.first_answers.setdefault(label, text)
        if first != text:
            self.inconsistencies.append({"request": key, "first": first, "now": text})

    def counts(self) -> dict[str, Any]:
        refused = Counter(f"{o.status} {o.code}" for o in self.outcomes
                          if o.status is not None and 400 <= o.status < 500 and o.status != 429)
        failed = Counter(f"{o.status} {o.code}" if o.status is not None else "transport error"
                         for o in self.outcomes if o.failed)
        return {
            "sent": len(self.outcomes),
            "answered_2xx": sum(o.answered for o in self.outcomes),
            "shed_429": sum(o.status == 429 for o in self.outcomes),
            "refused_4xx": sum(refused.values()),
            "refused_by_code": dict(sorted(refused.items())),
            "past_deadline_503": sum(o.past_deadline for o in self.outcomes),
            "failed": sum(failed.values()),
            "failed_by_kind": dict(sorted(failed.items())),
            "cancelled_by_soak": sum(o.cancelled for o in self.outcomes),
            "by_action": dict(sorted(Counter(o.action for o in self.outcomes).items())),
        }

    def latencies_ms(self, prefixes: tuple[str, ...]) -> list[float]:
        """Latencies of the 2xx answers to actions starting with one of `prefixes`."""
        return sorted(o.seconds * 1000 for o in self.outcomes if o.answered and o.action.startswith(prefixes))

    def outcome_rows(self) -> list[dict[str, Any]]:
        return [asdict(o) for o in self.outcomes]


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None for none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(len(sorted_values) * fraction))
    return sorted_values[rank - 1]
