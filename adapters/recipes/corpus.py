"""The demo adapters' training questions: loaded from hand-written data files, split by fact, paired with typos.

A corpus of short general-knowledge questions in eight topics, each with a short answer. Most questions
come from small fact tables, each asked with several phrasings; the rest are one-off questions. Every
question remembers the fact it asks about, so `split` can keep all phrasings of a fact on the same side.
The tables and questions are data files in `data/` beside this module (data/README.md describes them);
the typos come from `typos`. Standard library only, deterministic.

    python -m adapters.recipes.corpus      # counts per topic and split, and sample corruptions

API: TOPICS, Question, all_questions(), fact_key(), split(), spelling_pairs(); the loaders fact_tables(),
fact_table_rows(), one_off_questions().
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypedDict

from adapters.recipes.typos import cer, corrupt

TOPICS = ("sports", "science", "history", "geography", "technology", "arts", "health", "business")

DATA_DIR = Path(__file__).resolve().parent / "data"
FACT_TABLES_FILE = DATA_DIR / "fact_tables.jsonl"
FACT_TABLE_ROWS_DIR = DATA_DIR / "fact_tables"
ONE_OFF_QUESTIONS_FILE = DATA_DIR / "one_off_questions.jsonl"


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    topic: str


# ---------------------------------------------------------------------------------------------------------
# Loading the data files.
# ---------------------------------------------------------------------------------------------------------

class FactTable(TypedDict):
    """A line of fact_tables.jsonl. `templates` maps each question template to the column that answers it."""

    table: str
    topic: str
    fact_group: str
    templates: dict[str, str]


class OneOffQuestion(TypedDict):
    """A line of one_off_questions.jsonl: one fact, asked in each of its phrasings."""

    topic: str
    phrasings: list[str]
    answer: str


def _read_jsonl(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def fact_tables() -> list[FactTable]:
    """The fact tables, in file order."""
    tables: list[FactTable] = _read_jsonl(FACT_TABLES_FILE)
    for table in tables:
        if table["topic"] not in TOPICS:
            raise ValueError(f"{FACT_TABLES_FILE.name}: table {table['table']!r} has unknown topic {table['topic']!r}")
    return tables


def fact_table_rows(table: FactTable) -> list[dict[str, str]]:
    """The rows of a fact table's CSV file, each as {column: value}; the first column names the fact."""
    path = FACT_TABLE_ROWS_DIR / f"{table['table']}.csv"
    with path.open(encoding="utf-8", newline="") as file:
        header, *rows = list(csv.reader(file))
    missing = set(table["templates"].values()) - set(header)
    if missing:
        raise ValueError(f"{path.name}: no column {sorted(missing)} for the templates' answers")
    for number, row in enumerate(rows, 2):
        if len(row) != len(header) or not all(row):
            raise ValueError(f"{path.name}:{number}: expected {len(header)} non-empty fields, got {row}")
    return [dict(zip(header, row)) for row in rows]


def one_off_questions() -> list[OneOffQuestion]:
    """The one-off questions, in file order."""
    questions: list[OneOffQuestion] = _read_jsonl(ONE_OFF_QUESTIONS_FILE)
    for question in questions:
        if question["topic"] not in TOPICS or not question["phrasings"]:
            raise ValueError(f"{ONE_OFF_QUESTIONS_FILE.name}: bad one-off question {question}")
    return questions


# ---------------------------------------------------------------------------------------------------------
# Assembly. The fact of a table row is the table's fact group and the row's first column, so all phrasings
# of a row (and those of other tables in the same group) stay together; a one-off line is one fact.
# ---------------------------------------------------------------------------------------------------------

