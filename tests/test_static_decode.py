"""The static decode path (preallocated KV cache, per-row delta tables; CUDA graphs on a GPU) gives PEFT's
greedy tokens, and log-probabilities within the float32 tolerance of PEFT's at every step, for every row
through joins, departures, roll-offs and table growth: each row is compared with PEFT run on it alone.

On CPU the static step runs eagerly; what a CUDA graph would replay is that same step, and the dynamo test
below shows it traces as one graph (no host syncs, no data-dependent Python). The CUDA-only tests at the end
run where a GPU is present."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import random

import httpx
import pytest
import torch

from service.config import Settings
from service.engine import Engine, SamplingParams
from service.engine.base_model import wrap_base_model
from service.engine.batcher import Batcher
from service.engine.deltas.ia3 import IA3Table
from service.engine.deltas.lora import LoraTable
from service.engine.row_tables import RowTables
from service.engine.static_cache import StaticKVCache
from service.engine.static_decode import StaticRunningBatch
from service.errors import InvalidRequest
from service.main import create_app
from tests.conftest import KINDS, STATIC_CAPACITY, STATIC_SLOTS
from tests.http_server import serve
from tests.peft_reference import (
    assert_matches_peft,
    generate_runs,
    load_peft,
    logprob_params,
)
from tests.test_engine_equality import EOS, PROMPTS

FP32 = torch.float32

SLOTS = STATIC_SLOTS  # the `static_engine` fixture's (conftest.py)
CAPACITY = STATIC_CAPACITY


@pytest.fixture
def shifts(monkeypatch):
    """Records every roll of the static cache: > 0 made room for a longer newcomer, < 0 dropped padding."""
    seen: list[int] = []
    original = StaticKVCache.shift

    def recording(self, columns, rows):
        seen.append(columns)
        return original(self, columns, rows)

    monkeypatch.setattr(StaticKVCache, "shift", recording)
    return seen


def test_static_is_used_and_cpu_auto_stays_eager(static_engine, engine):
    assert static_engine.decoder is not None and static_engine.decoder.width_buckets == [16, 32, 56]
    assert engine.decoder is None  # decode="auto" on CPU
    batch = static_engine.new_batch()
    assert isinstance(batch, StaticRunningBatch)
    batch.close()


@pytest.mark.parametrize("kind", KINDS)
def test_static_path_equals_peft_each_prompt_alone(kind, static_engine, peft_oracle, vocab_size):
    ours = static_engine.generate(PROMPTS, adapter=kind, params=logprob_params(10, vocab_size))
    for text, result in zip(PROMPTS, ours):
        assert_matches_peft(result, peft_oracle.alone(kind, text, 10), FP32, f"{kind} {text!r}", eos_token_id=EOS)


def test_base_model_on_static_path_equals_transformers(static_engine, tiny_model, tokenizer, vocab_size):
    expected = generate_runs(tiny_model, tokenizer, PROMPTS, 10, EOS)
    ours = static_engine.generate(PROMPTS, adapter=None, params=logprob_params(10, vocab_size))
    for text, result, run in zip(PROMPTS, ours, expected):
        assert_matches_peft(result, run, FP32, f"base model {text!r}", eos_token_id=EOS)


def test_mixed_rows_through_few_slots_equal_peft_rows_alone(static_engine, peft_oracle, vocab_size, shifts):
    """20 rows of every kind through 4 slots: rows join as others leave, and the cache fills up and rolls."""
    names = [*KINDS, None]
    plan = [(names[i % len(names)], PROMPTS[(i * 3) % len(PROMPTS)], 4 + (i * 7) % 16) for i in range(20)]
    rows = [static_engine.make_row(text, static_engine.get(name), logprob_params(n, vocab_size))
            for name, text, n in plan]
    mixed = static_engine.generate_rows(rows)
    for (name, text, n), result in zip(plan, mixed):
        assert_matches_peft(result, peft_oracle.alone(name, text, n), FP32, f"{name} {text!r}", eos_token_id=EOS)
    assert any(s < 0 for s in shifts), "the run never rolled padding off the cache"
    assert static_engine.decoder.try_lease(), "generate_rows must give the static path back"
    static_engine.decoder.release()


def test_longer_newcomer_shifts_running_rows(static_engine, peft_oracle, vocab_size, shifts):
    params = logprob_params(12, vocab_size)
    short = static_engine.make_row("Paris", static_engine.get("lora"), params)
    long = static_engine.make_row(
        "Who painted the Mona Lisa? Leonardo da", static_engine.get("prefix_projection"), params
    )
    batch = static_engine.new_batch()
    try:
        finished = batch.admit([short], tickets=["short"])
        finished += batch.step()
        finished += batch.admit([long], tickets=["long"])
        while len(batch):
            finished += batch.step()
    finally:
        batch.close()
    results = {state.ticket: state.result() for state in finished}
    assert any(s > 0 for s in shifts)
    assert_matches_peft(results["short"], peft_oracle.alone("lora", "Paris", 12), FP32, "short", eos_token_id=EOS)
    expected_long = peft_oracle.alone("prefix_projection", "Who painted the Mona Lisa? Leonardo da", 12)
    assert_matches_peft(results["long"], expected_long, FP32, "long", eos_token_id=EOS)


def test_only_one_batch_holds_the_static_path(static_engine):
    first = static_engine.new_batch()
    second = static_engine.new_batch()
    try:
        assert isinstance(first, StaticRunningBatch) and not isinstance(second, StaticRunningBatch)
        # The eager batch still serves correctly while the static path is held.
        row = static_engine.make_row("Paris", static_engine.get("ia3"), SamplingParams(max_new_tokens=5))
        assert static_engine.generate_rows([row])[0].completion_tokens > 0
    finally:
        first.close()
        second.close()
    again = static_engine.new_batch()
    assert isinstance(again, StaticRunningBatch)
    again.close()


def test_rows_longer_than_the_cache_are_refused(static_engine):
    with pytest.raises(InvalidRequest, match="DELTASERVE_KV_CACHE_TOKENS"):
        static_engine.make_row("Paris", None, SamplingParams(max_new_tokens=CAPACITY))


def fixed_tables(engine) -> RowTables:
    return RowTables(engine.base.linear_shapes, SLOTS + 1, torch.device("cpu"), torch.float32, growable=False)


def tables_of(tables: RowTables, table_type) -> dict:
    return {module: table for (module, kind), table in tables.tables.items() if issubclass(kind, table_type)}


def test_tables_hold_each_rows_delta_and_only_grow(static_engine):
    tables = fixed_tables(static_engine)
    lora, patterns, ia3 = (static_engine.get(kind) for kind in ("lora", "lora_patterns", "ia3"))
    tables.assign([lora])
    version = tables.version
    numbers = tables.assign([None, lora])  # rows move, adapters stay: only the row -> number map changes
    assert tables.version == version and numbers == [0, tables.numbers[lora.uid]]

    rows = tables.assign([lora, patterns, ia3, lora])
    assert rows[0] == rows[3] and len({rows[0], rows[1], rows[2]}) == 3
    for table in tables_of(tables, LoraTable).values():
        own, other = table.scales[rows[0]] != 0, table.scales[rows[1]] != 0
        assert not bool((own & other).any())  # two LoRAs never share rank columns
        assert float(table.scales[rows[2]].abs().sum()) == 0  # the IA3 adapter has no LoRA columns
    for name, table in tables_of(tables, IA3Table).items():
        assert torch.equal(table.vectors[rows[2]], ia3.modules[name].vector)
        assert bool((table.vectors[[0, rows[0], rows[1]]] == 1).all())

    # The LoRA adapters leave: their numbers are free and hold nothing; only the IA3 row stays.
    tables.assign([ia3])
    assert set(tables.numbers) == {ia3.uid}
    assert all(float(t.scales.abs().sum()) == 0 for t in tables_of(tables, LoraTable).values())
    version = tables.version
    assert tables.assign([]) == [] and tables.version == version and tables.numbers == {} and tables.empty
    assert all(bool((t.vectors == 1).all()) for t in tables_of(tables, IA3Table).values())
    with pytest.raises(RuntimeError, match="do not fit"):  # fixed tables never grow their numbers
        tables.assign(
            [static_engine.get(kind) for kind in KINDS if static_engine.get(kind).modules] * 2
            + [dataclasses.replace(lora, uid=lora.uid + 10_000 + i) for i in range(SLOTS)]
        )


def test_tables_reuse_freed_columns_and_grow_when_full(static_engine):
    tables = fixed_tables(static_engine)
    lora, patterns = static_engine.get("lora"), static_engine.get("lora_patterns")
    name = next(n for n in lora.modules if n in patterns.modules)
    tables.assign([lora])
    width = tables_of(tables, LoraTable)[name].rank_columns
    for _ in range(3):  # leaving and coming back reuses the same columns: nothing grows
        tables.assign([patterns])
        tables.assign([lora])
    assert tables_of(tables, LoraTable)[name].rank_columns == width
    tables.assign([lora, patterns])
    table = tables_of(tables, LoraTable)[name]
    assert table.rank_columns >= lora.modules[name].rank + patterns.modules[name].rank
    start, rank = table._blocks.blocks[tables.numbers[patterns.uid]]
    torch.testing.assert_close(table.a[start : start + rank], patterns.modules[name].lora_a)


def test_eager_tables_grow_their_numbers_as_adapters_join(engine):
    tables = RowTables(engine.base.linear_shapes, 2, torch.device("cpu"), torch.float32, growable=True)
    versions = [dataclasses.replace(engine.get("lora"), uid=engine.get("lora").uid + 20_000 + i) for i in range(5)]
    numbers = tables.assign(versions)
    assert sorted(numbers) == [1, 2, 3, 4, 5] and tables.capacity >= 6
    table = tables_of(tables, LoraTable)[next(iter(versions[0].modules))]
    assert all(float(table.scales[n].abs().sum()) > 0 for n in numbers)


def test_decode_step_traces_as_one_graph(static_engine):
    """What a CUDA graph captures must have no host syncs and no data-dependent Python: dynamo's fullgraph
    mode refuses both, so tracing the step proves it is capturable (on CPU, where CI runs)."""
    decoder = static_engine.decoder
    assert decoder.try_lease()
    try:
        with torch.inference_mode():
            deltas = [static_engine.get("lora"), static_engine.get("ia3"), None, static_engine.get("lora_patterns")]
            decoder.row_numbers[:SLOTS] = torch.tensor(decoder.tables.assign(deltas))
            decoder.cache.set_column(5)
            decoder.cache.rows, decoder.cache.width = SLOTS, 16
            eager = decoder._step(True).clone()
            traced = torch.compile(lambda: decoder._step(True), backend="eager", fullgraph=True)()
        torch.testing.assert_close(traced, eager)
    finally:
        with torch.inference_mode():
            decoder.cache.valid.zero_()
            decoder.tables.assign([])
            decoder.row_numbers.zero_()
        decoder.release()


cuda = pytest.mark.cuda  # skipped without a GPU (conftest.py); `make gpu-check` runs these


@cuda
def test_cuda_graphs_equal_eager_static_steps_bf16(tiny_model, tokenizer, adapter_dirs):
    """Replaying captured graphs gives exactly what running the same static step eagerly gives."""

    def build(graphs: bool) -> Engine:
        model = copy.deepcopy(tiny_model).to("cuda", torch.bfloat16)
        engine = Engine(
            wrap_base_model(model, tokenizer, name="tiny"), decode="static", max_batch_size=8, cuda_graphs=graphs
        )
        for kind, directory in adapter_dirs.items():
            engine.load(kind, directory)
        engine.warm_up()
        return engine

    graphed, plain = build(True), build(False)
    names = [*KINDS, None]
    params = SamplingParams(max_new_tokens=12)
    for engine in (graphed, plain):
        rows = [engine.make_row(PROMPTS[i % 4], engine.get(names[i % len(names)]), params) for i in range(24)]
        engine.results = [r.token_ids for r in engine.generate_rows(rows)]
    assert graphed.decoder.captures > 0
    assert graphed.results == plain.results


@cuda
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_graphs_equal_peft_bf16_prompt_by_prompt(kind, tiny_model, tokenizer, adapter_dirs, vocab_size):
    """bf16 on the GPU against PEFT in bf16, each prompt alone: log-probabilities within the bfloat16 tolerance,
    and tokens that part from PEFT's only at a bfloat16 near tie (padded attention widths round differently:
    see tests/test_engine_bf16.py)."""
    model = copy.deepcopy(tiny_model).to("cuda", torch.bfloat16)
    engine = Engine(wrap_base_model(model, tokenizer, name="tiny"), decode="static", max_batch_size=4)
    engine.load(kind, adapter_dirs[kind])
    peft_model = load_peft(copy.deepcopy(tiny_model).to("cuda", torch.bfloat16), adapter_dirs[kind])
    for text in PROMPTS:
        expected = generate_runs(peft_model, tokenizer, [text], 10, EOS)[0]
        ours = engine.generate([text], kind, logprob_params(10, vocab_size))[0]
        assert_matches_peft(ours, expected, torch.bfloat16, f"{kind} {text!r}", eos_token_id=EOS, near_tie_steps=2)


def test_batcher_on_the_static_path(static_engine, peft_oracle, vocab_size):
    """Concurrent requests of every kind through the continuous batcher, more of them than slots."""
    names = [*KINDS, None]
    requests = [(names[i % len(names)], PROMPTS[i % len(PROMPTS)]) for i in range(14)]
    params = logprob_params(9, vocab_size)

    async def serve_all():
        batcher = Batcher(static_engine, max_batch_size=SLOTS, max_batch_wait_ms=1)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.generate(text, name, params) for name, text in requests))
        finally:
            await batcher.stop()

    results = asyncio.run(serve_all())
    for (name, text), result in zip(requests, results):
        assert_matches_peft(result, peft_oracle.alone(name, text, 9), FP32, f"{name} {text!r}", eos_token_id=EOS)
    assert static_engine.decoder.try_lease(), "a stopped batcher must give the static path back"
    static_engine.decoder.release()


def test_http_service_on_the_static_path(tmp_path, tiny_base, adapter_dirs, engine):
    settings = Settings(
        adapters_dir=tmp_path / "store",
        load_demo_adapters=False,
        decode="static",
        max_batch_size=SLOTS,
        kv_cache_tokens=64,
    )
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        for kind in ("lora", "prefix_projection"):
            files = [("files", (f.name, f.read_bytes())) for f in sorted(adapter_dirs[kind].iterdir())]
            assert client.put(f"/adapters/{kind}", files=files).status_code == 201
        for kind in ("lora", "prefix_projection", None):
            body = {"adapter": kind, "text": PROMPTS[0], "max_new_tokens": 8}
            response = client.post("/generate", json=body)
            assert response.status_code == 200, response.text
            expected = engine.generate([PROMPTS[0]], kind, SamplingParams(max_new_tokens=8))[0]
            assert response.json()["text"] == expected.text
        decode = client.get("/stats").json()["decode"]
        assert decode == {"path": "static", "kv_cache_tokens": 64, "slots": SLOTS, "graphs_captured": 0}
        too_long = client.post("/generate", json={"text": PROMPTS[0], "max_new_tokens": 60})
        assert too_long.status_code == 422 and "DELTASERVE_KV_CACHE_TOKENS" in too_long.text


def test_rows_admitted_together_pack_out_each_others_padding(static_engine, peft_oracle, vocab_size):
    """A prefix row and a long-prompt row prefilled together: the padded prefill is wider than either row, but
    each row only takes its own entries in the cache, so both fit although padded they would not."""
    prefix = static_engine.get("prefix_projection")
    long_text, short_text = PROMPTS[2], "Paris"
    long_ids, short_ids = static_engine.tokenize(long_text), static_engine.tokenize(short_text)
    new = CAPACITY - len(long_ids)
    assert prefix.prefix_length + len(short_ids) + new <= CAPACITY < prefix.prefix_length + len(long_ids) + new
    params = logprob_params(new, vocab_size)
    rows = [static_engine.make_row(long_text, None, params), static_engine.make_row(short_text, prefix, params)]
    together = static_engine.generate_rows(rows)
    assert together[1].completion_tokens == new  # the prefix row really runs to the end of the cache
    assert_matches_peft(together[0], peft_oracle.alone(None, long_text, new), FP32, "long", eos_token_id=EOS)
    expected_prefix_row = peft_oracle.alone("prefix_projection", short_text, new)
    assert_matches_peft(together[1], expected_prefix_row, FP32, "prefix", eos_token_id=EOS)


def test_staggered_joins_near_the_cache_limit(static_engine, peft_oracle, vocab_size, monkeypatch):
    """Rows whose lengths nearly fill the cache join at random token boundaries: every shift, roll-off and
    departure (including one in the very step that fills the cache) keeps each row's tokens."""
    rng = random.Random(7)
    names = [*KINDS, None]
    waiting = []
    for index in range(30):
        name, text = rng.choice(names), rng.choice([*PROMPTS, "Paris", "The"])
        delta = static_engine.get(name)
        room = (
            CAPACITY
            - len(static_engine.tokenize(text))
            - (delta.num_virtual_tokens + delta.prefix_length if delta else 0)
        )
        waiting.append((index, name, text, logprob_params(rng.randint(max(1, room - 6), room), vocab_size)))
    plan = list(waiting)
    expected = {index: peft_oracle.alone(name, text, params.max_new_tokens) for index, name, text, params in plan}
    moves = []
    original_move = StaticKVCache.move_slots
    monkeypatch.setattr(
        StaticKVCache, "move_slots", lambda self, s, t, *extra: (moves.append(s), original_move(self, s, t, *extra))
    )
    batch = static_engine.new_batch()
    results = {}
    try:
        while waiting or len(batch):
            if waiting and batch.free_rows() and rng.random() < 0.3:
                joining = waiting[: rng.randint(1, min(batch.free_rows(), len(waiting)))]
                waiting = waiting[len(joining) :]
                rows = [
                    static_engine.make_row(text, static_engine.get(name), params) for _, name, text, params in joining
                ]
                finished = batch.admit(rows, tickets=[index for index, *_ in joining])
            elif len(batch):
                finished = batch.step()
            else:
                continue
            results.update({state.ticket: state.result() for state in finished})
    finally:
        batch.close()
    assert sorted(results) == sorted(expected)
    for index, name, text, _ in plan:
        assert_matches_peft(results[index], expected[index], FP32, f"row {index}: {name} {text!r}", eos_token_id=EOS)
    assert moves, "no row ever moved into a freed slot"


def test_failing_graph_capture_falls_back_to_eager_steps(tiny_model, tokenizer, adapter_dirs, engine, caplog):
    """Where capture fails (here: asked for on a machine without CUDA), the server logs it and serves on."""
    base = wrap_base_model(copy.deepcopy(tiny_model), tokenizer, name="tiny-llama")
    static = Engine(base, decode="static", max_batch_size=SLOTS, kv_cache_tokens=CAPACITY)
    static.load("lora", adapter_dirs["lora"])
    static.decoder.use_graphs = True
    with caplog.at_level("ERROR"):
        static.warm_up()
    assert not static.decoder.use_graphs and "CUDA graphs are off" in caplog.text
    static.decoder.use_graphs = True  # and if it fails later, on first use of a new bucket
    params = SamplingParams(max_new_tokens=6)
    assert (
        static.generate(PROMPTS, "lora", params)[0].token_ids == engine.generate(PROMPTS, "lora", params)[0].token_ids
    )
    assert not static.decoder.use_graphs and static.decoder.try_lease()
    static.decoder.release()
