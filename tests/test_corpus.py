"""The demo adapters' training corpus: data files, content, split by fact and spelling pairs (pure Python, fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from adapters.recipes import corpus
from adapters.recipes.corpus import (
    TOPICS,
    Question,
    all_questions,
    fact_key,
    fact_table_rows,
    fact_tables,
    spelling_pairs,
    split,
)

REPO = Path(__file__).resolve().parents[1]
Halves = tuple[list[Question], list[Question]]


@pytest.fixture(scope="module")
def questions() -> list[Question]:
    return all_questions()


@pytest.fixture(scope="module")
def halves(questions: list[Question]) -> Halves:
    return split(questions)


def test_deterministic(questions: list[Question]) -> None:
    assert all_questions() == questions
    assert split(questions) == split(all_questions())
    assert spelling_pairs(questions[:200], seed=3) == spelling_pairs(questions[:200], seed=3)


def test_topics_and_sizes(questions: list[Question]) -> None:
    counts = Counter(q.topic for q in questions)
    assert set(counts) == set(TOPICS)
    assert all(counts[topic] >= 120 for topic in TOPICS), counts
    assert len(questions) >= 1000


def test_texts_unique_and_sorted(questions: list[Question]) -> None:
    texts = [q.text for q in questions]
    assert len(texts) == len(set(texts))
    assert questions == sorted(questions, key=lambda q: (TOPICS.index(q.topic), q.text.lower(), q.text))


def test_question_and_answer_shape(questions: list[Question]) -> None:
    for q in questions:
        assert q.topic in TOPICS
        assert q.answer.strip() and len(q.answer.split()) <= 5, q
        assert 4 <= len(q.text.split()) <= 15, q
        assert q.text[-1] in "?." and q.text[0].isupper(), q
        assert q.text == " ".join(q.text.split()) and q.text.isascii(), q


def test_question_is_frozen() -> None:
    q = Question(text="What is the capital of France?", answer="Paris", topic="geography")
    with pytest.raises(AttributeError):
        q.answer = "Lyon"  # type: ignore[misc]


def test_split_is_disjoint_by_text_and_fact(questions: list[Question], halves: Halves) -> None:
    train, heldout = halves
    assert len(train) + len(heldout) == len(questions)
    assert not {q.text for q in train} & {q.text for q in heldout}
    assert not {fact_key(q) for q in train} & {fact_key(q) for q in heldout}


def test_split_is_stratified(questions: list[Question], halves: Halves) -> None:
    _, heldout = halves
    total, held = Counter(q.topic for q in questions), Counter(q.topic for q in heldout)
    for topic in TOPICS:
        assert held[topic] > 0
        assert 0.08 <= held[topic] / total[topic] <= 0.25, (topic, held[topic], total[topic])


def test_split_keeps_phrasings_of_a_fact_together(questions: list[Question], halves: Halves) -> None:
    _, heldout = halves
    held_texts = {q.text for q in heldout}
    groups = [
        (
            "What is the capital of France?",
            "Paris is the capital of which country?",
            "Name the capital city of France.",
        ),
        ("Which city hosted the 2008 Summer Olympics?", "In which year did Beijing host the Summer Olympics?"),
        ("What is the chemical symbol for gold?", "Which element has the chemical symbol Au?"),
    ]
    for group in groups:
        assert len({fact_key(next(q for q in questions if q.text == t)) for t in group}) == 1
        assert len({t in held_texts for t in group}) == 1


def test_split_other_seed_and_fraction(questions: list[Question]) -> None:
    _, a_held = split(questions, seed=1)
    _, b_held = split(questions, heldout_fraction=0.3, seed=1)
    assert {q.text for q in a_held} != {q.text for q in split(questions, seed=0)[1]}
    assert len(b_held) > len(a_held)
    assert split(questions, heldout_fraction=0.0)[1] == []


def test_fact_key_of_an_unknown_question() -> None:
    q = Question(text="Is this question made up?", answer="yes", topic="arts")
    assert fact_key(q) != fact_key(Question(text="Another one?", answer="yes", topic="arts"))


def test_spelling_pairs(questions: list[Question]) -> None:
    sample = questions[::7]
    pairs = spelling_pairs(sample, seed=5, clean_fraction=0.2)
    assert len(pairs) == len(sample)
    assert [target for _, target in pairs] == [q.text for q in sample]
    clean = sum(source == target for source, target in pairs)
    assert clean == round(0.2 * len(sample))
    assert spelling_pairs(sample, seed=6) != pairs


def test_spelling_pairs_copies_and_strings(questions: list[Question]) -> None:
    texts = [q.text for q in questions[:100]]
    pairs = spelling_pairs(texts, seed=1, clean_fraction=0.0, copies=3)
    assert len(pairs) == 300
    assert all(source != target for source, target in pairs)
    assert len(set(pairs)) == 300  # the three copies of a question are corrupted differently
    assert all(s == t for s, t in spelling_pairs(texts, seed=1, clean_fraction=1.0))


def test_every_fact_table_has_its_rows_file() -> None:
    tables = [table["table"] for table in fact_tables()]
    assert len(tables) == len(set(tables))
    assert sorted(tables) == sorted(path.stem for path in corpus.FACT_TABLE_ROWS_DIR.glob("*.csv"))
    for table in fact_tables():
        rows = fact_table_rows(table)
        assert rows and all(len(row) == len(rows[0]) for row in rows), table["table"]


def test_loads_from_any_working_directory(tmp_path: Path, questions: list[Question]) -> None:
    script = "import json, adapters.recipes.corpus as c; print(json.dumps([q.text for q in c.all_questions()]))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == [q.text for q in questions]


def test_a_short_row_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = next(t for t in fact_tables() if t["table"] == "capital")
    (tmp_path / "capital.csv").write_text("country,capital\nFrance,Paris\nSpain\n", encoding="utf-8")
    monkeypatch.setattr(corpus, "FACT_TABLE_ROWS_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"capital\.csv:3"):
        fact_table_rows(table)
