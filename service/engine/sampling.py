"""Choosing the next token per row: greedy at temperature 0, else temperature / top-k / top-p sampling.

One row's choice depends only on its own logits, parameters and generator, and one row's failure is that
row's alone: a row whose logits are not finite is reported, never sampled, and an error while sampling one
row leaves the other rows' tokens as they would be without it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from service.errors import NonFiniteLogits, RowFailed

# A smaller temperature is greedy, as in vLLM: dividing logits by it would overflow.
GREEDY_BELOW = 1e-5
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes 64 bits; keep to the signed range clients agree on
MAX_TOP_LOGPROBS = 20  # the most alternatives a client may ask for per token (OpenAI's limit)


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k cut
    seed: int | None = None  # set: the same request gives the same text, whatever else is in its batch
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None: none; k >= 0: each chosen token's log-probability and the k likeliest

    def __post_init__(self) -> None:
        # The API validates these first (422 naming the field); this guards every other caller.
        if not self.max_new_tokens >= 1:
            raise ValueError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        if not 0.0 <= self.temperature < float("inf"):
            raise ValueError(f"temperature must be finite and at least 0, not {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be at least 0, not {self.top_k}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}], not {self.seed}")
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError(f"logprobs must be at least 0, not {self.logprobs}")

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW


@dataclass(frozen=True)
class TokenLogprob:
    """A chosen token's log-probability under the model (before temperature, top-k and top-p), and the
    `k` likeliest tokens at that step with theirs, likeliest first."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


def make_generator(params: SamplingParams, device: torch.device) -> torch.Generator | None:
    if params.greedy:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(params.seed if params.seed is not None else random.getrandbits(63))
    return generator


def _filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    # Same order as transformers' logits processors: temperature, then top-k, then top-p. The maximum is
    # subtracted first, so every value is <= 0 and no temperature can overflow one to +inf.
    logits = (logits - logits.max()) / params.temperature
    if params.top_k > 0:
        kth = torch.topk(logits, min(params.top_k, logits.shape[-1])).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        remove = probs.cumsum(-1) - probs >= params.top_p  # keep the smallest set reaching top_p
        remove[0] = False  # and always the likeliest token, however small top_p is (HF's min_tokens_to_keep)
        logits = logits.masked_fill(torch.zeros_like(remove).scatter(0, order, remove), float("-inf"))
    return logits


@dataclass
class Choices:
    tokens: list[int | None]  # per row: the chosen token, or None where the row failed
    failures: dict[int, RowFailed]  # row index -> why it failed
    logprobs: dict[int, TokenLogprob]  # row index -> its logprobs, for rows that asked


def choose_tokens(
    logits: torch.Tensor,  # [B, vocab] float32
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
) -> Choices:
    finite = torch.isfinite(logits).all(dim=-1)
    greedy = logits.argmax(dim=-1)
    tokens: list[int | None] = greedy.tolist()
    failures: dict[int, RowFailed] = {}
    for row, ok in enumerate(finite.tolist()):
        if not ok:
            tokens[row] = None
            failures[row] = NonFiniteLogits("the model's output for this request was not finite (inf or NaN)")
    for row, (row_params, generator) in enumerate(zip(params, generators)):
        if row_params.greedy or row in failures:
            continue
        try:
            probs = _filter_logits(logits[row], row_params).softmax(-1)
            tokens[row] = int(torch.multinomial(probs, 1, generator=generator)[0])
        except Exception as exc:  # this row's failure only
            tokens[row] = None
            failures[row] = RowFailed(f"sampling failed for this request: {type(exc).__name__}: {exc}")
    logprobs = {}
    wanted = [row for row, p in enumerate(params) if p.logprobs is not None and tokens[row] is not None]
    if wanted:
        log_probs = logits[wanted].log_softmax(-1)
        for i, row in enumerate(wanted):
            token, k = tokens[row], min(params[row].logprobs or 0, logits.shape[-1])
            top = torch.topk(log_probs[i], k) if k else None
            logprobs[row] = TokenLogprob(
                token=token,  # type: ignore[arg-type]
                logprob=float(log_probs[i, token]),
                top=tuple(zip(top.indices.tolist(), top.values.tolist())) if top is not None else (),
            )
    return Choices(tokens=tokens, failures=failures, logprobs=logprobs)
