"""Pipelines on the tiny model: defaults, references, concurrency through the shared batcher, validation."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from service.config import Settings
from service.engine import SamplingParams
from service.main import create_app
from tests.http_server import serve
from tests.test_api import multipart

TEXT = "When was Beiiing olymp#ic heldd ?"
STEPS = [
    {"name": "spelling", "adapter": "spelling", "max_new_tokens": 6},
    {"name": "topic", "adapter": "topic", "input": "{spelling}", "max_new_tokens": 4},
    {"name": "answer", "adapter": "qa", "input": "Q: {spelling} ({text})", "max_new_tokens": 5},
]


@pytest.fixture(scope="module")
def app_and_url(tmp_path_factory, tiny_base, adapter_dirs):
    settings = Settings(adapters_dir=tmp_path_factory.mktemp("pipes") / "store", max_batch_wait_ms=100,
                        load_demo_adapters=False)
    app = create_app(settings, base=tiny_base)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        for name, kind in (("spelling", "lora"), ("topic", "prompt_tuning"), ("qa", "prefix_tuning")):
            assert client.put(f"/adapters/{name}", **multipart(adapter_dirs[kind])).status_code == 201
        yield app, url, settings


@pytest.fixture
def client(app_and_url):
    with httpx.Client(base_url=app_and_url[1], timeout=60) as client:
        yield client


def stats(app):
    return app.state.deltaserve.engine.stats


def batches(app) -> int:
    return stats(app).forward_passes


def test_steps_chain_and_reference_earlier_outputs(client, engine):
    result = client.post("/pipeline", json={"text": TEXT, "steps": STEPS}).json()
    steps = {s["name"]: s for s in result["steps"]}
    spelling = engine.generate([TEXT], "lora", SamplingParams(max_new_tokens=6))[0].text
    assert steps["spelling"]["input"] == TEXT and result["outputs"]["spelling"] == spelling
    assert steps["topic"]["input"] == spelling.strip()
    assert steps["answer"]["input"] == f"Q: {spelling.strip()} ({TEXT})"
    topic = engine.generate([spelling.strip()], "prompt_tuning", SamplingParams(max_new_tokens=4))[0].text
    assert result["outputs"]["topic"] == topic
    assert [s["name"] for s in result["steps"]] == ["spelling", "topic", "answer"]
    assert all(s["ms"] >= 0 and s["finish_reason"] in ("stop", "length") for s in result["steps"])


def test_step_without_input_takes_the_previous_output(client):
    steps = [
        {"name": "one", "adapter": "spelling", "max_new_tokens": 4},
        {"name": "two", "adapter": None, "max_new_tokens": 3},
    ]
    result = client.post("/pipeline", json={"text": TEXT, "steps": steps}).json()
    assert result["steps"][1]["input"] == result["outputs"]["one"].strip()


def test_concurrent_pipelines_share_batches(app_and_url):
    app, url, _ = app_and_url

    async def run_many(count):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            responses = await asyncio.gather(
                *(client.post("/pipeline", json={"text": f"{TEXT} {i}", "steps": STEPS}) for i in range(count))
            )
        assert all(r.status_code == 200 for r in responses)

    passes, tokens = stats(app).forward_passes, stats(app).generated_tokens
    stats(app).most_rows = 0
    asyncio.run(run_many(4))
    passes, tokens = stats(app).forward_passes - passes, stats(app).generated_tokens - tokens
    # 4 pipelines x 3 steps = 12 generations. Alone, each token costs one forward pass; here the steps of
    # the four pipelines ride in the same passes.
    assert stats(app).most_rows >= 4
    assert passes <= tokens / 2


@pytest.mark.parametrize(
    "steps, says",
    [
        ([{"name": "a", "adapter": "nope"}], "adapter 'nope'"),
        ([{"name": "a", "adapter": None, "input": "{missing}"}], "{missing}"),
        (
            [{"name": "a", "adapter": None, "input": "{b}"}, {"name": "b", "adapter": None, "input": "{a}"}],
            "cycle: a -> b -> a",
        ),
        ([{"name": "a", "adapter": None}, {"name": "a", "adapter": None}], "duplicate step name 'a'"),
    ],
)
def test_definition_is_checked_before_any_step_runs(app_and_url, client, steps, says):
    before = batches(app_and_url[0])
    response = client.post("/pipeline", json={"text": TEXT, "steps": [{"name": "first", "adapter": None}, *steps]})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request" and says in response.json()["error"]["message"]
    assert batches(app_and_url[0]) == before


def test_named_pipelines_persist(app_and_url, client, tiny_base):
    definition = {"steps": STEPS, "description": "spell, topic, answer"}
    assert client.put("/pipelines/demo-flow", json=definition).status_code == 201
    assert client.put("/pipelines/demo-flow", json=definition).status_code == 200
    assert client.put("/pipelines/bad", json={"steps": [{"name": "a", "input": "{zzz}"}]}).status_code == 422
    listed = client.get("/pipelines").json()["pipelines"]
    assert [p["name"] for p in listed] == ["demo-flow"] and listed[0]["description"] == "spell, topic, answer"
    ran = client.post("/pipelines/demo-flow", json={"text": TEXT}).json()
    assert ran == client.post("/pipeline", json={"text": TEXT, "steps": STEPS}).json() | {"steps": ran["steps"]}
    settings = app_and_url[2]
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as again:
        assert again.get("/pipelines/demo-flow").json()["steps"][1]["input"] == "{spelling}"
        assert again.delete("/pipelines/demo-flow").status_code == 204
        missing = again.post("/pipelines/demo-flow", json={"text": TEXT})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "pipeline_not_found"


def test_a_client_that_disconnects_stops_its_pipeline(app_and_url, client, monkeypatch):
    from service.engine.decode_loop import RunningBatch

    step = RunningBatch.step

    def slow_step(self):
        time.sleep(0.01)
        return step(self)

    monkeypatch.setattr(RunningBatch, "step", slow_step)
    app, url, _ = app_and_url
    before = stats(app).cancelled_rows
    # Two independent long steps run at once; the client leaves while both are decoding.
    steps = [
        {"name": "a", "input": "The quick brown fox jumps over the lazy", "max_new_tokens": 190},
        {"name": "b", "input": "Who painted the Mona Lisa?", "max_new_tokens": 190},
    ]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/pipeline", json={"text": "unused", "steps": steps}, timeout=0.5)
    deadline = time.monotonic() + 10
    while stats(app).cancelled_rows - before < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats(app).cancelled_rows - before == 2
