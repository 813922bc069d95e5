"""Recipe: the `spelling` demo adapter (LoRA). Returns the corrected question and nothing else.

    python -m adapters.recipes.spelling
"""

from __future__ import annotations

from peft import LoraConfig

from adapters.recipes.corpus import all_questions, spelling_pairs, split
from adapters.recipes.training import Recipe, train

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


def training_pairs() -> list[tuple[str, str]]:
    train_questions, _ = split(all_questions())
    return spelling_pairs(train_questions, seed=1, clean_fraction=0.2, copies=3)


if __name__ == "__main__":
    train(RECIPE, training_pairs())
