"""One row's progress through the decode loop: its tokens, their text, stop strings, log-probabilities, and
why it finished; and what the caller gets back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from service.engine.base_model import FrozenBase
from service.engine.batch import RowRequest
from service.engine.detokenize import IncrementalText, find_stop
from service.engine.sampling import TokenLogprob, make_generator
from service.errors import DeltaServeError, RowFailed


@dataclass
class GenerationResult:
    text: str
    # "stop" (end-of-sequence token or a stop string), "length", "timeout" (the request's deadline passed),
    # "cancelled" (its caller went away) or "error" (see `error`)
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int] = field(default_factory=list)  # the completion's tokens, without end-of-sequence
    logprobs: list[TokenLogprob] | None = None  # per token, when the request asked for them
    error: DeltaServeError | None = None  # why this row failed (finish_reason "error"); other rows went on


@dataclass
class StreamDelta:
    """New output of one row since the last delta: text, the tokens behind it, their logprobs if asked."""

    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None


def _stop_prefix_length(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that begins some stop string: held back while it may complete one."""
    for length in range(min(len(text), max(map(len, stops), default=1) - 1), 0, -1):
        tail = text[-length:]
        if any(stop.startswith(tail) for stop in stops):
            return length
    return 0


class RowState:
    """One row's progress: its request, tokens so far, sampling generator, and why it finished."""

    def __init__(self, row: RowRequest, base: FrozenBase, ticket: Any = None):
        self.row = row
        self.base = base
        self.ticket = ticket  # the caller's handle for this row (the batcher's future)
        self.detokenizer = IncrementalText(base.tokenizer)
        self.stop_at: int | None = None  # where a stop string cut the text
        self.logprobs: list[TokenLogprob] | None = [] if row.params.logprobs is not None else None
        self.finish_reason: str | None = None
        self.error: DeltaServeError | None = None
        self.emitted_chars = 0  # text already handed to a streaming caller
        self.emitted_tokens = 0  # tokens (and their logprobs) already handed to it
        self.generator: torch.Generator | None = None
        try:
            self.generator = make_generator(row.params, base.device)
        except Exception as exc:
            self.fail(RowFailed(f"could not seed this request's sampling: {exc}"))

    @property
    def tokens(self) -> list[int]:
        return self.detokenizer.tokens

    def fail(self, error: DeltaServeError) -> None:
        self.error, self.finish_reason = error, "error"

    def add(self, token: int, logprob: TokenLogprob | None = None) -> None:
        params = self.row.params
        if token in self.base.eos_token_ids:
            self.finish_reason = "stop"
            return
        piece = self.detokenizer.add(token)
        if self.logprobs is not None and logprob is not None:
            self.logprobs.append(logprob)
        cut = find_stop(self.detokenizer.text, piece, params.stop)
        if cut >= 0:
            self.stop_at, self.finish_reason = cut, "stop"
        elif len(self.tokens) >= params.max_new_tokens:
            self.finish_reason = "length"

    def take_delta(self) -> StreamDelta | None:
        """What a streaming caller may be given now that it has not been given yet: complete characters only,
        never text that could still turn out to start a stop string, and once the row has finished, the rest
        of its final text. None when there is nothing new."""
        tokens = self.tokens[self.emitted_tokens :]
        logprobs = None if self.logprobs is None else self.logprobs[self.emitted_tokens :]
        if self.finish_reason is not None:
            text = self.result().text
        else:
            text = self.detokenizer.text
            text = text[: len(text) - _stop_prefix_length(text, self.row.params.stop)]
        piece = text[self.emitted_chars :] if len(text) > self.emitted_chars else ""
        if not piece and not tokens:
            return None
        self.emitted_chars += len(piece)
        self.emitted_tokens += len(tokens)
        return StreamDelta(text=piece, token_ids=list(tokens), logprobs=logprobs)

    def result(self) -> GenerationResult:
        if self.error is not None:
            text = ""
        elif self.stop_at is not None:
            text = self.detokenizer.text[: self.stop_at]
        else:
            text = self.detokenizer.full()
        return GenerationResult(
            text=text,
            finish_reason=self.finish_reason or "length",
            prompt_tokens=len(self.row.prompt_ids),
            completion_tokens=len(self.tokens),
            token_ids=list(self.tokens),
            logprobs=self.logprobs,
            error=self.error,
        )
