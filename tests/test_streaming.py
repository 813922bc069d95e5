"""Token streaming: what a streaming caller receives, piece by piece, adds up to exactly the text a
non-streamed request gets, for every delta kind inside one mixed batch; no piece splits a character, and no
piece shows part of a stop string."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from service.engine import SamplingParams
from service.engine.batcher import Batcher
from service.engine.detokenize import IncrementalText
from service.engine.rows import StreamDelta
from tests.conftest import KINDS

TEXTS = ["When was the Beijing Olympic held?", "Paris", "Who painted the Mona Lisa? Leonardo da", "The quick brown fox"]


def test_incremental_text_never_splits_a_character(tokenizer):
    text = "héllo wörld — 日本語 🙂 naïve"
    tokens = tokenizer(text)["input_ids"]
    assert len(tokens) > len(text.split())  # multi-byte characters span several byte-level tokens
    incremental = IncrementalText(tokenizer)
    pieces = [incremental.add(token) for token in tokens]
    assert "".join(pieces) == tokenizer.decode(tokens) == incremental.full()
    assert not any("\ufffd" in piece for piece in pieces)
    assert any(piece == "" for piece in pieces)  # held back while a character was incomplete


async def _stream_all(engine, requests):
    """Run every (adapter, text, params) together through one batcher, streamed; returns per request the
    deltas and the final result."""
    batcher = Batcher(engine, max_batch_size=16, max_batch_wait_ms=50)
    batcher.start()

    async def consume(adapter, text, params):
        row = engine.make_row(text, engine.get(adapter), params)
        deltas, result = [], None
        async with contextlib.aclosing(batcher.stream(row)) as items:
            async for item in items:
                if isinstance(item, StreamDelta):
                    deltas.append(item)
                else:
                    result = item
        return deltas, result

    try:
        return await asyncio.gather(*(consume(*request) for request in requests))
    finally:
        await batcher.stop()


@pytest.mark.parametrize("stop", [(), ("e", "the"), (" is ", ".")])
def test_streamed_text_equals_the_non_streamed_text_for_every_kind_in_one_batch(engine, stop):
    params = SamplingParams(max_new_tokens=16, stop=stop, logprobs=2)
    requests = [(name, TEXTS[i % len(TEXTS)], params) for i, name in enumerate([*KINDS, None])]
    streamed = asyncio.run(_stream_all(engine, requests))
    for (adapter, text, _), (deltas, result) in zip(requests, streamed):
        alone = engine.generate([text], adapter, params)[0]
        assert "".join(d.text for d in deltas) == result.text == alone.text, adapter
        assert [t for d in deltas for t in d.token_ids] == result.token_ids == alone.token_ids
        assert [e.token for d in deltas for e in d.logprobs] == result.token_ids
        for delta in deltas[:-1]:  # before the end, no piece may show the beginning of a stop string
            assert not any(s in delta.text for s in stop)
        assert len(deltas) > 1 or len(result.token_ids) <= 1  # token by token, not all at the end


def test_a_stream_that_is_left_early_drops_its_row(engine):
    params = SamplingParams(max_new_tokens=150, stop=("never appears",))

    async def scenario():
        batcher = Batcher(engine, max_batch_size=4, max_batch_wait_ms=1)
        batcher.start()
        before = engine.stats.cancelled_rows
        try:
            row = engine.make_row("The quick brown fox jumps over the lazy", None, params)
            async with contextlib.aclosing(batcher.stream(row)) as items:
                async for _ in items:
                    break  # the client went away after its first piece
            while engine.stats.cancelled_rows == before:
                await asyncio.sleep(0.01)
            return engine.stats.cancelled_rows - before, await batcher.submit(engine.make_row("Paris", None, params))
        finally:
            await batcher.stop()

    cancelled, after = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert cancelled == 1 and after.finish_reason in ("stop", "length")


def test_a_stop_string_across_token_boundaries_is_never_partly_streamed(engine, tokenizer):
    """Stop strings taken from the model's own greedy output, each starting two characters before a token
    boundary and ending after it: without holding back, those two characters would have been streamed."""
    free = engine.generate([TEXTS[0]], "lora", SamplingParams(max_new_tokens=16))[0]
    incremental = IncrementalText(tokenizer)
    boundaries = []  # (text so far, next piece) where both sides have at least two characters
    for token in free.token_ids:
        before = incremental.text
        piece = incremental.add(token)
        if len(before) >= 2 and len(piece) >= 1 and before[-2:].strip() and piece.strip():
            boundaries.append(before[-2:] + piece[:1])
    assert boundaries, "the greedy output has no usable token boundary"
    for stop in boundaries[:3]:
        params = SamplingParams(max_new_tokens=16, stop=(stop,))
        ((deltas, result),) = asyncio.run(_stream_all(engine, [("lora", TEXTS[0], params)]))
        assert result.finish_reason == "stop"
        assert "".join(d.text for d in deltas) == result.text == free.text[: free.text.find(stop)]


# -- over HTTP: Server-Sent Events ------------------------------------------------------------------------------


def parse_sse(raw: str) -> list[tuple[str | None, object]]:
    import json

    events = []
    for block in raw.strip().split("\n\n"):
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
        events.append((name, data))
    return events


@pytest.fixture
def http_service(tmp_path, tiny_base, adapter_dirs):
    import httpx

    from service.config import Settings
    from service.main import create_app
    from tests.http_server import serve
    from tests.test_api import multipart

    settings = Settings(adapters_dir=tmp_path / "store", load_demo_adapters=False, max_batch_wait_ms=20)
    app = create_app(settings, base=tiny_base)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        for kind in KINDS:
            assert client.put(f"/adapters/{kind.replace('_', '-')}", **multipart(adapter_dirs[kind])).status_code == 201
        yield app, url, client


def test_generate_streams_events_that_add_up_to_the_plain_answer(http_service):
    import asyncio as aio

    import httpx

    _app, url, client = http_service
    bodies = [{"adapter": kind.replace("_", "-"), "texts": TEXTS[:2], "max_new_tokens": 12, "stop": [" is "]}
              for kind in KINDS]

    async def all_streams():  # every kind streamed at once: one mixed batch
        async with httpx.AsyncClient(base_url=url, timeout=60) as aclient:
            responses = await aio.gather(*(aclient.post("/generate", json={**b, "stream": True}) for b in bodies))
            return [(r.status_code, r.headers["content-type"], r.text) for r in responses]

    for body, (status, content_type, raw) in zip(bodies, aio.run(all_streams())):
        assert status == 200 and content_type.startswith("text/event-stream")
        plain = client.post("/generate", json=body).json()["outputs"]
        events = parse_sse(raw)
        assert events[-1] == ("done", {"adapter": body["adapter"]})
        for index, expected in enumerate(plain):
            pieces = "".join(d["text"] for name, d in events if name == "token" and d["index"] == index)
            (end,) = [d for name, d in events if name == "end" and d["index"] == index]
            assert pieces == end["text"] == expected["text"], body["adapter"]
            assert end == {"index": index, **expected}


def test_a_stream_that_cannot_start_is_a_plain_error(http_service):
    _, _, client = http_service
    missing = client.post("/generate", json={"adapter": "nope", "text": "Paris", "stream": True})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "adapter_not_found"


def test_pipelines_stream_each_step_then_the_last_steps_text(http_service):
    _, _, client = http_service
    steps = [{"name": "a", "adapter": "lora", "max_new_tokens": 6},
             {"name": "b", "adapter": "prefix-tuning", "input": "{a} and {text}", "max_new_tokens": 8}]
    plain = client.post("/pipeline", json={"text": TEXTS[0], "steps": steps}).json()
    events = parse_sse(client.post("/pipeline", json={"text": TEXTS[0], "steps": steps, "stream": True}).text)
    names = [name for name, _ in events]
    assert names[0] == "step" and names[-1] == "done" and names.count("step") == 2
    assert names.index("token") > names.index("step")  # step a completes before b's text streams
    assert "".join(d["text"] for name, d in events if name == "token") == plain["outputs"]["b"]
    done = events[-1][1]
    assert done["outputs"] == plain["outputs"]
    assert [s["output"] for s in done["steps"]] == [s["output"] for s in plain["steps"]]


def test_a_client_that_leaves_a_stream_frees_its_row(http_service, monkeypatch):
    import time

    import httpx

    from service.engine.decode_loop import RunningBatch

    app, url, _client = http_service
    step = RunningBatch.step
    monkeypatch.setattr(RunningBatch, "step", lambda batch: (time.sleep(0.01), step(batch))[1])
    body = {"text": "The quick brown fox jumps over the lazy", "max_new_tokens": 190, "stream": True}
    with httpx.stream("POST", f"{url}/generate", json=body, timeout=60) as response:
        for _ in response.iter_lines():
            break  # the first event arrived; now the client goes away
    stats = app.state.deltaserve.engine.stats
    deadline = time.monotonic() + 20
    while stats.cancelled_rows == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stats.cancelled_rows == 1 and stats.generated_tokens < 190
