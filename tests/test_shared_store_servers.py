"""Two servers (two engines, as two replicas) on one store folder, over real HTTP: whatever one of them writes,
the other serves at its next request for that name, never a version older than the writer's answer."""

from __future__ import annotations

import copy

import httpx
import pytest

from service.config import Settings
from service.engine.base_model import wrap_base_model
from service.main import create_app
from tests.http_server import serve
from tests.test_api import multipart

PROMPT = "When was the Beijing Olympic held?"


@pytest.fixture
def two_servers(tmp_path, tiny_model, tokenizer):
    settings = Settings(adapters_dir=tmp_path / "shared", max_batch_wait_ms=5, load_demo_adapters=False)
    bases = [wrap_base_model(copy.deepcopy(tiny_model), tokenizer, name="tiny-llama") for _ in range(2)]
    with serve(create_app(settings, base=bases[0])) as first, serve(create_app(settings, base=bases[1])) as second, \
            httpx.Client(base_url=first, timeout=60) as a, httpx.Client(base_url=second, timeout=60) as b:
        yield a, b


def _generate(client: httpx.Client, adapter: str | None) -> httpx.Response:
    return client.post("/generate", json={"adapter": adapter, "text": PROMPT, "max_new_tokens": 8})


def test_uploads_replacements_and_deletes_by_one_server_are_served_by_the_other(two_servers, adapter_dirs):
    a, b = two_servers
    assert _generate(b, "shared").json()["error"]["code"] == "adapter_not_found"  # b has looked it up: unknown
    assert a.put("/adapters/shared", **multipart(adapter_dirs["lora"])).status_code == 201
    first = _generate(a, "shared").json()["text"]
    assert first != _generate(a, None).json()["text"]  # the adapter changes the answer, so a stale one would show
    assert _generate(b, "shared").json()["text"] == first
    assert b.get("/adapters/shared").json()["version"] == 1

    # Replaced through b (which now holds version 1 compiled): a switches at its next request.
    assert b.put("/adapters/shared", **multipart(adapter_dirs["prefix_tuning"])).status_code == 200
    second = _generate(b, "shared").json()["text"]
    assert second != first
    assert _generate(a, "shared").json()["text"] == second
    assert a.get("/adapters/shared").json()["version"] == 2
    assert [m["id"] for m in a.get("/v1/models").json()["data"]][1:] == ["shared"]

    # A new template alone is a new version too: the other server applies it.
    templated = b.put("/adapters/shared", **multipart(adapter_dirs["prefix_tuning"], prompt_template="Q: {text}\nA:"))
    assert templated.json()["version"] == 3
    with_template = _generate(b, "shared").json()["text"]
    assert _generate(a, "shared").json()["text"] == with_template != second

    assert a.delete("/adapters/shared").status_code == 204
    answer = _generate(b, "shared")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "adapter_not_found"
    assert b.get("/adapters").json() == {"adapters": []}
    assert b.post("/v1/completions", json={"model": "shared", "prompt": PROMPT}).status_code == 404


def test_pipelines_stored_by_one_server_run_on_the_other(two_servers, adapter_dirs):
    a, b = two_servers
    assert a.put("/adapters/first", **multipart(adapter_dirs["lora"])).status_code == 201
    definition = {"steps": [{"name": "one", "adapter": "first", "max_new_tokens": 6},
                            {"name": "two", "adapter": None, "max_new_tokens": 6}]}
    assert a.put("/pipelines/chain", json=definition).status_code == 201
    assert b.get("/pipelines/chain").json()["steps"][0]["adapter"] == "first"
    ran_on_a = a.post("/pipelines/chain", json={"text": PROMPT}).json()["outputs"]
    assert b.post("/pipelines/chain", json={"text": PROMPT}).json()["outputs"] == ran_on_a
    assert b.delete("/pipelines/chain").status_code == 204
    assert a.post("/pipelines/chain", json={"text": PROMPT}).json()["error"]["code"] == "pipeline_not_found"
