"""Recipe: the `spelling` demo adapter (LoRA). Returns the corrected question and nothing else.

    python -m adapters.recipes.spelling
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from pathlib import Path

from peft import LoraConfig

from adapters.recipes.corpus import all_questions, spelling_pairs, split
from adapters.recipes.training import Recipe, train
from adapters.recipes.typos import corrupt

RECIPE = Recipe(
    name="spelling",
    peft_config=LoraConfig(
        task_type="CAUSAL_LM",
        r=16,
        lora_alpha=32,
        lora_dropout=0.05,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    ),
    prompt_template="<|im_start|>user\nFix the spelling: {text}<|im_end|>\n<|im_start|>assistant\n",
    description="Corrects typos in a question and returns only the corrected question (LoRA r=16).",
    learning_rate=6e-4,
    steps=1600,
    warmup_steps=50,
)


# Stage 2 continues stage 1 on a mix that also holds questions with made-up names: the adapter learns to
# copy a word it does not know instead of swapping in a real word it does (the costliest error of stage 1).
STAGE_2 = dataclasses.replace(RECIPE, learning_rate=2e-4, steps=400, warmup_steps=20, seed=1)
SYLLABLES = ("ka", "lo", "ven", "dra", "mi", "sor", "tel", "qua", "ri", "zan", "bel", "gor", "thi", "nu", "pex", "os")


def training_pairs() -> list[tuple[str, str]]:
    train_questions, _ = split(all_questions())
    return spelling_pairs(train_questions, seed=1, clean_fraction=0.2, copies=3)


def made_up_name_pairs(seed: int, count: int) -> list[tuple[str, str]]:
    """Training questions with one name replaced by a made-up one that the typos never touch."""
    rng = random.Random(seed)
    train_questions, _ = split(all_questions())
    pairs = []
    for question in rng.sample(train_questions, count):
        words = question.text.split(" ")
        spots = [i for i, w in enumerate(words) if i > 0 and w[:1].isupper() and w.rstrip("?.,").isalpha()]
        if not spots:
            continue
        spot = rng.choice(spots)
        name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
        words[spot] = name + words[spot][len(words[spot].rstrip("?.,")) :]
        clean = " ".join(words)
        noisy = next((n for n in (corrupt(clean, rng) for _ in range(5)) if name in n), None)
        if noisy is not None:  # a typo inside the made-up name could not be undone by anyone: skip those
            pairs.append((noisy, clean))
    return pairs


def stage_2_pairs() -> list[tuple[str, str]]:
    rng = random.Random(2)
    return rng.sample(training_pairs(), 3000) + made_up_name_pairs(seed=3, count=3000)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as stage_1_dir:
        train(RECIPE, training_pairs(), out_dir=Path(stage_1_dir))
        train(STAGE_2, stage_2_pairs(), start_from=Path(stage_1_dir))
