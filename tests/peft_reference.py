"""PEFT as the oracle: greedy generation with `PeftModel.generate`, cut at end-of-sequence."""

from __future__ import annotations

import copy
import math
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


def bf16_ulp(value: float) -> float:
    """The spacing of bfloat16 numbers around `value` (8 significant bits)."""
    return 2.0 ** (math.floor(math.log2(max(abs(value), 1e-30))) - 7)


@torch.inference_mode()
def assert_equal_up_to_a_near_tie(peft_model, tokenizer, text: str, ours: list[int], expected: list[int],
                                  eos_token_id: int, ulps: int = 2) -> None:
    """`ours` equals PEFT's greedy `expected`, or parts from it only where PEFT's own logits for the two
    tokens are within `ulps` bfloat16 steps of each other: a near tie, which rounding differences (padding,
    kernel blocking) can tip either way. After that point the two continue from different text, so the
    comparison ends there."""
    step = next((i for i, (a, b) in enumerate(zip(ours, expected)) if a != b), min(len(ours), len(expected)))
    if ours == expected:
        return
    theirs_next = expected[step] if step < len(expected) else eos_token_id
    our_next = ours[step] if step < len(ours) else eos_token_id
    ids = torch.tensor([tokenizer(text)["input_ids"] + expected[:step]], device=next(peft_model.parameters()).device)
    logits = peft_model(input_ids=ids).logits[0, -1].float()
    margin = float(logits[theirs_next] - logits[our_next])
    assert 0 <= margin <= ulps * bf16_ulp(float(logits[theirs_next])), (
        f"{text!r}: token {step} is {our_next}, PEFT's is {theirs_next}, and PEFT's logits differ by {margin:.4f}, "
        "more than a bfloat16 near tie"
    )
