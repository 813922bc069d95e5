"""Prometheus metrics, in one registry per app (tests build many apps in one process).

Counted as things happen: requests (a middleware: route template, method, adapter, status, duration) and,
from the batcher (`BatchObserver`), time to first token, inter-token latency, rows per decode step, prompt
and generated tokens, and how rows finished. Read at scrape time (a collector): rows waiting and running
(in all and per adapter), the adapter cache's counters, admission's refusals.

Label cardinality is bounded: the first `max_adapter_labels` adapter names seen get their own `adapter`
label, every later one shares `_other`; the base model alone is `_base` (names cannot start with "_").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.engine.batcher import BatchObserver, Ticket
from service.engine.rows import RowState

if TYPE_CHECKING:
    from service.state import ServiceState

BASE_LABEL, OTHER_LABEL = "_base", "_other"
UNMATCHED_ROUTE = "_unmatched"  # paths no route serves: one label, whatever was asked
# Latencies a GPU server user cares about, from a few milliseconds (a decode step) to minutes (a long CPU run).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TOKEN_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class AdapterLabels:
    """Adapter name -> label: the first `limit` names keep theirs, later ones share `_other`."""

    def __init__(self, limit: int):
        self.limit = limit
        self._named: set[str] = set()

    def __call__(self, adapter: str | None) -> str:
        if adapter is None:
            return BASE_LABEL
        if adapter in self._named:
            return adapter
        if len(self._named) < self.limit:
            self._named.add(adapter)
            return adapter
        return OTHER_LABEL


class Metrics(BatchObserver):
    def __init__(self, max_adapter_labels: int):
        self.registry = CollectorRegistry()
        self.label = AdapterLabels(max_adapter_labels)
        r = self.registry
        self.requests = Counter("deltaserve_requests", "HTTP requests answered, by route template, method, adapter "
                                "and status", ["route", "method", "adapter", "status"], registry=r)
        self.request_seconds = Histogram("deltaserve_request_duration_seconds", "HTTP request time, from its "
                                         "arrival to the end of its answer (end to end)", ["route"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.first_token_seconds = Histogram("deltaserve_time_to_first_token_seconds", "From a row's arrival in "
                                             "the queue to its first token", ["adapter"], buckets=LATENCY_BUCKETS,
                                             registry=r)
        self.token_gap_seconds = Histogram("deltaserve_inter_token_latency_seconds", "Time between two tokens of "
                                           "one row", buckets=TOKEN_GAP_BUCKETS, registry=r)
        self.batch_rows = Histogram("deltaserve_batch_size", "Rows in each decode step", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.prompt_tokens = Counter("deltaserve_prompt_tokens", "Prompt tokens of rows that started",
                                     ["adapter"], registry=r)
        self.generated_tokens = Counter("deltaserve_generated_tokens", "Tokens generated", ["adapter"], registry=r)
        self.rows_finished = Counter("deltaserve_rows_finished", "Rows that ended, by how", ["adapter", "reason"],
                                     registry=r)

    def watch(self, state: ServiceState) -> None:
        """Read the running service's gauges and counters at every scrape from now on."""
        self.registry.register(_ServiceCollector(state, self.label))

    # -- BatchObserver: called on the event loop between forward passes; cheap --------------------------
    def step(self, rows: int) -> None:
        self.batch_rows.observe(rows)

    def tokens(self, ticket: Ticket, count: int, now: float) -> None:
        adapter = self.label(ticket.row.adapter)
        if ticket.started is None:
            self.first_token_seconds.labels(adapter).observe(now - ticket.enqueued)
            self.prompt_tokens.labels(adapter).inc(len(ticket.row.prompt_ids))
        elif ticket.last_token is not None:
            self.token_gap_seconds.observe((now - ticket.last_token) / count)
        self.generated_tokens.labels(adapter).inc(count)

    def finished(self, ticket: Ticket, state: RowState, now: float) -> None:
        self.rows_finished.labels(self.label(ticket.row.adapter), state.finish_reason or "unknown").inc()


class _ServiceCollector(Collector):
    def __init__(self, state: ServiceState, label: AdapterLabels):
        self._state, self._label = state, label

    def collect(self) -> Iterator[Metric]:
        batcher, engine, admission = self._state.batcher, self._state.engine, self._state.admission
        yield GaugeMetricFamily("deltaserve_waiting_rows", "Rows queued for the running batch", value=batcher.queued())
        yield GaugeMetricFamily("deltaserve_running_rows", "Rows in the running batch", value=batcher.running())
        per_adapter = GaugeMetricFamily("deltaserve_adapter_rows", "Rows per adapter, waiting or running",
                                        labels=["adapter", "state"])
        for row_state, counts in batcher.rows_by_adapter().items():
            summed: dict[str, int] = {}
            for adapter, rows in counts.items():
                label = self._label(adapter)
                summed[label] = summed.get(label, 0) + rows
            for label, rows in sorted(summed.items()):
                per_adapter.add_metric([label, row_state], rows)
        yield per_adapter
        cache = engine.adapters.stats
        for name, value, meaning in (
            ("hits", cache.hits, "resolved from the device tier"),
            ("promotions", cache.promotions, "moved up from the CPU tier"),
            ("loads", cache.loads, "compiled from disk: cache misses"),
            ("evictions", cache.evictions, "moved off the device tier"),
            ("cpu_evictions", cache.cpu_evictions, "dropped from the CPU tier"),
        ):
            yield CounterMetricFamily(f"deltaserve_adapter_cache_{name}", f"Adapters {meaning}", value=value)
        yield CounterMetricFamily("deltaserve_adapter_load_seconds", "Time spent compiling adapters from disk",
                                  value=cache.load_ms_total / 1000)
        refused = CounterMetricFamily("deltaserve_admission_refused", "Requests refused at admission (429 "
                                      "overloaded, 503 draining)", labels=["reason"])
        refused.add_metric(["overloaded"], admission.stats.refused_overloaded)
        refused.add_metric(["draining"], admission.stats.refused_draining)
        yield refused
        yield CounterMetricFamily("deltaserve_cancelled_waiting_rows", "Rows whose callers left before they ran",
                                  value=batcher.cancelled_waiting)


class RequestMetrics:
    """ASGI middleware: every HTTP answer counted by route template, method, adapter (`request.state.adapter`,
    set by inference routes) and status, and timed."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.monotonic(), 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            state: dict[str, Any] = scope.get("state") or {}
            adapter = self.metrics.label(state.get("adapter")) if "adapter" in state else ""
            self.metrics.requests.labels(route, scope["method"], adapter, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(time.monotonic() - started)
