"""Typos for the demo adapters' data, and the character error rate (pure Python, fast)."""

from __future__ import annotations

import random
import re

import pytest

from adapters.recipes.corpus import Question, all_questions
from adapters.recipes.typos import cer, corrupt


@pytest.fixture(scope="module")
def questions() -> list[Question]:
    return all_questions()


def test_corrupt_changes_text_reproducibly(questions: list[Question]) -> None:
    rng = random.Random(0)
    noisy = [corrupt(q.text, rng) for q in questions]
    assert all(n != q.text for n, q in zip(noisy, questions))
    again = random.Random(0)
    assert noisy == [corrupt(q.text, again) for q in questions]


def test_corrupt_is_moderate_and_keeps_numbers(questions: list[Question]) -> None:
    rng = random.Random(1)
    rates: list[float] = []
    marks_kept = 0
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


def test_corrupt_edit_count() -> None:
    text = "When was the Beijing Olympic held?"
    one = [cer(corrupt(text, random.Random(s), edits=1), text) for s in range(200)]
    three = [cer(corrupt(text, random.Random(s), edits=3), text) for s in range(200)]
    assert sum(three) > 2 * sum(one)
    assert max(one) <= 2 / len(text)  # one edit: at most a swap (distance 2)
    with pytest.raises(ValueError):
        corrupt(text, random.Random(0), edits=0)


def test_corrupt_uses_varied_realistic_edits() -> None:
    text = "Which famous painter created the Mona Lisa in Florence?"
    outputs = [corrupt(text, random.Random(s), edits=1) for s in range(400)]
    assert any(any(ch in o for ch in "#@*~%") for o in outputs)  # stray symbols
    assert any(len(o.split()) == len(text.split()) + 1 for o in outputs)  # a word split in two
    assert any(len(o.split()) == len(text.split()) - 1 for o in outputs)  # two words merged
    assert any(len(o) == len(text) - 1 for o in outputs)  # a dropped letter
    assert any(len(o) == len(text) and sorted(o) == sorted(text) for o in outputs)  # swapped letters
    assert len(set(outputs)) > 150


def test_cer_known_values() -> None:
    assert cer("abc", "abc") == 0
    assert cer("abd", "abc") == pytest.approx(1 / 3)
    assert cer("", "abc") == 1
    assert cer("", "") == 0
    assert cer("abc", "") == 3
    assert cer("kitten", "sitting") == pytest.approx(3 / 7)
    assert cer("ab", "abc") == pytest.approx(1 / 3)
