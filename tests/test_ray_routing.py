"""The router's pure parts, without Ray: which adapter a request's body routes it by, and the per-replica merge
of Prometheus expositions."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.ray_serve.merged_metrics import merge_expositions
from service.ray_serve.routing import routing_key

EXISTING = {"qa", "topic"}
PIPELINES = {"stored": [{"adapter": None}, {"adapter": "topic"}], "unknown-first": [{"adapter": "gone"}]}


def key(method: str, path: str, body: object = b"") -> str | None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return routing_key(method, path, raw, adapter_exists=EXISTING.__contains__,
                       pipeline_steps=lambda name: PIPELINES.get(name))


@pytest.mark.parametrize(("method", "path", "body", "expected"), [
    ("POST", "/generate", {"adapter": "qa", "text": "x"}, "qa"),
    ("POST", "/generate", {"adapter": None, "text": "x"}, None),  # the base model: any replica
    ("POST", "/generate", {"adapter": "nope", "text": "x"}, None),  # unknown: any replica answers the 404
    ("POST", "/generate", {"adapter": "../../etc", "text": "x"}, None),  # never a name outside the rule
    ("POST", "/generate", {"adapter": ["qa"]}, None),
    ("POST", "/generate", b"{not json", None),
    ("POST", "/generate", b"[" * 100000, None),  # too deep to parse: the replica answers the 400
    ("POST", "/v1/completions", {"model": "qa", "prompt": "x"}, "qa"),
    ("POST", "/v1/chat/completions", {"model": "SmolLM2-135M-Instruct", "messages": []}, None),
    ("POST", "/pipeline", {"text": "x", "steps": [{"adapter": None}, {"adapter": "topic"}, {"adapter": "qa"}]},
     "topic"),
    ("POST", "/pipelines/stored", {"text": "x"}, "topic"),
    ("POST", "/pipelines/unknown-first", {"text": "x"}, None),
    ("POST", "/pipelines/missing", {"text": "x"}, None),
    ("PUT", "/adapters/qa", b"PK\x03\x04", "qa"),  # a new version goes where the old one is warm
    ("PUT", "/adapters/new-one", b"PK\x03\x04", None),
    ("GET", "/adapters/qa", b"", None),
    ("DELETE", "/adapters/qa", b"", None),
    ("GET", "/generate", {"adapter": "qa"}, None),
])
def test_routing_key(method, path, body, expected):
    assert key(method, path, body) == expected


def _exposition(value: float) -> str:
    registry = CollectorRegistry()
    Counter("deltaserve_requests", "requests", ["route"], registry=registry).labels(route="/generate").inc(value)
    return generate_latest(registry).decode()


def test_metrics_of_every_replica_merge_into_one_exposition_labelled_by_replica():
    merged = merge_expositions({"b": _exposition(2), "a": _exposition(3)}).decode()
    [family] = [f for f in text_string_to_metric_families(merged) if f.name == "deltaserve_requests"]
    totals = {s.labels["replica"]: s.value for s in family.samples if s.name == "deltaserve_requests_total"}
    assert totals == {"a": 3.0, "b": 2.0}
    types = [line for line in merged.splitlines() if line.startswith("# TYPE deltaserve_requests_total")]
    assert len(types) == 1  # one family, as the text format requires
