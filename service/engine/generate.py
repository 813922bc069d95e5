"""The decode loop: the only place that steps the model."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from service.engine.base_model import BaseModel
from service.engine.batch import LinearPlan, RowRequest, build_prefill
from service.engine.runtime import LinearDeltaRuntime
from service.engine.sampling import make_generator, next_tokens


@dataclass
class GenerationResult:
    text: str
    finish_reason: str  # "stop" (end-of-sequence token or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int] = field(default_factory=list)  # the completion's tokens, without end-of-sequence


class _RowState:
    """Per-row bookkeeping while a batch decodes."""

    def __init__(self, row: RowRequest, base: BaseModel):
        self.row = row
        self.base = base
        self.tokens: list[int] = []
        self.text = ""
        self.finish_reason: str | None = None

    def add(self, token: int) -> None:
        params = self.row.params
        if token in self.base.eos_token_ids:
            self.finish_reason = "stop"
            return
        self.tokens.append(token)
        if params.stop:
            self.text = self.base.tokenizer.decode(self.tokens, skip_special_tokens=True)
            cut = min((i for i in (self.text.find(s) for s in params.stop) if i >= 0), default=-1)
            if cut >= 0:
                self.text = self.text[:cut]
                self.finish_reason = "stop"
                return
        if len(self.tokens) >= params.max_new_tokens:
            self.finish_reason = "length"

    def result(self) -> GenerationResult:
        text = self.text
        if self.finish_reason != "stop" or not self.row.params.stop:
            text = self.base.tokenizer.decode(self.tokens, skip_special_tokens=True)
        return GenerationResult(
            text=text,
            finish_reason=self.finish_reason or "length",
            prompt_tokens=len(self.row.prompt_ids),
            completion_tokens=len(self.tokens),
            token_ids=list(self.tokens),
        )


def _new_cache(base: BaseModel, kv_prefix) -> DynamicCache:
    cache = DynamicCache(config=base.model.config)
    if kv_prefix is not None:
        for layer, (keys, values) in enumerate(kv_prefix):
            cache.update(keys, values, layer)
    return cache


@torch.inference_mode()
def generate_batch(base: BaseModel, runtime: LinearDeltaRuntime, rows: list[RowRequest]) -> list[GenerationResult]:
    """Run one batch to completion. Rows may use different deltas (or none); each row's tokens equal what it
    would get alone."""
    prefill = build_prefill(rows, base)
    states = [_RowState(row, base) for row in rows]
    params = [row.params for row in rows]
    generators = [make_generator(p, base.device) for p in params]
    cache = _new_cache(base, prefill.kv_prefix)
    mask = prefill.attention_mask
    positions = prefill.position_ids[:, -1:]

    with runtime.active(LinearPlan.from_groups(prefill.groups)):
        out = base.model(
            inputs_embeds=prefill.inputs_embeds,
            attention_mask=mask,
            position_ids=prefill.position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        while True:
            chosen = next_tokens(out.logits[:, -1, :].float(), params, generators)
            for state, token in zip(states, chosen.tolist()):
                if state.finish_reason is None:
                    state.add(token)
            if all(state.finish_reason is not None for state in states):
                break
            # Finished rows keep stepping on a pad token; their output is ignored.
            done = torch.tensor([s.finish_reason is not None for s in states], device=base.device)
            next_ids = chosen.masked_fill(done, base.pad_token_id).unsqueeze(-1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            positions = positions + 1
            out = base.model(
                input_ids=next_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
    return [state.result() for state in states]