def _clean(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


@lru_cache(maxsize=1)
def _build() -> tuple[tuple[Question, ...], dict[str, str]]:
    questions: list[Question] = []
    facts: dict[str, str] = {}

    def add(text: str, answer: str, topic: str, fact: str) -> None:
        text = _clean(text)
        if text in facts:
            raise ValueError(f"duplicate question text: {text!r}")
        facts[text] = fact
        questions.append(Question(text=text, answer=" ".join(answer.split()), topic=topic))

    for table in fact_tables():
        for row in fact_table_rows(table):
            fact = f"{table['fact_group']}:{next(iter(row.values()))}"
            for template, answer_column in table["templates"].items():
                add(template.format(**row), row[answer_column], table["topic"], fact)
    for one_off in one_off_questions():
        phrasings = one_off["phrasings"]
        for phrasing in phrasings:
            add(phrasing, one_off["answer"], one_off["topic"], f"{one_off['topic']}:{_clean(phrasings[0])}")

    questions.sort(key=lambda q: (TOPICS.index(q.topic), q.text.lower(), q.text))
    return tuple(questions), facts


def all_questions() -> list[Question]:
    """Every question, sorted by topic (in TOPICS order) and then text; texts are unique."""
    return list(_build()[0])


def fact_key(question: Question) -> str:
    """The fact a question asks about; questions not from this corpus are each their own fact."""
    return _build()[1].get(question.text, f"external:{question.text}")


def split(questions: list[Question], heldout_fraction: float = 0.15,
          seed: int = 0) -> tuple[list[Question], list[Question]]:
    """(train, held_out): whole facts go to one side, about `heldout_fraction` of each topic is held out."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError("heldout_fraction must be in [0, 1)")
    sizes: dict[str, int] = defaultdict(int)
    facts_by_topic: dict[str, set[str]] = defaultdict(set)
    for question in questions:
        key = fact_key(question)
        sizes[key] += 1
        facts_by_topic[question.topic].add(key)
    rng = random.Random(seed)
    held: set[str] = set()
    for topic in sorted(facts_by_topic):
        keys = sorted(facts_by_topic[topic])
        rng.shuffle(keys)
        target = heldout_fraction * sum(sizes[key] for key in keys)
        taken = 0
        for key in (keys[:-1] if len(keys) > 1 else keys):  # never hold out every fact of a topic
            if taken >= target or heldout_fraction == 0.0:
                break
            held.add(key)
            taken += sizes[key]
    train = [q for q in questions if fact_key(q) not in held]
    heldout = [q for q in questions if fact_key(q) in held]
    return train, heldout


def spelling_pairs(questions: Iterable[Question | str], seed: int, clean_fraction: float = 0.2,
                   copies: int = 1) -> list[tuple[str, str]]:
    """(input, target) pairs for the spelling adapter: `copies` per question, differently corrupted.

    `questions` may hold Question objects or plain strings. round(clean_fraction * total) of the pairs,
    chosen at random, keep the clean question as input, so the model learns to leave it unchanged.
    """
    if not 0.0 <= clean_fraction <= 1.0:
        raise ValueError("clean_fraction must be in [0, 1]")
    rng = random.Random(seed)
    texts = [q.text if isinstance(q, Question) else str(q) for q in questions]
    slots = [text for text in texts for _ in range(copies)]
    clean = set(rng.sample(range(len(slots)), round(clean_fraction * len(slots))))
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for index, text in enumerate(slots):
        if index in clean:
            pairs.append((text, text))
            continue
        noisy = corrupt(text, rng)
        for _ in range(5):  # copies of one question should differ from each other
            if (noisy, text) not in seen:
                break
            noisy = corrupt(text, rng)
        seen.add((noisy, text))
        pairs.append((noisy, text))
    return pairs


def main() -> None:
    questions = all_questions()
    train, heldout = split(questions)
    print(f"{'topic':<12}{'train':>7}{'held':>6}{'total':>7}{'facts':>7}")
    for topic in TOPICS:
        n_train = sum(q.topic == topic for q in train)
        n_held = sum(q.topic == topic for q in heldout)
        n_facts = len({fact_key(q) for q in questions if q.topic == topic})
        print(f"{topic:<12}{n_train:>7}{n_held:>6}{n_train + n_held:>7}{n_facts:>7}")
    print(f"{'all':<12}{len(train):>7}{len(heldout):>6}{len(questions):>7}"
          f"{len({fact_key(q) for q in questions}):>7}")
    print("\nSample corruptions (seed 0):")
    rng = random.Random(0)
    for question in rng.sample(questions, 10):
        noisy = corrupt(question.text, rng)
        print(f"  {question.text}\n  -> {noisy}   (CER {cer(noisy, question.text):.2f})")


if __name__ == "__main__":
    main()
