"""One row's failure is that row's alone: in prefill, sampling, stop handling or detokenizing, and when its
output is not finite, the row fails with a clear error and every other row of its batch gets exactly the
tokens (and log-probabilities) it gets without it."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from service.engine import SamplingParams, sampling
from service.engine import rows as row_state
from service.engine.deltas.prompt import VirtualTokens
from service.errors import NonFiniteLogits, RowFailed

TEXTS = ["When was the Beijing Olympic held?", "Paris", "Who painted the Mona Lisa? Leonardo da", "The quick brown fox"]
NEIGHBOURS = ["lora", "ia3", "prefix_projection", "p_tuning_lstm", None]
PARAMS = SamplingParams(max_new_tokens=8, logprobs=3)


def poisoned(delta):
    """The same adapter with NaN virtual tokens: its row's output is NaN from the first forward pass on."""
    return dataclasses.replace(delta, prompt=VirtualTokens(torch.full_like(delta.prompt.embeddings, float("nan"))))


@pytest.fixture
def with_poison(engine):
    engine.register("poisoned", poisoned(engine.get("prompt_tuning")))
    yield "poisoned"
    engine.unregister("poisoned")


def neighbour_rows(engine, params=PARAMS):
    return [engine.make_row(text, engine.get(name), params) for name, text in zip(NEIGHBOURS, TEXTS + TEXTS)]


def outputs(results):
    return [(r.token_ids, r.logprobs, r.finish_reason) for r in results]


def assert_unchanged(got, expected):
    """The same tokens and finish reasons; log-probabilities equal up to float rounding, since a row that joins
    a batch can change its padded layout (on the eager path the batch is padded to its longest row)."""
    assert [(tokens, reason) for tokens, _, reason in got] == [(tokens, reason) for tokens, _, reason in expected]
    for (_, ours, _), (_, theirs, _) in zip(got, expected):
        assert [e.logprob for e in ours or []] == pytest.approx([e.logprob for e in theirs or []], abs=1e-5)


def test_a_row_with_non_finite_output_fails_alone(engine, with_poison):
    alone = outputs(engine.generate_rows(neighbour_rows(engine)))
    bad = engine.make_row("Paris", engine.get(with_poison), PARAMS)
    mixed = engine.generate_rows([*neighbour_rows(engine)[:2], bad, *neighbour_rows(engine)[2:]])
    failed = mixed.pop(2)
    assert failed.finish_reason == "error" and isinstance(failed.error, NonFiniteLogits)
    assert outputs(mixed) == alone  # bit-identical tokens and log-probabilities


def overflowing(delta):
    """The same adapter with one input direction of its first module's down-projection (LoRA's A, a bottleneck's
    W_down) at float32's largest finite value: finite weights that overflow for the row's own inputs only."""
    from service.engine.deltas.bottleneck import BottleneckPiece
    from service.engine.deltas.lora import LoraWeights

    module, piece = next(iter(sorted(delta.modules.items())))
    if isinstance(piece, LoraWeights):
        down = piece.lora_a.clone()
        down[0] = torch.finfo(torch.float32).max
        piece = LoraWeights(down, piece.lora_b, piece.scale)
    else:
        assert isinstance(piece, BottleneckPiece)
        piece = copy.copy(piece)
        piece.down = piece.down.clone()
        piece.down[0] = torch.finfo(torch.float32).max
    return dataclasses.replace(delta, modules={**delta.modules, module: piece})


@pytest.mark.parametrize("path", ["eager", "static"])
@pytest.mark.parametrize("kind", ["lora", "bottleneck"])
def test_an_adapter_that_overflows_poisons_no_other_row(request, path, kind, tmp_path):
    """Adapters side by side in one table are kept apart by selection: another row's columns may be infinite for
    this row's input (inf * 0 would be NaN), and must leave it exactly as it is alone."""
    chosen = request.getfixturevalue("engine" if path == "eager" else "static_engine")
    if kind == "lora":
        delta = chosen.get("lora")
    else:
        from tests.test_bottleneck import FIXTURES, stored_form

        delta = chosen.compile(stored_form(FIXTURES / "seq_bn", tmp_path / "seq_bn"))
    chosen.register("overflowing", overflowing(delta))
    try:
        neighbours = ["lora", None, "ia3"] if kind == "bottleneck" else ["lora_patterns", None, "ia3"]
        plan = list(zip(neighbours, TEXTS))
        alone = [outputs(chosen.generate_rows([chosen.make_row(t, chosen.get(n), PARAMS)]))[0] for n, t in plan]
        bad = chosen.make_row("Paris", chosen.get("overflowing"), PARAMS)
        mixed = chosen.generate_rows([bad, *(chosen.make_row(t, chosen.get(n), PARAMS) for n, t in plan)])
        failed = mixed.pop(0)
        assert failed.finish_reason == "error" and isinstance(failed.error, NonFiniteLogits)
        assert_unchanged(outputs(mixed), alone)
    finally:
        chosen.unregister("overflowing")


