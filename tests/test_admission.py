"""Every queue and input is bounded, over real HTTP: requests and tokens in flight (429 + Retry-After), body
sizes (413, with or without Content-Length), slow bodies (408), per-request deadlines, pipeline budgets
checked before their first step, strict parameter types, and reads behind the API keys."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

from service.config import Settings
from service.engine.decode_loop import RunningBatch
from service.inference import Inference
from service.main import create_app
from tests.http_server import serve
from tests.test_api import multipart

PROMPT = "The quick brown fox jumps over the lazy"  # the tiny model runs this to any token limit below 200


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(adapters_dir=tmp_path / "store", load_demo_adapters=False, max_batch_wait_ms=1)


class Gate:
    """Holds every decode step until opened, so a test knows requests are still running when it acts."""

    def __init__(self, monkeypatch):
        self.open = threading.Event()
        step = RunningBatch.step

        def held_step(batch):
            assert self.open.wait(60), "the test never opened the gate"
            return step(batch)

        monkeypatch.setattr(RunningBatch, "step", held_step)


def stats(client) -> dict:
    return client.get("/stats").json()


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def error(response) -> dict:
    return response.json()["error"]


def test_requests_past_the_bound_get_429_with_retry_after_and_the_rest_finish(settings, tiny_base, monkeypatch):
    gate = Gate(monkeypatch)
    bounded = settings.model_copy(update={"max_concurrent_requests": 2})
    body = {"text": PROMPT, "max_new_tokens": 6}

    async def scenario(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            running = [asyncio.ensure_future(client.post("/generate", json=body)) for _ in range(2)]
            while (await client.get("/stats")).json()["admission"]["requests"] < 2:
                await asyncio.sleep(0.01)
            refused = await client.post("/generate", json=body)
            pipeline = await client.post("/pipeline", json={"text": "x", "steps": [{"name": "a"}]})
            gate.open.set()
            done = await asyncio.gather(*running)
            after = await client.post("/generate", json=body)
            return refused, pipeline, done, after

    with serve(create_app(bounded, base=tiny_base)) as url:
        refused, pipeline, done, after = asyncio.run(scenario(url))
    for response in (refused, pipeline):
        assert response.status_code == 429 and error(response)["code"] == "overloaded"
        assert response.headers["retry-after"] == "1" and "MAX_CONCURRENT_REQUESTS" in error(response)["message"]
    assert [r.status_code for r in done] == [200, 200]
    assert after.status_code == 200 and after.json()["text"] == done[0].json()["text"]


def test_the_token_bound_refuses_what_does_not_fit_now_and_what_never_fits(settings, tiny_base, monkeypatch):
    gate = Gate(monkeypatch)
    bounded = settings.model_copy(update={"max_queued_tokens": 150})

    async def scenario(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            holder = asyncio.ensure_future(client.post("/generate", json={"text": PROMPT, "max_new_tokens": 100}))
            while (await client.get("/stats")).json()["admission"]["tokens"] == 0:
                await asyncio.sleep(0.01)
            now = await client.post("/generate", json={"text": PROMPT, "max_new_tokens": 60})
            never = await client.post("/generate", json={"text": PROMPT, "max_new_tokens": 160})
            gate.open.set()
            return now, never, await holder

    with serve(create_app(bounded, base=tiny_base)) as url:
        now, never, holder = asyncio.run(scenario(url))
    assert now.status_code == 429 and "MAX_QUEUED_TOKENS" in error(now)["message"] and now.headers["retry-after"]
    assert never.status_code == 422 and "MAX_QUEUED_TOKENS" in error(never)["message"]  # no retry helps: 422
    assert holder.status_code == 200


def slow_steps(monkeypatch, seconds=0.02):
    step = RunningBatch.step

    def slow_step(batch):
        time.sleep(seconds)
        return step(batch)

    monkeypatch.setattr(RunningBatch, "step", slow_step)


def test_a_running_row_past_its_deadline_ends_with_timeout(settings, tiny_base, monkeypatch):
    slow_steps(monkeypatch)
    hurried = settings.model_copy(update={"request_timeout_s": 0.3})
    with serve(create_app(hurried, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        response = client.post("/generate", json={"text": PROMPT, "max_new_tokens": 190})
        assert client.get("/stats").json()["engine"]["timed_out_rows"] == 1
    assert response.status_code == 200 and response.json()["finish_reason"] == "timeout"
    assert 0 < response.json()["completion_tokens"] < 190


def test_a_request_still_queued_at_its_deadline_gets_503(settings, tiny_base, monkeypatch):
    slow_steps(monkeypatch)
    deadlines = iter([60.0, 0.3])  # the running request has time; the queued one does not
    monkeypatch.setattr(Inference, "deadline", lambda self: time.monotonic() + next(deadlines))
    one_row = settings.model_copy(update={"max_batch_size": 1})

    async def scenario(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            first = asyncio.ensure_future(client.post("/generate", json={"text": PROMPT, "max_new_tokens": 100}))
            while (await client.get("/stats")).json()["queue"]["running_rows"] == 0:
                await asyncio.sleep(0.01)
            queued = await client.post("/generate", json={"text": "Paris", "max_new_tokens": 5})
            return await first, queued

    with serve(create_app(one_row, base=tiny_base)) as url:
        first, queued = asyncio.run(scenario(url))
    assert queued.status_code == 503 and error(queued)["code"] == "deadline_exceeded" and queued.headers["retry-after"]
    assert first.status_code == 200 and first.json()["finish_reason"] == "length"


def test_draining_refuses_new_requests_with_503(settings, tiny_base):
    app = create_app(settings, base=tiny_base)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/generate", json={"text": "Paris", "max_new_tokens": 2}).status_code == 200
        app.state.admission.begin_drain()
        refused = client.post("/generate", json={"text": "Paris", "max_new_tokens": 2})
        assert refused.status_code == 503 and error(refused)["code"] == "shutting_down"
        assert refused.headers["retry-after"]
        assert client.get("/health").status_code == 200


def test_bodies_over_the_limit_get_413_with_or_without_content_length(settings, tiny_base):
    small = settings.model_copy(update={"max_request_bytes": 4096})
    text = "x" * 10_000

    def chunked():
        data = json.dumps({"text": text}).encode()
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]

    with serve(create_app(small, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        declared = client.post("/generate", json={"text": text})
        streamed = client.post("/generate", content=chunked(), headers={"content-type": "application/json"})
        pipeline = client.post("/pipeline", json={"text": text, "steps": [{"name": "a"}]})
        for response in (declared, streamed, pipeline):
            assert response.status_code == 413 and error(response)["code"] == "payload_too_large"
            assert "MAX_REQUEST_BYTES" in error(response)["message"]
        assert client.post("/generate", json={"text": "Paris", "max_new_tokens": 2}).status_code == 200


def test_a_chunked_upload_stops_at_the_limit(settings, tiny_base, adapter_dirs):
    """No Content-Length, a multipart body far over the limit: the server answers 413 having read about the
    limit, not the whole body."""
    limited = settings.model_copy(update={"max_upload_bytes": 100_000})
    with serve(create_app(limited, base=tiny_base)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                b"PUT /adapters/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
            )
            part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="adapter_model.safetensors"\r\n\r\n'
            sent, reply = 0, b""
            sock.settimeout(0.05)
            chunk = part + b"\0" * 65536
            while sent < 40_000_000:
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:  # the server closed the connection after answering
                    break
                sent += len(chunk)
                chunk = b"\0" * 65536
                try:
                    reply += sock.recv(65536)
                except TimeoutError:
                    continue
                if b"\r\n\r\n" in reply:
                    break
            sock.settimeout(10)
            while b"payload_too_large" not in reply:
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
    assert reply.startswith(b"HTTP/1.1 413") and b"payload_too_large" in reply
    # The server stopped reading near the limit; what was sent beyond it sat in the socket buffers.
    assert sent < 100_000 + 12_000_000


def test_a_body_sent_too_slowly_gets_408(settings, tiny_base):
    impatient = settings.model_copy(update={"body_timeout_s": 0.3})
    with serve(create_app(impatient, base=tiny_base)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"text": '
            )
            reply = b""
            while b"request_timeout" not in reply:
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
    assert reply.startswith(b"HTTP/1.1 408") and b"BODY_TIMEOUT_S" in reply


def test_inputs_are_bounded_before_any_model_work(settings, tiny_base):
    limited = settings.model_copy(update={"max_input_chars": 1000, "max_pipeline_new_tokens": 100})
    app = create_app(limited, base=tiny_base)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        passes = app.state.deltaserve.engine.stats.forward_passes
        long_text = client.post("/generate", json={"text": "x" * 1001})
        long_in_list = client.post("/generate", json={"texts": ["ok", "x" * 1001]})
        blowup = client.post(
            "/pipeline",
            json={
                "text": "y" * 500,
                "steps": [
                    {"name": "a", "max_new_tokens": 2},
                    {"name": "b", "input": "{text}" * 3, "max_new_tokens": 2},
                ],
            },
        )
        costly = client.post(
            "/pipeline", json={"text": "z", "steps": [{"name": f"s{i}", "max_new_tokens": 30} for i in range(4)]}
        )
        too_many_new = client.post(
            "/pipeline",
            json={"text": "z", "steps": [{"name": "a", "max_new_tokens": 2}, {"name": "b", "max_new_tokens": 5000}]},
        )
        stored = client.put("/pipelines/p", json={"steps": [{"name": "a", "max_new_tokens": 9014}]})
        assert app.state.deltaserve.engine.stats.forward_passes == passes  # nothing ran
    assert long_text.status_code == 422 and "text has 1001 characters" in error(long_text)["message"]
    assert long_in_list.status_code == 422 and "texts[1]" in error(long_in_list)["message"]
    assert blowup.status_code == 422 and "step 'b' input has 1500 characters" in error(blowup)["message"]
    assert costly.status_code == 422 and "120 new tokens together" in error(costly)["message"]
    assert too_many_new.status_code == 422 and "step 'b'" in error(too_many_new)["message"]
    assert stored.status_code == 422 and "9014" in error(stored)["message"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("seed", 2**70),
        ("seed", -1),
        ("seed", False),
        ("max_new_tokens", True),
        ("temperature", "1"),
        ("temperature", 11),
        ("top_p", 0),
        ("top_p", 1.5),
        ("top_k", -1),
        ("stop", ["s"] * 17),
        ("stop", ["x" * 257]),
    ],
)
def test_parameters_out_of_range_or_of_the_wrong_type_get_422_naming_the_field(settings, tiny_base, field, value):
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        response = client.post("/generate", json={"text": "Paris", field: value})
    assert response.status_code == 422 and error(response)["code"] == "invalid_request"
    assert field in error(response)["message"]


def test_non_finite_numbers_are_refused(settings, tiny_base):
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        for raw in (b'{"text": "Paris", "temperature": NaN}', b'{"text": "Paris", "top_p": Infinity}'):
            response = client.post("/generate", content=raw, headers={"content-type": "application/json"})
            assert response.status_code == 422, response.text


def test_reads_need_a_key_when_keys_are_set_unless_opened(settings, tiny_base, adapter_dirs):
    locked = settings.model_copy(update={"admin_key": "admin", "api_keys": ["user"]})
    for public in (False, True):
        with (
            serve(create_app(locked.model_copy(update={"public_metadata": public}), base=tiny_base)) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            client.put("/adapters/a", **multipart(adapter_dirs["lora"]), headers={"Authorization": "Bearer admin"})
            for path in ("/adapters", "/adapters/a", "/pipelines", "/stats"):
                anonymous = client.get(path)
                assert anonymous.status_code == (200 if public else 401), path
                for key in ("user", "admin"):
                    assert client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 200, path
                assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == (
                    200 if public else 403
                )
            assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200


def test_405_names_the_allowed_methods(settings, tiny_base):
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        response = client.delete("/generate")
    assert response.status_code == 405 and error(response)["code"] == "method_not_allowed"
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    "path, body",
    [
        ("/generate", {"text": "\ud800 Paris"}),
        ("/generate", {"texts": ["Paris", "x\udfff"]}),
        ("/pipeline", {"text": "\ud83d", "steps": [{"name": "a"}]}),
        ("/pipeline", {"text": "Paris", "steps": [{"name": "a", "input": "{text} \udc00"}]}),
    ],
)
def test_a_lone_surrogate_is_refused_not_a_500(settings, tiny_base, path, body):
    """JSON's \\ud800 escape makes a Python str that no tokenizer or file can take."""
    raw = json.dumps(body).encode()  # ensure_ascii keeps the lone surrogate as its escape
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        response = client.post(path, content=raw, headers={"content-type": "application/json"})
        stored = client.put(
            "/pipelines/p",
            content=json.dumps({"description": "\ud800", "steps": [{"name": "a"}]}),
            headers={"content-type": "application/json"},
        )
        assert client.get("/pipelines").json() == {"pipelines": []}
    assert response.status_code == 422 and "lone surrogate" in error(response)["message"], response.text
    assert stored.status_code == 422, stored.text


def test_an_unexpected_error_is_a_500_that_keeps_the_connection(settings, tiny_base, monkeypatch):
    """Behind a proxy that reuses connections, a dropped one would fail the next client's request."""
    calls = []

    async def broken_once(self, adapter, texts, params):
        calls.append(texts)
        if len(calls) == 1:
            raise RuntimeError("injected")
        return await generate(self, adapter, texts, params)

    generate = Inference.generate
    monkeypatch.setattr(Inference, "generate", broken_once)
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        failed = client.post("/generate", json={"text": "Paris", "max_new_tokens": 2})
        after = client.post("/generate", json={"text": "Paris", "max_new_tokens": 2})  # same connection
    assert failed.status_code == 500 and error(failed) == {
        "code": "internal_error",
        "message": "the server failed to handle this request; see its log",
    }
    assert after.status_code == 200
