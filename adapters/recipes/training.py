"""The training loop every demo recipe shares: seeded, prints progress and loss, saves with save_pretrained.

Examples are (input text, target) pairs. The prompt is the recipe's `prompt_template` with the text in
place of `{text}`, tokenized on its own exactly as the server tokenizes it; the loss covers only the target
and the end-of-sequence token, so the adapter learns to answer and stop.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

from service.config import Settings
from service.engine.base_model import prepare_base_model
from service.peft_format import (
    METADATA_FILE,  # prompt_template and description, read when the service installs the demo
)

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"


@dataclass
class Recipe:
    name: str  # the adapter's name in the store, and its folder under adapters/demo/
    peft_config: PeftConfig
    prompt_template: str  # exactly one {text}
    description: str
    learning_rate: float
    steps: int
    batch_size: int = 8
    warmup_steps: int = 20
    seed: int = 0


def base_model_and_tokenizer():
    source = prepare_base_model(Settings(base_model=None))
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    return model, tokenizer


def encode(tokenizer, prompt: str, target: str) -> tuple[list[int], list[int]]:
    prompt_ids = tokenizer(prompt)["input_ids"]
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids


def _batch(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    # Right padding: real tokens keep positions 0.., as they have when the prompt is served alone.
    ids = torch.tensor([i + [pad_id] * (width - len(i)) for i, _ in examples])
    labels = torch.tensor([target + [-100] * (width - len(target)) for _, target in examples])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in examples])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def train(recipe: Recipe, pairs: list[tuple[str, str]], out_dir: Path | None = None,
          start_from: Path | None = None) -> Path:
    """Train `recipe` on (text, target) pairs; `start_from` continues from a saved adapter of the same kind."""
    out_dir = Path(out_dir or DEMO_DIR / recipe.name)
    random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    base, tokenizer = base_model_and_tokenizer()
    if start_from is None:
        model = get_peft_model(base, recipe.peft_config)
    else:
        model = PeftModel.from_pretrained(base, str(start_from), is_trainable=True)
    model.print_trainable_parameters()
    examples = [encode(tokenizer, recipe.prompt_template.replace("{text}", text), target) for text, target in pairs]
    print(f"{recipe.name}: {len(examples)} examples, {recipe.steps} steps of {recipe.batch_size}", flush=True)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=recipe.learning_rate, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, recipe.warmup_steps, recipe.steps)
    rng = random.Random(recipe.seed)
    order: list[int] = []
    model.train()
    started, running = time.time(), []
    for step in range(1, recipe.steps + 1):
        if len(order) < recipe.batch_size:
            order += rng.sample(range(len(examples)), len(examples))  # epochs of shuffled examples
        batch = _batch([examples[order.pop()] for _ in range(recipe.batch_size)], tokenizer.pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        running.append(loss.item())
        if step % 10 == 0 or step == recipe.steps:
            elapsed = time.time() - started
            eta = elapsed / step * (recipe.steps - step)
            print(f"{recipe.name} step {step}/{recipe.steps} loss {sum(running) / len(running):.4f} "
                  f"({elapsed:.0f} s, about {math.ceil(eta / 60)} min left)", flush=True)
            running = []

    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    # The base model's local cache path is meaningless elsewhere; name the model instead.
    config_path = out_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    if config.get("tokenizer_name_or_path"):
        config["tokenizer_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out_dir / "README.md").unlink(missing_ok=True)
    metadata = {"prompt_template": recipe.prompt_template, "description": recipe.description,
                "recipe": f"python -m adapters.recipes.{recipe.name}"}
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"{recipe.name}: saved to {out_dir}", flush=True)
    return out_dir
