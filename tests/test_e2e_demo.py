"""End to end on the real default model and the committed demo adapters: the `spell-topic-qa` pipeline
corrects a misspelled question the training data does not contain, names its topic and answers briefly."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from adapters.recipes.corpus import TOPICS, all_questions, split
from service.config import Settings
from service.main import create_app
from tests.http_server import serve

pytestmark = pytest.mark.e2e

DEMO = Path(__file__).resolve().parents[1] / "adapters" / "demo"
# Clean question, a misspelling of it, and its topic. None of these questions is in the training split.
CASES = [
    ("Which planet is closest to the Sun?", "Wich planet is clossest to the Sun ?", "science"),
    ("Who painted the Mona Lisa?", "Who paintted the Mona Lsa?", "arts"),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(adapters_dir=tmp_path_factory.mktemp("demo") / "store", demo_adapters_dir=DEMO, device="cpu")
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=300) as client:
        yield client


def test_cases_are_not_training_data():
    training = {q.text for q in split(all_questions())[0]}
    assert not {clean for clean, _, _ in CASES} & training


def test_demo_adapters_and_pipeline_are_installed(client):
    kinds = {a["name"]: a["kind"] for a in client.get("/adapters").json()["adapters"]}
    assert kinds == {"spelling": "lora", "topic": "prompt_tuning", "qa": "prefix_tuning"}
    assert [p["name"] for p in client.get("/pipelines").json()["pipelines"]] == ["spell-topic-qa"]


@pytest.mark.parametrize("clean, misspelled, topic", CASES)
def test_spell_topic_qa(client, clean, misspelled, topic):
    response = client.post("/pipelines/spell-topic-qa", json={"text": misspelled})
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert outputs["spelling"].strip() == clean
    assert outputs["topic"].strip() == topic and topic in TOPICS
    assert 0 < len(outputs["answer"].split()) <= 8  # the format: a few words, no chatter
