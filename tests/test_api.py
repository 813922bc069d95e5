"""The service through real HTTP (uvicorn on loopback) on the tiny model: uploads of every kind, generation,
replacement while requests are in flight, deletion, restart on the same store."""

from __future__ import annotations

import asyncio
import io
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from service.config import Settings
from service.engine.batcher import Batcher
from service.engine.decode_loop import RunningBatch
from service.main import create_app
from tests.conftest import KINDS
from tests.http_server import serve

FILES = ("adapter_config.json", "adapter_model.safetensors")
PROMPT = "When was the Beijing Olympic held?"


def multipart(directory: Path, **fields):
    return {
        "files": [("files", (name, (directory / name).read_bytes(), "application/octet-stream")) for name in FILES],
        "data": fields,
    }


def zip_bytes(directory: Path, folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in FILES:
            archive.write(directory / name, f"{folder}{name}")
    return buffer.getvalue()


def tar_gz_bytes(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in FILES:
            archive.add(directory / name, arcname=f"adapter/{name}")
    return buffer.getvalue()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(adapters_dir=tmp_path / "store", max_batch_wait_ms=20, load_demo_adapters=False)


@pytest.fixture
def server(settings, tiny_base):
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def greedy(client, adapter, text=PROMPT, **params):
    response = client.post("/generate", json={"adapter": adapter, "text": text, "max_new_tokens": 8, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_health_ready_and_docs(server):
    assert server.get("/health").json() == {"status": "ok"}
    ready = server.get("/ready").json()
    assert ready["status"] == "ready" and ready["base_model"] == "tiny-llama"
    assert server.get("/docs").status_code == 200
    paths = server.get("/openapi.json").json()["paths"]
    assert {"/generate", "/adapters/{name}", "/pipeline", "/pipelines/{name}"} <= set(paths)


@pytest.mark.parametrize("kind", KINDS)
def test_upload_every_kind_in_both_forms_and_generate(kind, server, adapter_dirs, engine):
    directory = adapter_dirs[kind]
    created = server.put(f"/adapters/{kind}", **multipart(directory, description="made by peft"))
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["version"] == 1 and record["description"] == "made by peft"
    assert record["kind"] == engine.get(kind).kind and record["parameters"] > 0 and len(record["sha256"]) == 64
    output = greedy(server, kind)
    expected = engine.generate([PROMPT], kind, engine_params(8))[0]
    assert output["text"] == expected.text and output["completion_tokens"] == expected.completion_tokens

    archive = zip_bytes(directory, "adapter/") if KINDS.index(kind) % 2 else tar_gz_bytes(directory)
    replaced = server.put(f"/adapters/{kind}", content=archive, headers={"content-type": "application/octet-stream"})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["version"] == 2 and replaced.json()["description"] == "made by peft"
    assert greedy(server, kind)["text"] == output["text"]


def engine_params(n):
    from service.engine import SamplingParams

    return SamplingParams(max_new_tokens=n)


def test_list_show_delete(server, adapter_dirs):
    for name in ("alpha", "beta"):
        assert server.put(f"/adapters/{name}", **multipart(adapter_dirs["lora"])).status_code == 201
    assert [a["name"] for a in server.get("/adapters").json()["adapters"]] == ["alpha", "beta"]
    assert server.get("/adapters/beta").json()["name"] == "beta"
    assert server.delete("/adapters/alpha").status_code == 204
    assert [a["name"] for a in server.get("/adapters").json()["adapters"]] == ["beta"]
    missing = server.post("/generate", json={"adapter": "alpha", "text": PROMPT})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "adapter_not_found"
    assert server.get("/adapters/alpha").status_code == 404


def test_generate_many_and_parameters(server, adapter_dirs):
    server.put("/adapters/lora", **multipart(adapter_dirs["lora"]))
    texts = [PROMPT, "Paris", "Who painted the Mona Lisa?"]
    many = server.post("/generate", json={"adapter": "lora", "texts": texts, "max_new_tokens": 6}).json()
    assert many["adapter"] == "lora"
    assert [o["text"] for o in many["outputs"]] == [greedy(server, "lora", t, max_new_tokens=6)["text"] for t in texts]
    sampled = [greedy(server, "lora", temperature=1.0, top_p=0.9, seed=7)["text"] for _ in range(2)]
    assert sampled[0] == sampled[1]
    bad = server.post("/generate", json={"text": PROMPT, "texts": [PROMPT]})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    too_many = server.post("/generate", json={"text": PROMPT, "max_new_tokens": 5000})
    assert too_many.status_code == 422 and "at most" in too_many.json()["error"]["message"]


def test_prompt_template_is_applied(server, adapter_dirs, engine):
    template = "Question: {text}\nAnswer:"
    server.put("/adapters/templated", **multipart(adapter_dirs["prefix_tuning"], prompt_template=template))
    output = greedy(server, "templated", "Paris")
    expected = engine.generate([template.replace("{text}", "Paris")], "prefix_tuning", engine_params(8))[0]
    assert output["text"] == expected.text
    assert output["prompt_tokens"] == expected.prompt_tokens


def test_replace_while_requests_are_in_flight(settings, tiny_base, adapter_dirs, engine, monkeypatch):
    """Requests that resolved the adapter before a replacement finish on the old version; later ones get the new
    one. The model thread is held until the replacement is done, so all six are in flight when it lands."""
    old = engine.generate([PROMPT], "lora", engine_params(8))[0].text
    new = engine.generate([PROMPT], "ia3", engine_params(8))[0].text
    assert old != new

    submitted = []  # rows that reached the batcher, with the adapter version they resolved
    release = threading.Event()
    submit, admit = Batcher.submit, RunningBatch.admit

    async def counting_submit(self, row):
        submitted.append(row)
        return await submit(self, row)

    def held_admit(self, rows, tickets=None):
        # Only the batcher's model thread is held: an upload's probe pass admits its own row elsewhere.
        if threading.current_thread().name.startswith("deltaserve-model"):
            assert release.wait(timeout=60), "the test never let the model thread go on"
        return admit(self, rows, tickets)

    monkeypatch.setattr(Batcher, "submit", counting_submit)
    monkeypatch.setattr(RunningBatch, "admit", held_admit)

    async def scenario(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            put = await client.put("/adapters/live", **multipart(adapter_dirs["lora"]))
            assert put.status_code == 201
            body = {"adapter": "live", "text": PROMPT, "max_new_tokens": 8}
            in_flight = [asyncio.ensure_future(client.post("/generate", json=body)) for _ in range(6)]
            deadline = time.monotonic() + 60
            while len(submitted) < 6:  # every request has resolved "live" and is queued or being admitted
                assert time.monotonic() < deadline, f"only {len(submitted)} of 6 requests reached the batcher"
                await asyncio.sleep(0.01)
            replaced = await client.put("/adapters/live", **multipart(adapter_dirs["ia3"]))
            assert replaced.status_code == 200
            release.set()
            after = await client.post("/generate", json=body)
            return [r.json()["text"] for r in await asyncio.gather(*in_flight)], after.json()["text"]

    try:
        with serve(create_app(settings, base=tiny_base)) as url:
            during, after = asyncio.run(scenario(url))
    finally:
        release.set()  # never leave the server's model thread waiting
    assert during == [old] * 6  # all resolved the old version before the replacement
    assert after == new
    assert len({id(row.delta) for row in submitted[:6]}) == 1 and submitted[6].delta is not submitted[0].delta


def test_restart_on_the_same_store_gives_identical_outputs(settings, tiny_base, adapter_dirs):
    outputs = {}
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        for kind in ("lora", "ia3", "p_tuning_lstm", "prefix_projection"):
            assert client.put(f"/adapters/{kind.replace('_', '-')}", **multipart(adapter_dirs[kind])).status_code == 201
            outputs[kind] = greedy(client, kind.replace("_", "-"))["text"]
        records = client.get("/adapters").json()
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/adapters").json() == records
        for kind, text in outputs.items():
            assert greedy(client, kind.replace("_", "-"))["text"] == text


def test_access_keys(settings, tiny_base, adapter_dirs):
    locked = settings.model_copy(update={"admin_key": "admin-secret", "api_keys": ["user-1", "user-2"]})
    with serve(create_app(locked, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        upload = multipart(adapter_dirs["lora"])
        assert client.put("/adapters/a", **upload).status_code == 401
        assert client.put("/adapters/a", **upload, headers={"Authorization": "Bearer user-1"}).status_code == 403
        assert client.put("/adapters/a", **upload, headers={"Authorization": "Bearer admin-secret"}).status_code == 201
        body = {"adapter": "a", "text": PROMPT, "max_new_tokens": 2}
        assert client.post("/generate", json=body).status_code == 401
        assert client.post("/generate", json=body, headers={"Authorization": "Bearer nope"}).status_code == 403
        assert client.post("/generate", json=body, headers={"Authorization": "Bearer user-2"}).status_code == 200
        assert client.delete("/adapters/a", headers={"Authorization": "Bearer user-2"}).status_code == 403
        assert client.get("/health").status_code == 200


def test_a_client_that_disconnects_stops_its_generation(settings, tiny_base, monkeypatch):
    """Over real HTTP: the client gives up (read timeout, connection closed); the server drops the row at a
    token boundary instead of running it to its token limit, and serves on."""
    from service.engine.decode_loop import RunningBatch

    step = RunningBatch.step

    def slow_step(self):
        time.sleep(0.01)  # 190 steps: about two seconds, well past the client's patience
        return step(self)

    monkeypatch.setattr(RunningBatch, "step", slow_step)
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        body = {"text": "The quick brown fox jumps over the lazy", "max_new_tokens": 190}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/generate", json=body, timeout=0.5)
        deadline = time.monotonic() + 10
        while client.get("/stats").json()["engine"]["cancelled_rows"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        engine_stats = client.get("/stats").json()["engine"]
        assert engine_stats["cancelled_rows"] == 1 and engine_stats["generated_tokens"] < 190
        assert greedy(client, None, text="Paris")["finish_reason"] in ("stop", "length")