def test_the_static_path_scrubs_a_failed_rows_slot(static_engine, with_poison_static):
    """A NaN row leaves NaN keys/values in its slot; the next row placed there must not attend over them."""
    rows = neighbour_rows(static_engine)
    bad = static_engine.make_row("Paris", static_engine.get(with_poison_static), PARAMS)
    expected = outputs(static_engine.generate_rows(rows))
    batch = static_engine.new_batch()
    try:
        finished = batch.admit([rows[0], bad], tickets=[0, "bad"])  # the bad row fails at once, from the last slot
        assert [s.ticket for s in finished] == ["bad"]
        results = {}
        waiting = list(enumerate(rows))[1:]
        while waiting or len(batch):
            if waiting and batch.free_rows():
                index, row = waiting.pop(0)
                finished = batch.admit([row], tickets=[index])  # lands in the freed slot
            else:
                finished = batch.step()
            results.update({s.ticket: s.result() for s in finished})
    finally:
        batch.close()
    # Rows joined at other times than in `expected`, so they attend over other padded widths: the same tokens,
    # log-probabilities equal up to float rounding. A NaN left in the slot would fail the row instead.
    assert_unchanged(outputs(results[i] for i in range(len(rows))), expected)


@pytest.fixture
def with_poison_static(static_engine):
    static_engine.register("poisoned", poisoned(static_engine.get("prompt_tuning")))
    yield "poisoned"
    static_engine.unregister("poisoned")


def test_a_failure_in_sampling_one_row_fails_only_that_row(engine, monkeypatch):
    marker = SamplingParams(max_new_tokens=8, temperature=1.0, top_k=7, seed=1)
    filter_logits = sampling._filter_logits

    def broken_for_the_marked_row(logits, params):
        if params.top_k == 7:
            raise RuntimeError("injected")
        return filter_logits(logits, params)

    sampled = SamplingParams(max_new_tokens=8, temperature=0.8, top_p=0.9, seed=3, logprobs=2)
    rows = [*neighbour_rows(engine), engine.make_row("Paris", engine.get("lora"), sampled)]
    alone = outputs(engine.generate_rows(rows))
    monkeypatch.setattr(sampling, "_filter_logits", broken_for_the_marked_row)
    mixed = engine.generate_rows([engine.make_row("Paris", engine.get("ia3"), marker), *rows])
    assert mixed[0].finish_reason == "error" and isinstance(mixed[0].error, RowFailed)
    assert "injected" in mixed[0].error.message
    assert_unchanged(outputs(mixed[1:]), alone)


def test_a_failure_in_stop_handling_one_row_fails_only_that_row(engine, monkeypatch):
    find_stop = row_state.find_stop

    def broken_for_one_stop_string(text, piece, stops):
        if "BOOM" in stops:
            raise ValueError("injected")
        return find_stop(text, piece, stops)

    with_stops = SamplingParams(max_new_tokens=8, stop=("never", "appears"), logprobs=1)
    rows = [*neighbour_rows(engine), engine.make_row(TEXTS[0], engine.get("lora"), with_stops)]
    alone = outputs(engine.generate_rows(rows))
    monkeypatch.setattr(row_state, "find_stop", broken_for_one_stop_string)
    booming = engine.make_row(TEXTS[1], engine.get("prefix_tuning"), SamplingParams(max_new_tokens=8, stop=("BOOM",)))
    mixed = engine.generate_rows([*rows[:3], booming, *rows[3:]])
    failed = mixed.pop(3)
    assert failed.finish_reason == "error" and isinstance(failed.error, RowFailed)
    assert_unchanged(outputs(mixed), alone)


