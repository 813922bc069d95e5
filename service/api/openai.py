"""The OpenAI protocol: /v1/models, /v1/completions, /v1/chat/completions, plain and streamed (SSE).

`model` names an adapter or the base model (by the name /ready reports). Requests go through the same
inference layer as /generate (limits, templates, row isolation, one shared batch); only the shapes differ.
Errors on these routes come in OpenAI's shape, with the same statuses as the native routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.deps import InferenceAccess, ReadAccess, State
from service.api.disconnect import unless_disconnected
from service.api.errors import error_response
from service.api.sse import sse_event, start_stream, streamed_answer
from service.chat import chat_prompt, last_user_message
from service.engine import GenerationResult, SamplingParams
from service.engine.detokenize import IncrementalText
from service.engine.rows import StreamDelta
from service.engine.sampling import TokenLogprob
from service.errors import AdapterNotFound, DeltaServeError
from service.inference import RowOptions
from service.schemas.openai import ChatCompletionRequest, CompletionRequest, OpenAIError, _Sampling
from service.state import ServiceState

FINISH_REASONS = {"stop": "stop", "length": "length", "timeout": "length"}  # OpenAI has no "timeout"
def openai_error(status: int, message: str, code: str | None, param: str | None = None,
                 headers: dict | None = None) -> JSONResponse:
    return error_response(status, code or "error", message, headers, openai=True, param=param)


class OpenAIRoute(APIRoute):
    """Errors out of these routes (validation included) in OpenAI's shape, with the native statuses."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except DeltaServeError as exc:
                code = "model_not_found" if isinstance(exc, AdapterNotFound) else exc.code
                headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
                return openai_error(exc.status, exc.message, code, headers=headers)
            except StarletteHTTPException as exc:  # e.g. a body that is not JSON
                code = {400: "invalid_body", 404: "not_found"}.get(exc.status_code, "http_error")
                return openai_error(exc.status_code, str(exc.detail), code)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
                message = "; ".join(str(e.get("msg")) for e in exc.errors()[:5])
                return openai_error(400, message, "invalid_request", param=where)

        return route


OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIError, "description": description} for status, description in {
        400: "The request does not follow the protocol (OpenAI answers 400 where the native routes answer 422)",
        401: "A key is needed", 403: "The key is wrong", 404: "No such model", 413: "The body is too large",
        422: "A value past a server limit", 429: "Too much work is queued; retry after Retry-After seconds",
        500: "The request failed in the model", 503: "Starting, shutting down, or past its deadline in the queue",
    }.items()
}
STREAMED = streamed_answer("JSON, or events when `stream` is true")

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute, responses=OPENAI_ERRORS)


def _model(state: ServiceState, name: str) -> str | None:
    """The adapter `name` means; None for the base model. Unknown names raise (404 model_not_found)."""
    if name == state.engine.base.name:
        return None
    if not state.registry.exists(name):
        raise AdapterNotFound(f"the model '{name}' does not exist: name an adapter or '{state.engine.base.name}'")
    return name


@router.get("/models", dependencies=[ReadAccess], summary="The base model and every adapter, OpenAI's list shape")
async def list_models(state: State) -> dict:
    base = state.engine.base.name
    started = int(time.time())
    models = [{"id": base, "object": "model", "created": started, "owned_by": "deltaserve", "root": base,
               "parent": None, "kind": "base"}]
    for record in state.registry.records():
        created = int(datetime.fromisoformat(record.created_at.replace("Z", "+00:00")).timestamp())
        models.append({"id": record.name, "object": "model", "created": created, "owned_by": "deltaserve",
                       "root": record.name, "parent": base, "kind": record.kind})
    return {"object": "list", "data": models}


def _row_params(request: _Sampling, max_new_tokens: int, logprobs: int | None) -> list[SamplingParams]:
    """One row per choice; with a seed, choice i samples with seed + i (different samples, reproducible)."""
    base = SamplingParams(max_new_tokens=max_new_tokens, temperature=request.temperature, top_p=request.top_p,
                          top_k=max(request.top_k, 0), seed=request.seed, stop=request.stops, logprobs=logprobs)
    if request.seed is None:
        return [base] * request.n
    return [replace(base, seed=request.seed + i) for i in range(request.n)]


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE spells each byte as one printable character; this maps them back."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


