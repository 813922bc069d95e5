"""Recipe: the `topic` demo adapter (prompt tuning, initialised from text). Returns one lower-case label.

    python -m adapters.recipes.topic
"""

from __future__ import annotations

from peft import PromptTuningConfig, PromptTuningInit

from adapters.recipes.corpus import TOPICS, all_questions, split
from adapters.recipes.training import Recipe, base_model_and_tokenizer, train
from adapters.recipes.typos import corrupt

INIT_TEXT = (
    "Name the topic of this question: sports, science, history, geography, technology, arts, health or business."
)


def make_recipe(tokenizer_dir: str) -> Recipe:
    return Recipe(
        name="topic",
        peft_config=PromptTuningConfig(
            task_type="CAUSAL_LM",
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text=INIT_TEXT,
            num_virtual_tokens=24,
            tokenizer_name_or_path=tokenizer_dir,
        ),
        prompt_template="<|im_start|>user\nTopic of: {text}<|im_end|>\n<|im_start|>assistant\n",
        description=f"Names the question's topic, one of: {', '.join(TOPICS)} (prompt tuning, 24 virtual tokens).",
        learning_rate=1e-2,
        steps=350,
    )


def training_pairs() -> list[tuple[str, str]]:
    import random

    train_questions, _ = split(all_questions())
    rng = random.Random(2)
    pairs = [(q.text, q.topic) for q in train_questions]
    # Some misspelled inputs too, so the label survives a spelling step that missed a typo.
    pairs += [(corrupt(q.text, rng), q.topic) for q in rng.sample(train_questions, len(train_questions) // 4)]
    return pairs


if __name__ == "__main__":
    _, tokenizer = base_model_and_tokenizer()
    train(make_recipe(tokenizer.name_or_path), training_pairs())
