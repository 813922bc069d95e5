"""PEFT as the oracle: greedy `PeftModel.generate`, its tokens and the log-probabilities of every step, and the
comparison of the engine's results with them.

Comparing log-probabilities as well as tokens is what makes the tests sensitive: a small error in a delta
rarely changes a greedy token, but it moves every step's log-probabilities far beyond rounding.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from service.engine import GenerationResult, SamplingParams

# How far the engine's log-probabilities may be from PEFT's at one step, for any token of the vocabulary. These
# two numbers are the only tolerances of the equality tests.
#
# float32: the engine runs PEFT's operations on the same weights, so the two part only where a kernel rounds
# differently: the static path attends over a padded width, a row of a batch is padded, a matrix-vector
# kernel takes another path for weights at another memory alignment. Measured on CPU: at most 1.5e-5, some
# tens of float32 steps of the tiny model's logits (the largest of a step is 3.5-7). 1e-4 leaves room for other
# CPUs and BLAS builds, and is a hundredth of what the smallest mutation of tests/mutation_check.py moves them
# (1.3e-2: P-tuning embeddings x1.01).
FLOAT32_TOLERANCE = 1e-4
# bfloat16 keeps 8 significant bits, so a logit of size 4-8 is rounded to steps of 1/32, and a difference in
# rounding anywhere before it (a padded batch row, the static path's attention width) moves it by a step or
# so. The tolerance is counted in those steps, at the size of the step's largest logit. Measured: within
# 3.1 (the eager path alone: mostly bit for bit), so 6. Small mutations hide below it; float32 catches them.
BFLOAT16_STEPS = 6


def bf16_ulp(value: float) -> float:
    """The spacing of bfloat16 numbers around `value` (8 significant bits)."""
    return 2.0 ** (math.floor(math.log2(max(abs(value), 1e-30))) - 7)


def logprob_tolerance(dtype: torch.dtype, peft_logits: torch.Tensor) -> torch.Tensor:
    """Per step [steps]: how far the engine's log-probabilities may be from those of `peft_logits` [steps, vocab]."""
    if dtype == torch.float32:
        return torch.full((peft_logits.shape[0],), FLOAT32_TOLERANCE)
    if dtype == torch.bfloat16:
        largest = peft_logits.abs().amax(-1).tolist()
        return torch.tensor([BFLOAT16_STEPS * bf16_ulp(value) for value in largest])
    raise ValueError(f"no tolerance stated for {dtype}")


@dataclass(frozen=True)
class PeftRun:
    """One row of greedy `generate`: its new tokens before end-of-sequence, and the raw logits (before any
    logits processor) of every step it took, the one that chose end-of-sequence included."""

    tokens: list[int]
    logits: torch.Tensor  # [steps, vocab] float32

    @property
    def logprobs(self) -> torch.Tensor:
        return self.logits.log_softmax(-1)

    def first(self, max_new_tokens: int) -> PeftRun:
        """What a run with this smaller budget gives: greedy steps do not depend on the budget."""
        return PeftRun(tokens=self.tokens[:max_new_tokens], logits=self.logits[:max_new_tokens])


def load_peft(base_model: PreTrainedModel, adapter_dir: Path) -> PeftModel:
    return PeftModel.from_pretrained(copy.deepcopy(base_model), str(adapter_dir)).eval()


@torch.inference_mode()
def generate_runs(model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase, texts: list[str],
                  max_new_tokens: int, eos_token_id: int, **generate_options: object) -> list[PeftRun]:
    """One left-padded batch through `generate` (PEFT's mixed batches: `adapter_names=[...]`)."""
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        encoded = tokenizer(texts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = previous_side
    encoded = {key: value.to(next(model.parameters()).device) for key, value in encoded.items()}
    output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, output_logits=True,
                            return_dict_in_generate=True, **generate_options)
    logits = torch.stack(output.logits, dim=1).float().cpu()  # [rows, steps, vocab]
    runs = []
    for row, new_tokens in enumerate(output.sequences[:, encoded["input_ids"].shape[1] :].tolist()):
        end = new_tokens.index(eos_token_id) if eos_token_id in new_tokens else len(new_tokens)
        runs.append(PeftRun(tokens=new_tokens[:end], logits=logits[row, : end + 1]))
    return runs


def greedy_tokens(model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase, texts: list[str],
                  max_new_tokens: int, eos_token_id: int) -> list[list[int]]:
    """One left-padded batch through `generate`; each row's new tokens up to (not including) end-of-sequence."""
    return [run.tokens for run in generate_runs(model, tokenizer, texts, max_new_tokens, eos_token_id)]


def logprob_params(max_new_tokens: int, vocab_size: int) -> SamplingParams:
    """Greedy, with the log-probability of every token of the vocabulary at every step."""
    return SamplingParams(max_new_tokens=max_new_tokens, logprobs=vocab_size)


