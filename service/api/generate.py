from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from service.api.deps import InferenceAccess, State
from service.api.disconnect import unless_disconnected
from service.errors import InvalidRequest
from service.schemas.errors import ErrorResponse
from service.schemas.generate import Completion, GenerateManyResponse, GenerateRequest, GenerateResponse
from service.state import ServiceState, apply_template

router = APIRouter(tags=["generate"], dependencies=[InferenceAccess])


async def complete(state: ServiceState, adapter: str | None, texts: list[str], params) -> list[Completion]:
    """Tokenize with the adapter's prompt template and queue every text on the shared batcher."""
    if params.max_new_tokens > state.settings.max_new_tokens_limit:
        raise InvalidRequest(f"max_new_tokens may be at most {state.settings.max_new_tokens_limit}")
    engine = state.engine
    # Resolved once: a replacement uploaded meanwhile does not mix in. In a thread: a cold adapter is
    # compiled from disk here, which must not stall the event loop.
    delta = await asyncio.to_thread(engine.get, adapter)
    template = state.prompt_template(adapter)
    sampling = params.sampling()
    rows = [engine.make_row(apply_template(template, text), delta, sampling) for text in texts]
    results = await asyncio.gather(*(state.batcher.submit(row) for row in rows))
    return [
        Completion(
            text=r.text, finish_reason=r.finish_reason, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens
        )
        for r in results
    ]


@router.post(
    "/generate",
    response_model=GenerateResponse | GenerateManyResponse,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    summary="Generate with one adapter (or the base model) for one text or a list of texts",
)
async def generate(request: GenerateRequest, state: State, http: Request):
    texts = [request.text] if request.text is not None else request.texts
    outputs = await unless_disconnected(http, complete(state, request.adapter, texts, request))
    if request.text is not None:
        return GenerateResponse(adapter=request.adapter, **outputs[0].model_dump())
    return GenerateManyResponse(adapter=request.adapter, outputs=outputs)
