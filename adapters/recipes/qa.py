"""Recipe: the `qa` demo adapter (prefix tuning). A short answer of a few words, no chatter.

    python -m adapters.recipes.qa
"""

from __future__ import annotations

from peft import PrefixTuningConfig

from adapters.recipes.corpus import all_questions, split
from adapters.recipes.training import Recipe, train

RECIPE = Recipe(
    name="qa",
    # With prefix_projection (P-tuning v2) an MLP re-parameterises the prefix while training, which trains
    # more stably than raw key/value vectors; PEFT saves the MLP's output, so serving pays nothing for it.
    peft_config=PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=16, prefix_projection=True, encoder_hidden_size=256
    ),
    prompt_template="<|im_start|>user\nAnswer in a few words: {text}<|im_end|>\n<|im_start|>assistant\n",
    description=(
        "Answers a general-knowledge question in a few words (prefix tuning with projection, 16 virtual tokens)."
    ),
    learning_rate=3e-3,
    steps=400,
)


def training_pairs() -> list[tuple[str, str]]:
    train_questions, _ = split(all_questions())
    return [(q.text, q.answer) for q in train_questions]


if __name__ == "__main__":
    train(RECIPE, training_pairs())