def engine_logprobs(result: GenerationResult, vocab_size: int) -> torch.Tensor:
    """[steps, vocab] from a result generated with SamplingParams(logprobs=vocab_size). The engine reports no
    entry for a step that chose end-of-sequence, so there is one step per returned token."""
    assert result.logprobs is not None, "generate with SamplingParams(logprobs=vocab size)"
    assert len(result.logprobs) == len(result.token_ids)
    table = torch.full((len(result.logprobs), vocab_size), float("nan"))
    for step, (entry, token) in enumerate(zip(result.logprobs, result.token_ids)):
        assert entry.token == token and len(entry.top) == vocab_size
        ids, values = zip(*entry.top)
        table[step, list(ids)] = torch.tensor(values)
        assert table[step, token] == entry.logprob
    return table


def first_difference(ours: list[int], theirs: list[int]) -> int | None:
    """The first step where two token lists part (one ending counts), or None when they are equal."""
    if ours == theirs:
        return None
    return next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))


def assert_matches_peft(result: GenerationResult, expected: PeftRun, dtype: torch.dtype, label: str, *,
                        eos_token_id: int, near_tie_steps: int = 0) -> None:
    """The engine's tokens are PEFT's, and at every step its log-probabilities of the whole vocabulary are
    within the dtype's tolerance of PEFT's.

    `near_tie_steps` > 0 (bfloat16 on the static path) lets the tokens part where PEFT's own logits for the
    two tokens are within that many bfloat16 steps of each other: a near tie, which rounding (padding, kernel
    blocking) can tip either way. Log-probabilities are then compared up to that step, the last one the two
    computed from the same text."""
    ours, theirs = result.token_ids, expected.tokens
    parted = first_difference(ours, theirs)
    if parted is not None:
        message = f"{label}: tokens part at step {parted}: engine {ours}, PEFT {theirs}"
        assert near_tie_steps, message
        their_next = theirs[parted] if parted < len(theirs) else eos_token_id
        our_next = ours[parted] if parted < len(ours) else eos_token_id
        logits = expected.logits[parted]
        margin = float(logits[their_next] - logits[our_next])
        assert 0 <= margin <= near_tie_steps * bf16_ulp(float(logits[their_next])), (
            f"{message}; PEFT's logits for the two differ by {margin:.4f}, more than a bfloat16 near tie"
        )
    steps = len(ours) if parted is None else min(len(ours), parted + 1)
    if not steps:
        return
    difference = (engine_logprobs(result, expected.logits.shape[-1])[:steps] - expected.logprobs[:steps]).abs()
    worst = difference.amax(-1)  # [steps]
    tolerance = logprob_tolerance(dtype, expected.logits[:steps])
    bad = (worst > tolerance) | worst.isnan()
    if bool(bad.any()):
        step = int(bad.float().argmax())
        token = int(difference[step].argmax())
        raise AssertionError(
            f"{label}: log-probabilities differ from PEFT's at step {step} by {float(worst[step]):.3g} (token "
            f"{token}), more than the {dtype} tolerance {float(tolerance[step]):.3g}; worst per step: "
            + ", ".join(f"{value:.1e}" for value in worst.tolist())
        )


@torch.inference_mode()
def assert_equal_up_to_a_near_tie(peft_model: PeftModel, tokenizer: PreTrainedTokenizerBase, text: str,
                                  ours: list[int], expected: list[int], eos_token_id: int, ulps: int = 2) -> None:
    """Tokens only (the tests on the real model): `ours` equals PEFT's greedy `expected`, or parts from it only
    where PEFT's own logits for the two tokens are within `ulps` bfloat16 steps of each other."""
    step = first_difference(ours, expected)
    if step is None:
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


class PeftOracle:
    """PEFT's greedy run of one prompt alone, per (adapter, dtype, text), computed once for the session and cut
    to the budget a test asks for (greedy steps do not depend on the budget)."""

    def __init__(self, base_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, adapter_dirs: dict[str, Path],
                 eos_token_id: int):
        self.tokenizer, self.adapter_dirs, self.eos_token_id = tokenizer, adapter_dirs, eos_token_id
        self._bases: dict[torch.dtype, PreTrainedModel] = {torch.float32: base_model}
        self._models: dict[tuple[str | None, torch.dtype], PreTrainedModel | PeftModel] = {}
        self._runs: dict[tuple[str | None, torch.dtype, str], tuple[int, PeftRun]] = {}

    def base(self, dtype: torch.dtype) -> PreTrainedModel:
        if dtype not in self._bases:
            self._bases[dtype] = copy.deepcopy(self._bases[torch.float32]).to(dtype)
        return self._bases[dtype]

    def model(self, adapter: str | None, dtype: torch.dtype = torch.float32) -> PreTrainedModel | PeftModel:
        """PEFT with test adapter `adapter` loaded (None: the plain transformers model)."""
        key = (adapter, dtype)
        if key not in self._models:
            base = self.base(dtype)
            self._models[key] = base if adapter is None else load_peft(base, self.adapter_dirs[adapter])
        return self._models[key]

    def alone(self, adapter: str | None, text: str, max_new_tokens: int, dtype: torch.dtype = torch.float32) -> PeftRun:
        key = (adapter, dtype, text)
        budget, run = self._runs.get(key, (0, None))
        if run is None or budget < max_new_tokens:
            model = self.model(adapter, dtype)
            run = generate_runs(model, self.tokenizer, [text], max_new_tokens, self.eos_token_id)[0]
            budget = max_new_tokens
            self._runs[key] = (budget, run)
        return run.first(max_new_tokens)
