"""Choosing the next token per row: greedy at temperature 0, else temperature / top-k / top-p sampling."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k cut
    seed: int | None = None  # set: the same request gives the same text, whatever else is in its batch
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


def make_generator(params: SamplingParams, device: torch.device) -> torch.Generator | None:
    if params.greedy:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(params.seed if params.seed is not None else random.getrandbits(63))
    return generator


def _filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    # Same order as transformers' logits processors: temperature, then top-k, then top-p.
    logits = logits / params.temperature
    if params.top_k > 0:
        kth = torch.topk(logits, min(params.top_k, logits.shape[-1])).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative - sorted_logits.softmax(-1) >= params.top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(torch.zeros_like(remove).scatter(0, order, remove), float("-inf"))
    return logits


def next_tokens(
    logits: torch.Tensor,  # [B, vocab] float32
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
) -> torch.Tensor:  # [B] long
    chosen = logits.argmax(dim=-1)
    for row, (row_params, generator) in enumerate(zip(params, generators)):
        if row_params.greedy:
            continue
        probs = _filter_logits(logits[row], row_params).softmax(-1)
        chosen[row] = torch.multinomial(probs, 1, generator=generator)[0]
    return chosen
