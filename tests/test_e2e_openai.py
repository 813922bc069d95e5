"""The OpenAI protocol on the real SmolLM2-135M-Instruct (which has a chat template): chat, streamed chat and
completions through the official client agree with /generate on the same text."""

from __future__ import annotations

import httpx
import openai
import pytest

from service.config import Settings
from service.engine.base_model import load_base_model
from service.main import create_app
from tests.http_server import serve

pytestmark = pytest.mark.e2e

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    settings = Settings(device="cpu", adapters_dir=tmp_path_factory.mktemp("e2e-openai") / "store")
    with serve(create_app(settings, base=load_base_model(settings)), timeout=300) as url:
        yield url


def test_chat_equals_generate_on_the_chat_templated_text(url):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    messages = [{"role": "user", "content": QUESTION}]
    chat = client.chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=messages, max_tokens=16, temperature=0
    )
    text = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    native = httpx.post(f"{url}/generate", json={"text": text, "max_new_tokens": 16}, timeout=120).json()
    assert chat.choices[0].message.content == native["text"] and "Paris" in native["text"]
    assert chat.usage.completion_tokens == native["completion_tokens"]
    streamed = client.chat.completions.create(
        model="SmolLM2-135M-Instruct", messages=messages, max_tokens=16, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == native["text"]


def test_the_demo_adapters_answer_through_the_protocol(url):
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    models = {m.id: m.model_extra["kind"] for m in client.models.list().data}
    assert {"spelling", "topic", "qa"} <= set(models)
    question = "Which planet is the largest?"
    for name in ("topic", "qa"):
        completion = client.completions.create(model=name, prompt=question, max_tokens=8, temperature=0)
        native = httpx.post(
            f"{url}/generate", json={"adapter": name, "text": question, "max_new_tokens": 8}, timeout=120
        ).json()
        assert completion.choices[0].text == native["text"]