def test_a_failure_in_detokenizing_one_row_fails_only_that_row(engine, monkeypatch):
    rows = neighbour_rows(engine)
    alone = outputs(engine.generate_rows(rows))
    victim = engine.make_row("Who painted the Mona Lisa?", None, SamplingParams(max_new_tokens=8, top_k=99))
    add = row_state.IncrementalText.add
    owners = {}

    def broken_for_the_victim(self, token):
        if owners.get(id(self)) == "victim":
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "injected")
        return add(self, token)

    init = row_state.RowState.__init__

    def remember(self, row, base, ticket=None):
        init(self, row, base, ticket)
        owners[id(self.detokenizer)] = "victim" if row is victim else "other"

    monkeypatch.setattr(row_state.IncrementalText, "add", broken_for_the_victim)
    monkeypatch.setattr(row_state.RowState, "__init__", remember)
    mixed = engine.generate_rows([victim, *rows])
    assert mixed[0].finish_reason == "error" and isinstance(mixed[0].error, RowFailed)
    assert_unchanged(outputs(mixed[1:]), alone)


def test_a_row_that_breaks_the_prefill_fails_alone(engine):
    """A delta the batch builder cannot lay out (virtual tokens of the wrong width) fails its own row; the
    rows prefilled in the same group are retried one by one and come out as they would alone."""
    prompt = engine.get("prompt_tuning")
    broken = dataclasses.replace(prompt, prompt=VirtualTokens(torch.zeros(prompt.num_virtual_tokens, 3)))
    rows = neighbour_rows(engine)
    alone = outputs(engine.generate_rows(rows))
    mixed = engine.generate_rows([*rows[:1], engine.make_row("Paris", broken, PARAMS), *rows[1:]])
    failed = mixed.pop(1)
    assert failed.finish_reason == "error" and isinstance(failed.error, RowFailed)
    assert_unchanged(outputs(mixed), alone)


@pytest.mark.parametrize("params", [
    SamplingParams(max_new_tokens=8, temperature=5e-324),  # greedy: dividing by it would overflow
    SamplingParams(max_new_tokens=8, temperature=1.0, top_p=1e-300, seed=5),  # keeps the likeliest token
    SamplingParams(max_new_tokens=8, temperature=10.0, top_k=1, seed=2**63 - 1),
])
def test_extreme_sampling_parameters_are_served_and_harm_no_neighbour(engine, params):
    rows = neighbour_rows(engine)
    alone = outputs(engine.generate_rows(rows))
    mixed = engine.generate_rows([engine.make_row("Paris", engine.get("lora"), params), *rows])
    assert mixed[0].finish_reason in ("stop", "length") and mixed[0].error is None
    assert_unchanged(outputs(mixed[1:]), alone)
    greedy = engine.generate_rows([engine.make_row("Paris", engine.get("lora"), SamplingParams(max_new_tokens=8))])
    if params.top_p < 1e-200 or params.top_k == 1 or params.temperature < 1e-5:
        assert mixed[0].token_ids == greedy[0].token_ids  # each of these leaves only the likeliest token


def test_logprobs_are_the_models_and_agree_with_greedy_choice(engine):
    result = engine.generate(["Paris"], "lora", SamplingParams(max_new_tokens=6, logprobs=5))[0]
    assert len(result.logprobs) == len(result.token_ids)
    for token, entry in zip(result.token_ids, result.logprobs):
        assert entry.token == token and entry.top[0][0] == token  # greedy picks the likeliest
        assert entry.logprob == pytest.approx(entry.top[0][1]) and entry.logprob <= 0
        assert [p for _, p in entry.top] == sorted((p for _, p in entry.top), reverse=True)


# -- over HTTP: the poisons of the hardening review, sent while four greedy requests are running ----------------


