"""The OpenAI protocol, driven by the official `openai` client against a live server on the tiny model:
models, completions and chat (plain and streamed), n, seeds, logprobs, usage, errors, disconnects."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import openai
import pytest

from service.config import Settings
from service.engine import SamplingParams
from service.engine.decode_loop import RunningBatch
from service.main import create_app
from tests.conftest import KINDS
from tests.http_server import serve
from tests.test_api import multipart

TEXT = "When was the Beijing Olympic held?"
TEMPLATE = "Question: {text}\nAnswer:"


def name_of(kind: str) -> str:
    return kind.replace("_", "-")


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_base, adapter_dirs):
    settings = Settings(adapters_dir=tmp_path_factory.mktemp("openai") / "store", load_demo_adapters=False,
                        max_batch_wait_ms=20, api_keys=["k1"], admin_key="admin")
    app = create_app(settings, base=tiny_base)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60, headers={"Authorization": "Bearer admin"}) as admin:
        for kind in KINDS:
            assert admin.put(f"/adapters/{name_of(kind)}", **multipart(adapter_dirs[kind])).status_code == 201
        assert (
            admin.put("/adapters/templated", **multipart(adapter_dirs["lora"], prompt_template=TEMPLATE)).status_code
            == 201
        )
        yield app, url


@pytest.fixture
def client(service):
    return openai.OpenAI(base_url=f"{service[1]}/v1", api_key="k1", max_retries=0)


def native(service, **body) -> dict:
    response = httpx.post(f"{service[1]}/generate", json=body, headers={"Authorization": "Bearer k1"}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_models_lists_the_base_and_every_adapter_with_parent_and_kind(client, engine):
    models = {m.id: m for m in client.models.list().data}
    base = models["tiny-llama"]
    assert base.model_extra["parent"] is None
    for kind in KINDS:
        model = models[name_of(kind)]
        assert model.model_extra["parent"] == "tiny-llama" and model.model_extra["kind"] == engine.get(kind).kind


@pytest.mark.parametrize("kind", [None, "lora", "prefix_tuning", "p_tuning_lstm"])
def test_greedy_completions_equal_generate_with_exact_usage(client, service, kind):
    model = "tiny-llama" if kind is None else name_of(kind)
    completion = client.completions.create(model=model, prompt=TEXT, max_tokens=10, temperature=0)
    expected = native(service, adapter=None if kind is None else model, text=TEXT, max_new_tokens=10)
    choice = completion.choices[0]
    assert choice.text == expected["text"] and choice.finish_reason == expected["finish_reason"]
    assert completion.usage.prompt_tokens == expected["prompt_tokens"]
    assert completion.usage.completion_tokens == expected["completion_tokens"]
    assert completion.usage.total_tokens == expected["prompt_tokens"] + expected["completion_tokens"]


def test_completions_apply_the_adapters_template_as_generate_does(client, service):
    completion = client.completions.create(model="templated", prompt="Paris", max_tokens=8, temperature=0)
    assert completion.choices[0].text == native(service, adapter="templated", text="Paris", max_new_tokens=8)["text"]


def test_logprobs_are_the_models_and_the_greedy_token_is_the_likeliest(client, engine):
    completion = client.completions.create(model="lora", prompt=TEXT, max_tokens=6, temperature=0, logprobs=3)
    logprobs = completion.choices[0].logprobs
    expected = engine.generate([TEXT], "lora", SamplingParams(max_new_tokens=6, logprobs=3))[0].logprobs
    assert logprobs.token_logprobs == pytest.approx([e.logprob for e in expected], abs=1e-5)
    for token, token_logprob, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        assert len(top) <= 3 and top[token] == pytest.approx(token_logprob) and token_logprob == max(top.values())
    assert logprobs.text_offset[0] == 0 and logprobs.text_offset == sorted(logprobs.text_offset)
    assert logprobs.text_offset[-1] <= len(completion.choices[0].text)

    chat = client.chat.completions.create(
        model="templated",
        messages=[{"role": "user", "content": TEXT}],
        max_tokens=5,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    for entry in chat.choices[0].logprobs.content:
        assert entry.top_logprobs[0].token == entry.token
        assert entry.token.startswith("bytes:") or entry.token == bytes(entry.bytes).decode()


def test_n_choices_with_a_seed_differ_and_reproduce(client):
    def sample():
        return client.completions.create(model="ia3", prompt=TEXT, max_tokens=12, temperature=1.0, n=3, seed=11)

    first, second = sample(), sample()
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert [c.text for c in first.choices] == [c.text for c in second.choices]
    assert len({c.text for c in first.choices}) > 1  # seed + i per choice
    assert first.usage == second.usage


def test_chat_uses_the_chat_template_or_the_adapters_template(client, service, tokenizer, tiny_base):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Paris"}]
    templated = client.chat.completions.create(model="templated", messages=messages, max_tokens=8, temperature=0)
    assert (
        templated.choices[0].message.content
        == native(service, adapter="templated", text="Paris", max_new_tokens=8)["text"]
    )
    assert templated.choices[0].message.role == "assistant"
    with pytest.raises(openai.UnprocessableEntityError, match="chat template"):  # the tiny tokenizer has none
        client.chat.completions.create(model="lora", messages=messages, max_tokens=4)


def test_streamed_completions_and_chat_equal_the_plain_ones_for_every_kind(client, service):
    async def streams():
        aclient = openai.AsyncOpenAI(base_url=f"{service[1]}/v1", api_key="k1", max_retries=0)

        async def one(kind):
            chunks = [
                c
                async for c in await aclient.completions.create(
                    model=name_of(kind),
                    prompt=TEXT,
                    max_tokens=10,
                    temperature=0,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            ]
            return kind, chunks

        return await asyncio.gather(*(one(kind) for kind in KINDS))  # one mixed batch

    for kind, chunks in asyncio.run(streams()):
        plain = client.completions.create(model=name_of(kind), prompt=TEXT, max_tokens=10, temperature=0)
        assert len({c.id for c in chunks}) == 1
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        assert text == plain.choices[0].text, kind
        finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finals == [plain.choices[0].finish_reason]
        assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage


def test_streamed_chat_sends_the_role_then_content_then_the_reason(client, service):
    stream = client.chat.completions.create(
        model="templated", messages=[{"role": "user", "content": "Paris"}], max_tokens=8, temperature=0, stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == native(service, adapter="templated", text="Paris", max_new_tokens=8)["text"]


def test_errors_come_in_openais_shape_and_raise_the_clients_classes(client, service):
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="no-such-adapter", prompt="x")
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="lora", prompt="x", temperature=3)
    with pytest.raises(openai.BadRequestError, match="echo"):
        client.completions.create(model="lora", prompt="x", echo=True)
    with pytest.raises(openai.UnprocessableEntityError, match="MAX_NEW_TOKENS_LIMIT"):
        client.completions.create(model="lora", prompt="x", max_tokens=100_000)
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=f"{service[1]}/v1", api_key="wrong", max_retries=0).completions.create(
            model="lora", prompt="x"
        )
    anonymous = httpx.post(f"{service[1]}/v1/completions", json={"model": "lora", "prompt": "x"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"
    raw = httpx.post(f"{service[1]}/v1/completions", json={"model": "lora"}, headers={"Authorization": "Bearer k1"})
    assert raw.status_code == 400 and set(raw.json()["error"]) == {"message", "type", "param", "code"}


def test_a_client_that_leaves_a_stream_frees_its_row(service, monkeypatch):
    app, url = service
    gate = threading.Event()
    step = RunningBatch.step

    def slow_step(batch):
        gate.wait(0.01)
        return step(batch)

    monkeypatch.setattr(RunningBatch, "step", slow_step)
    stats = app.state.deltaserve.engine.stats
    before = stats.cancelled_rows
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k1", max_retries=0)
    stream = client.completions.create(
        model="tiny-llama", prompt="The quick brown fox jumps over the lazy", max_tokens=190, temperature=0, stream=True
    )
    next(iter(stream))
    stream.close()  # the client goes away after its first chunk
    deadline = time.monotonic() + 20
    while stats.cancelled_rows == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stats.cancelled_rows == before + 1
