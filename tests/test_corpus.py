"""The demo adapters' training corpus: content, split, typos, spelling pairs and CER (pure Python, fast)."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from adapters.recipes.corpus import (
    TOPICS,
    Question,
    all_questions,
    cer,
    corrupt,
    fact_key,
    spelling_pairs,
    split,
)


@pytest.fixture(scope="module")
def questions() -> list[Question]:
    return all_questions()


@pytest.fixture(scope="module")
def halves(questions):
    return split(questions)


def test_deterministic(questions):
    assert all_questions() == questions
    assert split(questions) == split(all_questions())
    assert spelling_pairs(questions[:200], seed=3) == spelling_pairs(questions[:200], seed=3)


def test_topics_and_sizes(questions):
    counts = Counter(q.topic for q in questions)
    assert set(counts) == set(TOPICS)
    assert all(counts[topic] >= 120 for topic in TOPICS), counts
    assert len(questions) >= 1000


def test_texts_unique_and_sorted(questions):
    texts = [q.text for q in questions]
    assert len(texts) == len(set(texts))
    assert questions == sorted(questions, key=lambda q: (TOPICS.index(q.topic), q.text.lower(), q.text))


def test_question_and_answer_shape(questions):
    for q in questions:
        assert q.topic in TOPICS
        assert q.answer.strip() and len(q.answer.split()) <= 5, q
        assert 4 <= len(q.text.split()) <= 15, q
        assert q.text[-1] in "?." and q.text[0].isupper(), q
        assert q.text == " ".join(q.text.split()) and q.text.isascii(), q


def test_question_is_frozen():
    q = Question(text="What is the capital of France?", answer="Paris", topic="geography")
    with pytest.raises(AttributeError):
        q.answer = "Lyon"  # type: ignore[misc]


def test_split_is_disjoint_by_text_and_fact(questions, halves):
    train, heldout = halves
    assert len(train) + len(heldout) == len(questions)
    assert not {q.text for q in train} & {q.text for q in heldout}
    assert not {fact_key(q) for q in train} & {fact_key(q) for q in heldout}


def test_split_is_stratified(questions, halves):
    _, heldout = halves
    total, held = Counter(q.topic for q in questions), Counter(q.topic for q in heldout)
    for topic in TOPICS:
        assert held[topic] > 0
        assert 0.08 <= held[topic] / total[topic] <= 0.25, (topic, held[topic], total[topic])


def test_split_keeps_phrasings_of_a_fact_together(questions, halves):
    _, heldout = halves
    held_texts = {q.text for q in heldout}
    groups = [
        ("What is the capital of France?", "Paris is the capital of which country?", "Name the capital city of France."),
        ("Which city hosted the 2008 Summer Olympics?", "In which year did Beijing host the Summer Olympics?"),
        ("What is the chemical symbol for gold?", "Which element has the chemical symbol Au?"),
    ]
    for group in groups:
        assert len({fact_key(next(q for q in questions if q.text == t)) for t in group}) == 1
        assert len({t in held_texts for t in group}) == 1


def test_split_other_seed_and_fraction(questions):
    a_train, a_held = split(questions, seed=1)
    b_train, b_held = split(questions, heldout_fraction=0.3, seed=1)
    assert {q.text for q in a_held} != {q.text for q in split(questions, seed=0)[1]}
    assert len(b_held) > len(a_held)
    assert split(questions, heldout_fraction=0.0)[1] == []


def test_fact_key_of_an_unknown_question():
    q = Question(text="Is this question made up?", answer="yes", topic="arts")
    assert fact_key(q) != fact_key(Question(text="Another one?", answer="yes", topic="arts"))


def test_corrupt_changes_text_reproducibly(questions):
    rng = random.Random(0)
    noisy = [corrupt(q.text, rng) for q in questions]
    assert all(n != q.text for n, q in zip(noisy, questions))
    again = random.Random(0)
    assert noisy == [corrupt(q.text, again) for q in questions]


def test_corrupt_is_moderate_and_keeps_numbers(questions):
    rng = random.Random(1)
    rates, marks_kept = [], 0
    sample = questions[::4]  # the CER dynamic programme is pure Python; a quarter keeps this fast
    for q in sample:
        noisy = corrupt(q.text, rng)
        rate = cer(noisy, q.text)
        assert 0 < rate <= 0.5, (q.text, noisy)
        assert re.findall(r"\d+", noisy) == re.findall(r"\d+", q.text), (q.text, noisy)
        rates.append(rate)
        marks_kept += noisy.endswith(q.text[-1])
    assert 0.02 < sum(rates) / len(rates) < 0.2
    assert marks_kept / len(sample) > 0.95


def test_corrupt_edit_count():
    text = "When was the Beijing Olympic held?"
    one = [cer(corrupt(text, random.Random(s), edits=1), text) for s in range(200)]
    three = [cer(corrupt(text, random.Random(s), edits=3), text) for s in range(200)]
    assert sum(three) > 2 * sum(one)
    assert max(one) <= 2 / len(text)  # one edit: at most a swap (distance 2)
    with pytest.raises(ValueError):
        corrupt(text, random.Random(0), edits=0)


def test_corrupt_uses_varied_realistic_edits():
    text = "Which famous painter created the Mona Lisa in Florence?"
    outputs = [corrupt(text, random.Random(s), edits=1) for s in range(400)]
    assert any(any(ch in o for ch in "#@*~%") for o in outputs)  # stray symbols
    assert any(len(o.split()) == len(text.split()) + 1 for o in outputs)  # a word split in two
    assert any(len(o.split()) == len(text.split()) - 1 for o in outputs)  # two words merged
    assert any(len(o) == len(text) - 1 for o in outputs)  # a dropped letter
    assert any(len(o) == len(text) and sorted(o) == sorted(text) for o in outputs)  # swapped letters
    assert len(set(outputs)) > 150


def test_spelling_pairs(questions):
    sample = questions[::7]
    pairs = spelling_pairs(sample, seed=5, clean_fraction=0.2)
    assert len(pairs) == len(sample)
    assert [target for _, target in pairs] == [q.text for q in sample]
    clean = sum(source == target for source, target in pairs)
    assert clean == round(0.2 * len(sample))
    assert spelling_pairs(sample, seed=6) != pairs


def test_spelling_pairs_copies_and_strings(questions):
    texts = [q.text for q in questions[:100]]
    pairs = spelling_pairs(texts, seed=1, clean_fraction=0.0, copies=3)
    assert len(pairs) == 300
    assert all(source != target for source, target in pairs)
    assert len(set(pairs)) == 300  # the three copies of a question are corrupted differently
    assert all(s == t for s, t in spelling_pairs(texts, seed=1, clean_fraction=1.0))


def test_cer_known_values():
    assert cer("abc", "abc") == 0
    assert cer("abd", "abc") == pytest.approx(1 / 3)
    assert cer("", "abc") == 1
    assert cer("", "") == 0
    assert cer("abc", "") == 3
    assert cer("kitten", "sitting") == pytest.approx(3 / 7)
    assert cer("ab", "abc") == pytest.approx(1 / 3)