def test_poisoned_requests_fail_or_pass_alone_while_others_run(tmp_path, tiny_base, engine, monkeypatch):
    import asyncio
    import threading

    import httpx

    from service.config import Settings
    from service.engine.decode_loop import RunningBatch
    from service.main import create_app
    from tests.http_server import serve

    gate = threading.Event()
    step = RunningBatch.step
    monkeypatch.setattr(RunningBatch, "step", lambda batch: gate.wait(60) and step(batch))
    # The four running requests must join in one prefill (the gate holds every step, so a late one could never
    # join them): an idle batcher waits up to max_batch_wait_ms for its batch to fill.
    settings = Settings(adapters_dir=tmp_path / "store", load_demo_adapters=False, max_batch_wait_ms=2000)
    app = create_app(settings, base=tiny_base)
    greedy = {"text": "The quick brown fox", "max_new_tokens": 12}
    poisons = [
        {**greedy, "temperature": 5e-324},
        {**greedy, "temperature": 1, "top_p": 1e-300},
        {**greedy, "seed": 2**70, "temperature": 1},
        {**greedy, "adapter": "poisoned"},
    ]

    async def until(client, section: str, field: str, count: int) -> None:
        while (await client.get("/stats")).json()[section][field] < count:
            await asyncio.sleep(0.01)

    async def scenario(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            running = [asyncio.ensure_future(client.post("/generate", json=greedy)) for _ in range(4)]
            await asyncio.wait_for(until(client, "queue", "running_rows", 4), 30)
            poisoned = [asyncio.ensure_future(client.post("/generate", json=body)) for body in poisons]
            await asyncio.wait_for(until(client, "admission", "requests", 4 + 3), 30)  # the seed one is refused
            gate.set()
            return await asyncio.gather(*running), await asyncio.gather(*poisoned)

    with serve(app) as url:
        app.state.deltaserve.engine.register("poisoned", poisoned(engine.get("prompt_tuning")))
        try:
            running, answers = asyncio.run(scenario(url))
        finally:
            gate.set()
    alone = engine.generate([greedy["text"]], None, SamplingParams(max_new_tokens=12))[0].text
    assert [r.status_code for r in running] == [200] * 4 and all(r.json()["text"] == alone for r in running)
    assert [a.status_code for a in answers] == [200, 200, 422, 500]
    assert answers[0].json()["text"] == alone and answers[1].json()["text"] == alone  # both leave only the top token
    assert "seed" in answers[2].json()["error"]["message"]
    assert answers[3].json()["error"]["code"] == "non_finite_logits"


def test_an_adapter_whose_output_overflows_is_refused_at_upload(tmp_path, tiny_base, adapter_dirs):
    """Finite weights inside the dtype's range can still overflow inside the model: one probe pass finds it."""
    import httpx
    from safetensors.torch import load_file, save_file

    from service.config import Settings
    from service.main import create_app
    from tests.http_server import serve
    from tests.test_api import multipart

    huge = tmp_path / "huge"
    huge.mkdir()
    (huge / "adapter_config.json").write_bytes((adapter_dirs["lora"] / "adapter_config.json").read_bytes())
    tensors = load_file(adapter_dirs["lora"] / "adapter_model.safetensors")
    save_file({k: v * 3e38 if "lora_B" in k else v for k, v in tensors.items()}, huge / "adapter_model.safetensors")
    settings = Settings(adapters_dir=tmp_path / "store", load_demo_adapters=False)
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        refused = client.put("/adapters/huge", **multipart(huge))
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_adapter_weights"
        assert "probe" in refused.json()["error"]["message"]
        assert client.get("/adapters").json() == {"adapters": []}


def test_tokenizing_and_templating_run_off_the_event_loop(tmp_path, tiny_base, adapter_dirs, monkeypatch):
    import threading

    import httpx

    from service.config import Settings
    from service.engine import Engine
    from service.main import create_app
    from tests.http_server import serve
    from tests.test_api import multipart

    threads: set[str] = set()
    tokenize = Engine.tokenize

    def recording(self, text, *args, **kwargs):
        threads.add(threading.current_thread().name)
        return tokenize(self, text, *args, **kwargs)

    monkeypatch.setattr(Engine, "tokenize", recording)
    settings = Settings(adapters_dir=tmp_path / "store", load_demo_adapters=False)
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.put("/adapters/t", **multipart(adapter_dirs["lora"], prompt_template="Q: {text}\nA:"))
        threads.clear()
        assert client.post("/generate", json={"adapter": "t", "text": "Paris", "max_new_tokens": 2}).status_code == 200
        pipeline = {"text": "Paris", "steps": [{"name": "a", "max_new_tokens": 2}]}
        assert client.post("/pipeline", json=pipeline).status_code == 200
    assert threads  # the event loop runs in its own thread; these are the default executor's workers
    assert all(name.startswith(("asyncio_", "uvloop_", "ThreadPoolExecutor")) for name in threads), threads
