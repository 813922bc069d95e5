"""/metrics over real HTTP, parsed with prometheus_client's own parser: counters move by exactly the requests
made, gauges show rows held running, and the adapter label stays bounded."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.config import Settings
from service.engine.decode_loop import RunningBatch
from service.main import create_app
from tests.http_server import serve
from tests.test_api import multipart


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before, after, name, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def service(tmp_path, tiny_base, adapter_dirs):
    settings = Settings(adapters_dir=tmp_path / "store", load_demo_adapters=False, max_batch_wait_ms=1,
                        metrics_adapter_labels=2, max_concurrent_requests=3)
    app = create_app(settings, base=tiny_base)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        for name, kind in (("one", "lora"), ("two", "ia3"), ("three", "prefix_tuning")):
            assert client.put(f"/adapters/{name}", **multipart(adapter_dirs[kind])).status_code == 201
        yield app, url, client


def test_counters_move_by_exactly_the_requests_made(service):
    _, _, client = service
    before = scrape(client)
    answers = [client.post("/generate", json={"adapter": adapter, "text": text, "max_new_tokens": 5})
               for adapter, text in [("one", "Paris"), ("one", "Who painted the Mona Lisa?"), ("two", "Paris"),
                                     ("three", "Paris"), (None, "The quick brown fox")]]
    assert all(a.status_code == 200 for a in answers)
    missing = client.post("/generate", json={"adapter": "nope", "text": "Paris"})
    invalid = client.post("/generate", json={"text": "Paris", "max_new_tokens": 0})
    assert (missing.status_code, invalid.status_code) == (404, 422)
    after = scrape(client)

    route = {"route": "/generate", "method": "POST"}
    assert moved(before, after, "deltaserve_requests_total", **route, adapter="one", status="200") == 2
    assert moved(before, after, "deltaserve_requests_total", **route, adapter="two", status="200") == 1
    # Only two adapters get their own label: "three" (the third seen) and "nope" share _other.
    assert moved(before, after, "deltaserve_requests_total", **route, adapter="_other", status="200") == 1
    assert moved(before, after, "deltaserve_requests_total", **route, adapter="_base", status="200") == 1
    assert moved(before, after, "deltaserve_requests_total", **route, adapter="_other", status="404") == 1
    # Refused by validation before the route ran: no adapter was named yet.
    assert moved(before, after, "deltaserve_requests_total", **route, adapter="", status="422") == 1
    assert moved(before, after, "deltaserve_request_duration_seconds_count", route="/generate") == 7

    outputs = [a.json() for a in answers]
    for label, indices in (("one", [0, 1]), ("two", [2]), ("_other", [3]), ("_base", [4])):
        assert moved(before, after, "deltaserve_prompt_tokens_total", adapter=label) == \
            sum(outputs[i]["prompt_tokens"] for i in indices)
        assert moved(before, after, "deltaserve_generated_tokens_total", adapter=label) == \
            sum(outputs[i]["completion_tokens"] for i in indices)
    generated = sum(o["completion_tokens"] for o in outputs)
    firsts = sum(moved(before, after, "deltaserve_time_to_first_token_seconds_count", adapter=label)
                 for label in ("one", "two", "_other", "_base"))
    assert firsts == 5
    # Every token but each row's first is one gap.
    assert moved(before, after, "deltaserve_inter_token_latency_seconds_count") == generated - 5
    reasons = sum(moved(before, after, "deltaserve_rows_finished_total", adapter=label, reason=reason)
                  for label in ("one", "two", "_other", "_base") for reason in ("stop", "length"))
    assert reasons == 5
    assert moved(before, after, "deltaserve_adapter_cache_hits_total") == 4  # every adapter request, resident


def test_gauges_show_rows_held_running_and_refusals_are_counted(service, monkeypatch):
    app, url, client = service
    gate = threading.Event()
    step = RunningBatch.step
    monkeypatch.setattr(RunningBatch, "step", lambda batch: gate.wait(60) and step(batch))
    # The three held requests must join in one prefill (the gate holds every step, so a late one could never
    # join them): the idle batcher waits up to this long for its batch to fill.
    monkeypatch.setattr(app.state.deltaserve.batcher, "max_batch_wait", 2.0)
    before = scrape(client)

    async def scenario():
        async with httpx.AsyncClient(base_url=url, timeout=60) as aclient:
            held = [
                asyncio.ensure_future(
                    aclient.post("/generate", json={"adapter": a, "text": "Paris", "max_new_tokens": 4})
                )
                for a in ("one", "one", "two")
            ]
            async def held_running() -> None:
                while (await aclient.get("/stats")).json()["queue"]["running_rows"] < 3:
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(held_running(), 30)
            during = scrape(client)
            refused = await aclient.post("/generate", json={"text": "Paris"})
            gate.set()
            await asyncio.gather(*held)
            return during, refused

    try:
        during, refused = asyncio.run(scenario())
    finally:
        gate.set()
    assert refused.status_code == 429
    assert value(during, "deltaserve_running_rows") == 3 and value(during, "deltaserve_waiting_rows") == 0
    assert value(during, "deltaserve_adapter_rows", adapter="one", state="running") == 2
    assert value(during, "deltaserve_adapter_rows", adapter="two", state="running") == 1
    after = scrape(client)
    assert moved(before, after, "deltaserve_admission_refused_total", reason="overloaded") == 1
    assert value(after, "deltaserve_running_rows") == 0
    assert moved(before, after, "deltaserve_batch_size_count") > 0
