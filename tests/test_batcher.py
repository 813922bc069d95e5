"""The asyncio batcher: concurrent requests are batched, results match each request alone, no starvation."""

from __future__ import annotations

import asyncio

from service.engine import SamplingParams
from service.engine.batcher import Batcher

PARAMS = SamplingParams(max_new_tokens=6)
TEXTS = ["When was the Beijing Olympic held?", "Paris", "Who painted the Mona Lisa?", "The quick brown fox"]


class RecordingEngine:
    """Wraps the real engine and records the adapter of every row of every forward batch."""

    def __init__(self, engine):
        self._engine = engine
        self.batches: list[list[str | None]] = []

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def generate_rows(self, rows):
        kinds = {id(d): n for n in self._engine.names() if (d := self._engine.get(n)) is not None}
        self.batches.append([kinds.get(id(row.delta)) if row.delta else None for row in rows])
        return self._engine.generate_rows(rows)


async def _serve(engine, requests, **batcher_options):
    batcher = Batcher(engine, **batcher_options)
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.generate(text, adapter, PARAMS) for adapter, text in requests))
    finally:
        await batcher.stop()


def _requests(adapters, count):
    return [(adapters[i % len(adapters)], TEXTS[i % len(TEXTS)]) for i in range(count)]


def test_interleaved_adapters_equal_each_alone_by_adapter_batches(engine):
    recording = RecordingEngine(engine)
    requests = _requests(["lora", "prompt_tuning", "prefix_tuning"], 12)
    results = asyncio.run(_serve(recording, requests, max_batch_size=8, max_batch_wait_ms=50, mixed_batches=False))
    for (adapter, text), result in zip(requests, results):
        assert result.token_ids == engine.generate([text], adapter, PARAMS)[0].token_ids
    assert all(len(set(batch)) == 1 for batch in recording.batches)  # one adapter per batch
    assert len(recording.batches) == 3  # 12 requests, three adapters: one batch each


def test_mixed_batches_take_the_whole_queue(engine):
    recording = RecordingEngine(engine)
    requests = _requests(["lora", "ia3", "p_tuning_mlp", "prefix_projection", None], 10)
    results = asyncio.run(_serve(recording, requests, max_batch_size=16, max_batch_wait_ms=50))
    for (adapter, text), result in zip(requests, results):
        assert result.token_ids == engine.generate([text], adapter, PARAMS)[0].token_ids
    assert len(recording.batches) == 1


def test_a_busy_adapter_does_not_starve_another(engine):
    recording = RecordingEngine(engine)

    async def scenario():
        batcher = Batcher(recording, max_batch_size=2, max_batch_wait_ms=1, mixed_batches=False)
        batcher.start()
        try:
            # Four requests for a busy adapter, then one for a quiet one, then four more for the busy one.
            requests = [("lora", t) for t in TEXTS] + [("ia3", "Paris")] + [("lora", t) for t in TEXTS]
            await asyncio.gather(*(batcher.generate(t, a, PARAMS) for a, t in requests))
        finally:
            await batcher.stop()

    asyncio.run(scenario())
    assert recording.batches[:3] == [["lora", "lora"], ["lora", "lora"], ["ia3"]]


def test_replacing_an_adapter_keeps_queued_requests_on_their_version(engine, adapter_dirs):
    old = engine.generate(["Paris"], "lora", PARAMS)[0].token_ids

    async def scenario():
        batcher = Batcher(engine, max_batch_size=4, max_batch_wait_ms=30)
        batcher.start()
        try:
            queued = asyncio.ensure_future(batcher.generate("Paris", "swap", PARAMS))
            await asyncio.sleep(0)  # the request is queued with the version it resolved
            engine.register("swap", engine.compile(adapter_dirs["ia3"]))
            newer = await batcher.generate("Paris", "swap", PARAMS)
            return await queued, newer
        finally:
            await batcher.stop()

    engine.register("swap", engine.compile(adapter_dirs["lora"]))
    try:
        first, second = asyncio.run(scenario())
    finally:
        engine.unregister("swap")
    assert first.token_ids == old
    assert second.token_ids == engine.generate(["Paris"], "ia3", PARAMS)[0].token_ids