_BYTE_OF = _byte_level_alphabet()


class _Tokens:
    """Token texts for logprobs, as OpenAI shows them: each token decoded alone, and a token that is only part
    of a character as `bytes:\\xNN...` (OpenAI's own convention), so distinct tokens never look the same."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer

    def raw(self, token: int) -> bytes:
        text = self._tokenizer.decode([token])
        if "\ufffd" not in text:
            return text.encode("utf-8")
        spelled = self._tokenizer.convert_ids_to_tokens(token)
        if isinstance(spelled, str) and all(char in _BYTE_OF for char in spelled):
            return bytes(_BYTE_OF[char] for char in spelled)
        return text.encode("utf-8")

    def text(self, token: int) -> str:
        raw = self.raw(token)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "bytes:" + "".join(f"\\x{byte:02x}" for byte in raw)

    def completion(self, entries: list[TokenLogprob], offset: int = 0) -> dict:
        """The legacy shape; `text_offset`: where each token's text starts in the completion (a token that
        only begins a character starts where that character will)."""
        texts = [self.text(e.token) for e in entries]
        released = IncrementalText(self._tokenizer)
        offsets = []
        for entry in entries:
            offsets.append(offset + len(released.text))
            released.add(entry.token)
        return {"tokens": texts, "token_logprobs": [e.logprob for e in entries],
                "top_logprobs": [{self.text(t): v for t, v in e.top} for e in entries], "text_offset": offsets}

    def chat(self, entries: list[TokenLogprob]) -> dict:
        def item(token: int, logprob: float) -> dict:
            return {"token": self.text(token), "logprob": logprob, "bytes": list(self.raw(token))}

        return {"content": [{**item(e.token, e.logprob), "top_logprobs": [item(t, v) for t, v in e.top]}
                            for e in entries]}


def _usage(results: list[GenerationResult], choices_per_prompt: int) -> dict:
    prompt = sum(r.prompt_tokens for r in results[::choices_per_prompt])  # a prompt counts once, whatever n is
    completion = sum(r.completion_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@router.post("/completions", dependencies=[InferenceAccess], responses=STREAMED,
             summary="OpenAI completions (stream: SSE)")
async def completions(request: CompletionRequest, state: State, http: Request):
    adapter = _model(state, request.model)
    http.state.adapter = adapter
    prompts = request.prompts
    texts = [prompt for prompt in prompts for _ in range(request.n)]
    params = _row_params(request, request.max_tokens or 16, request.logprobs) * len(prompts)
    tokens = _Tokens(state.engine.base.tokenizer)
    ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    head = {"id": ident, "object": "text_completion", "created": created, "model": request.model}
    if request.stream:
        stream = state.inference.stream(adapter, texts, params)
        events = _completion_events(stream, head, tokens, request, len(texts))
        return await unless_disconnected(http, start_stream(events, _stream_error))
    results = await unless_disconnected(http, state.inference.generate(adapter, texts, params))
    choices = [{"index": i, "text": r.text, "finish_reason": FINISH_REASONS.get(r.finish_reason, r.finish_reason),
                "logprobs": tokens.completion(r.logprobs) if r.logprobs is not None else None}
               for i, r in enumerate(results)]
    return {**head, "choices": choices, "usage": _usage(results, request.n)}


async def _completion_events(stream: AsyncGenerator, head: dict, tokens: _Tokens, request: CompletionRequest,
                             rows: int) -> AsyncGenerator[bytes, None]:
    results: list[GenerationResult | None] = [None] * rows
    offsets = [0] * rows
    async with contextlib.aclosing(stream):
        async for index, item in stream:
            if isinstance(item, StreamDelta):
                if not item.text and not item.logprobs:
                    continue
                logprobs = tokens.completion(item.logprobs, offsets[index]) if item.logprobs is not None else None
                offsets[index] += len(item.text)
                choice = {"index": index, "text": item.text, "logprobs": logprobs, "finish_reason": None}
            else:
                results[index] = item
                reason = FINISH_REASONS.get(item.finish_reason, item.finish_reason)
                choice = {"index": index, "text": "", "logprobs": None, "finish_reason": reason}
            yield sse_event({**head, "choices": [choice]})
    if request.include_usage:
        yield sse_event({**head, "choices": [], "usage": _usage([r for r in results if r], request.n)})
    yield sse_event("[DONE]")


@router.post("/chat/completions", dependencies=[InferenceAccess], responses=STREAMED,
             summary="OpenAI chat completions (stream: SSE)")
async def chat_completions(request: ChatCompletionRequest, state: State, http: Request):
    adapter = _model(state, request.model)
    http.state.adapter = adapter
    template = state.registry.record(adapter).prompt_template if adapter is not None else None
    if template is not None:  # the adapter's own template around the last user message (service/chat.py)
        text, options = last_user_message(request.messages), RowOptions(fit_new_tokens=request.new_tokens is None)
    else:
        text = await asyncio.to_thread(chat_prompt, state.engine.base.tokenizer, request.messages)
        options = RowOptions(special_tokens=False, fit_new_tokens=request.new_tokens is None)
    max_new = request.new_tokens or state.settings.max_new_tokens_limit
    logprobs = (request.top_logprobs or 0) if request.logprobs else None
    params = _row_params(request, max_new, logprobs)
    texts = [text] * request.n
    tokens = _Tokens(state.engine.base.tokenizer)
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    head = {"id": ident, "object": "chat.completion", "created": created, "model": request.model}
    if request.stream:
        stream = state.inference.stream(adapter, texts, params, options)
        events = _chat_events(stream, {**head, "object": "chat.completion.chunk"}, tokens, request)
        return await unless_disconnected(http, start_stream(events, _stream_error))
    results = await unless_disconnected(http, state.inference.generate(adapter, texts, params, options))
    choices = [{"index": i, "message": {"role": "assistant", "content": r.text},
                "finish_reason": FINISH_REASONS.get(r.finish_reason, r.finish_reason),
                "logprobs": tokens.chat(r.logprobs) if r.logprobs is not None else None}
               for i, r in enumerate(results)]
    return {**head, "choices": choices, "usage": _usage(results, request.n)}


async def _chat_events(stream: AsyncGenerator, head: dict, tokens: _Tokens,
                       request: ChatCompletionRequest) -> AsyncGenerator[bytes, None]:
    results: list[GenerationResult | None] = [None] * request.n
    started: set[int] = set()
    async with contextlib.aclosing(stream):
        async for index, item in stream:
            choices = []
            if index not in started:  # each choice's first chunk names the role
                started.add(index)
                choices.append({"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                "finish_reason": None})
            if isinstance(item, StreamDelta):
                if item.text or item.logprobs:
                    logprobs = tokens.chat(item.logprobs) if item.logprobs is not None else None
                    choices.append({"index": index, "delta": {"content": item.text}, "logprobs": logprobs,
                                    "finish_reason": None})
            else:
                results[index] = item
                reason = FINISH_REASONS.get(item.finish_reason, item.finish_reason)
                choices.append({"index": index, "delta": {}, "logprobs": None, "finish_reason": reason})
            for choice in choices:
                yield sse_event({**head, "choices": [choice]})
    if request.include_usage:
        yield sse_event({**head, "choices": [], "usage": _usage([r for r in results if r], request.n)})
    yield sse_event("[DONE]")


def _stream_error(exc: Exception) -> bytes:
    if isinstance(exc, DeltaServeError):
        error = {"message": exc.message, "type": "server_error" if exc.status >= 500 else "invalid_request_error",
                 "param": None, "code": exc.code}
    else:
        error = {"message": "the server failed to finish this stream; see its log", "type": "server_error",
                 "param": None, "code": "internal_error"}
    return sse_event({"error": error})
