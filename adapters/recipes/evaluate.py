"""Held-out figures for the demo adapters, measured through the serving engine (greedy, as served).

    python -m adapters.recipes.evaluate     # writes adapters/demo/results.json and prints a table
"""

from __future__ import annotations

import json
import random
import re
import time

from adapters.recipes.corpus import TOPICS, all_questions, split
from adapters.recipes.training import DEMO_DIR, METADATA_FILE
from adapters.recipes.typos import cer, corrupt
from service.config import Settings
from service.engine import Engine, SamplingParams
from service.engine.base_model import load_base_model

BATCH = 16


def _generate(engine: Engine, adapter: str, texts: list[str], max_new_tokens: int) -> list[str]:
    template = json.loads((DEMO_DIR / adapter / METADATA_FILE).read_text())["prompt_template"]
    params = SamplingParams(max_new_tokens=max_new_tokens)
    outputs = []
    for start in range(0, len(texts), BATCH):
        chunk = [template.replace("{text}", t) for t in texts[start : start + BATCH]]
        outputs += [r.text.strip() for r in engine.generate(chunk, adapter, params)]
    return outputs


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def evaluate() -> dict:
    engine = Engine(load_base_model(Settings(device="cpu")))
    for name in ("spelling", "topic", "qa"):
        engine.load(name, DEMO_DIR / name)
    _, heldout = split(all_questions())
    rng = random.Random(1234)
    clean = [q.text for q in heldout]
    noisy = [corrupt(text, rng) for text in clean]
    started = time.time()

    corrected = _generate(engine, "spelling", noisy, 48)
    unchanged = _generate(engine, "spelling", clean, 48)
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    spelling = {
        "heldout_questions": len(clean),
        "cer_noisy_input": mean([cer(n, c) for n, c in zip(noisy, clean)]),
        "cer_after_correction": mean([cer(o, c) for o, c in zip(corrected, clean)]),
        "cer_on_clean_input": mean([cer(o, c) for o, c in zip(unchanged, clean)]),
        "exact_after_correction": mean([o == c for o, c in zip(corrected, clean)]),
    }

    labels = _generate(engine, "topic", clean, 4)
    topic = {
        "heldout_questions": len(clean),
        "accuracy": mean([label == q.topic for label, q in zip(labels, heldout)]),
        "accuracy_on_misspelled_input": mean(
            [label == q.topic for label, q in zip(_generate(engine, "topic", noisy, 4), heldout)]
        ),
        "outputs_outside_labels": sum(label not in TOPICS for label in labels),
    }

    answers = _generate(engine, "qa", clean, 16)
    qa = {
        "heldout_questions": len(clean),
        "exact_match": mean([_normalise(a) == _normalise(q.answer) for a, q in zip(answers, heldout)]),
        "answer_contained": mean([_normalise(q.answer) in _normalise(a) for a, q in zip(answers, heldout)]),
        "mean_words": mean([len(a.split()) for a in answers]),
        "examples": [
            {"question": q.text, "expected": q.answer, "answer": a} for q, a in list(zip(heldout, answers))[:8]
        ],
    }
    return {"spelling": spelling, "topic": topic, "qa": qa, "seconds": round(time.time() - started, 1)}


if __name__ == "__main__":
    results = evaluate()
    (DEMO_DIR / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: {m: v for m, v in r.items() if m != "examples"} if isinstance(r, dict) else r
                for k, r in results.items()
            },
            indent=2,
        )
    )
