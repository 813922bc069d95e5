"""PEFT as the oracle: greedy generation with `PeftModel.generate`, cut at end-of-sequence."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from peft import PeftModel


def load_peft(base_model, adapter_dir: Path) -> PeftModel:
    return PeftModel.from_pretrained(copy.deepcopy(base_model), str(adapter_dir)).eval()


@torch.inference_mode()
def greedy_tokens(model, tokenizer, texts: list[str], max_new_tokens: int, eos_token_id: int) -> list[list[int]]:
    """One left-padded batch through `generate`; each row's new tokens up to (not including) end-of-sequence."""
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        encoded = tokenizer(texts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = previous_side
    encoded = {key: value.to(next(model.parameters()).device) for key, value in encoded.items()}
    output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False)
    rows = []
    for row in output[:, encoded["input_ids"].shape[1] :].tolist():
        rows.append(row[: row.index(eos_token_id)] if eos_token_id in row else row)
    return rows
