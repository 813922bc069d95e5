"""The asyncio continuous batcher: results match each request alone, rows join and leave at token
boundaries, and no adapter starves another.

No test depends on how fast anything runs: batches fill by count (the wait for a batch to fill is far longer
than any test), and where rows must join a running batch at a given point, its decode steps wait for the
test's permission."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
import torch

from service.engine import SamplingParams
from service.engine.batcher import Batcher
from tests.peft_reference import assert_matches_peft, logprob_params
from tests.test_engine_equality import EOS

PARAMS = SamplingParams(max_new_tokens=6)
NEVER_MS = 600_000  # a batch-fill wait no test reaches: batches start when they are full
TEXTS = ["When was the Beijing Olympic held?", "Paris", "Who painted the Mona Lisa?", "The quick brown fox"]


class RecordingEngine:
    """The real engine, recording which rows each forward pass carried (adapter name, prompt text)."""

    def __init__(self, engine):
        self._engine = engine
        self.admitted: list[list[tuple[str | None, str]]] = []  # one entry per group of rows joining
        self.passes: list[list[str | None]] = []  # adapters of the rows of every decode pass

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def _describe(self, row):
        names = {id(self._engine.get(n)): n for n in self._engine.names()}
        return (names.get(id(row.delta)) if row.delta else None, self._engine.base.tokenizer.decode(row.prompt_ids))

    def new_batch(self):
        batch = self._engine.new_batch()
        admit, step = batch.admit, batch.step

        def recording_admit(rows, tickets=None):
            self.admitted.append([self._describe(row) for row in rows])
            return admit(rows, tickets)

        def recording_step():
            self.passes.append([self._describe(s.row)[0] for s in batch.states])
            return step()

        batch.admit, batch.step = recording_admit, recording_step
        return batch


async def _serve(engine, requests, params=PARAMS, **batcher_options):
    batcher = Batcher(engine, **batcher_options)
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.generate(text, adapter, params) for adapter, text in requests))
    finally:
        await batcher.stop()


def _requests(adapters, count):
    return [(adapters[i % len(adapters)], TEXTS[i % len(TEXTS)]) for i in range(count)]


def _alone(engine, adapter, text, params=PARAMS):
    return engine.generate([text], adapter, params)[0].token_ids


async def _until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait for a state the test itself brings about (not for time to pass); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.005)


class _GatedSteps(RecordingEngine):
    """Decode steps wait for the test's permission, so a running batch is where the test wants it when a new
    request arrives."""

    def __init__(self, engine):
        super().__init__(engine)
        self._gate = threading.Condition()
        self._permits = 0
        self._open = False

    def allow(self, steps: int | None = None) -> None:
        """Let `steps` more decode steps run, or every step from now on."""
        with self._gate:
            if steps is None:
                self._open = True
            else:
                self._permits += steps
            self._gate.notify_all()

    def new_batch(self):
        batch = super().new_batch()
        step = batch.step

        def gated_step():
            with self._gate:
                allowed = self._gate.wait_for(lambda: self._open or self._permits > 0, timeout=60)
                assert allowed, "the test never allowed this decode step"
                if not self._open:
                    self._permits -= 1
            return step()

        batch.step = gated_step
        return batch


def test_by_adapter_mode_never_mixes_adapters(engine):
    recording = RecordingEngine(engine)
    requests = _requests(["lora", "prompt_tuning", "prefix_tuning"], 12)
    # A batch of 4 fills with one adapter's four requests whenever they arrive.
    results = asyncio.run(
        _serve(recording, requests, max_batch_size=4, max_batch_wait_ms=NEVER_MS, mixed_batches=False)
    )
    for (adapter, text), result in zip(requests, results):
        assert result.token_ids == _alone(engine, adapter, text)
    assert all(len(set(names)) == 1 for names in recording.passes)  # one adapter per forward pass
    assert [len(group) for group in recording.admitted] == [4, 4, 4]  # each adapter's four requests join together


def test_mixed_batches_take_the_whole_queue(engine, peft_oracle, vocab_size):
    recording = RecordingEngine(engine)
    requests = _requests(["lora", "ia3", "p_tuning_mlp", "prefix_projection", None], 10)
    params = logprob_params(PARAMS.max_new_tokens, vocab_size)
    results = asyncio.run(
        _serve(recording, requests, params, max_batch_size=len(requests), max_batch_wait_ms=NEVER_MS)
    )
    for (adapter, text), result in zip(requests, results):  # each row as PEFT gives it alone
        expected = peft_oracle.alone(adapter, text, PARAMS.max_new_tokens)
        assert_matches_peft(result, expected, torch.float32, f"{adapter} {text!r}", eos_token_id=EOS)
    assert len(recording.admitted) == 1 and len(recording.admitted[0]) == 10


def test_a_busy_adapter_does_not_starve_another(engine):
    recording = RecordingEngine(engine)
    early = [("lora", t) for t in TEXTS]
    late = [("lora", f"late question {i}") for i in range(4)]
    requests = [*early, ("ia3", "Paris"), *late]
    asyncio.run(_serve(recording, requests, max_batch_size=2, max_batch_wait_ms=1, mixed_batches=False))
    order = [entry for group in recording.admitted for entry in group]
    ia3_at = order.index(("ia3", "Paris"))
    assert all(order.index(entry) > ia3_at for entry in late)  # the quiet adapter went before later busy requests


def test_short_requests_join_and_leave_around_a_long_one(engine):
    gated = _GatedSteps(engine)
    long_params = SamplingParams(max_new_tokens=150, stop=("never appears",))
    short_params = SamplingParams(max_new_tokens=3)
    finished: list[str] = []

    async def scenario():
        batcher = Batcher(gated, max_batch_size=8, max_batch_wait_ms=1)
        batcher.start()

        async def run(name, text, adapter, params):
            result = await batcher.generate(text, adapter, params)
            finished.append(name)
            return result

        try:
            long = asyncio.ensure_future(run("long", "The quick brown fox", "lora", long_params))
            await _until(lambda: len(gated.admitted) == 1, "the long request is admitted")
            short1 = asyncio.ensure_future(run("short-1", "Paris", "ia3", short_params))
            await _until(lambda: batcher.queued() == 1, "the first short request is queued")
            gated.allow(1)  # one step of the long row, then the short one joins
            await _until(lambda: len(gated.admitted) == 2, "the first short request is admitted")
            short2 = asyncio.ensure_future(run("short-2", "Who painted the Mona Lisa?", None, short_params))
            await _until(lambda: batcher.queued() == 1, "the second short request is queued")
            gated.allow()
            return await asyncio.gather(long, short1, short2)
        finally:
            gated.allow()
            await batcher.stop()

    long, short1, short2 = asyncio.run(scenario())
    assert [len(group) for group in gated.admitted] == [1, 1, 1]  # each joined the running batch on its own
    assert ["lora", "ia3"] in gated.passes and ["lora", None] in gated.passes  # ...and shared its forward passes
    assert long.finish_reason == "length" and long.completion_tokens == 150
    assert finished == ["short-1", "short-2", "long"]  # the short requests left before the long one ended
    assert long.token_ids == _alone(engine, "lora", "The quick brown fox", long_params)
    assert short1.token_ids == _alone(engine, "ia3", "Paris", short_params)
    assert short2.token_ids == _alone(engine, None, "Who painted the Mona Lisa?", short_params)


def test_replacing_an_adapter_keeps_queued_requests_on_their_version(engine, adapter_dirs):
    old = _alone(engine, "lora", "Paris")

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
    assert second.token_ids == _alone(engine, "ia3", "Paris")


class _StepRaisesStopIteration(RecordingEngine):
    def new_batch(self):
        batch = self._engine.new_batch()

        def broken_step():
            raise StopIteration("from inside the model thread")

        batch.step = broken_step
        return batch


def test_stopiteration_on_the_model_thread_fails_requests_instead_of_hanging(engine):
    # asyncio cannot set StopIteration on a future: unconverted, the request would wait forever.
    async def run():
        return await asyncio.wait_for(_serve(_StepRaisesStopIteration(engine), _requests(["lora"], 2)), 60)

    with pytest.raises(RuntimeError, match="StopIteration"):
        asyncio.run(run())


LONG_TEXT = "The quick brown fox jumps over the lazy"  # the tiny model runs this to any token limit below 200


def test_a_caller_that_goes_away_frees_its_row(engine):
    gated = _GatedSteps(engine)

    async def run():
        batcher = Batcher(gated, max_batch_size=4)
        batcher.start()
        try:
            long = asyncio.ensure_future(batcher.generate(LONG_TEXT, None, SamplingParams(max_new_tokens=190)))
            await _until(lambda: batcher.running() == 1, "the long request is decoding")
            long.cancel()  # its first decode step is waiting for a permit: it cannot have finished
            gated.allow()
            # The batcher serves on. It drops the cancelled row at the first token boundary, before this short
            # request can finish, so by then the row is counted.
            short = await batcher.generate("Paris", "lora", PARAMS)
            return short
        finally:
            gated.allow()
            await batcher.stop()

    before = engine.stats.cancelled_rows
    short = asyncio.run(run())
    assert engine.stats.cancelled_rows - before == 1
    assert short.token_ids == _alone(engine, "lora", "Paris")
