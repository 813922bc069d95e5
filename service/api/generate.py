from __future__ import annotations

from collections.abc import AsyncGenerator

from fastapi import APIRouter, Request

from service.api.deps import InferenceAccess, State
from service.api.disconnect import unless_disconnected
from service.api.errors import ERROR_RESPONSES, error_body
from service.api.sse import sse_event, start_stream, streamed_answer
from service.engine import GenerationResult
from service.schemas.generate import Completion, GenerateManyResponse, GenerateRequest, GenerateResponse

router = APIRouter(tags=["generate"], dependencies=[InferenceAccess])

STREAM_DOC = """With `"stream": true` the answer is Server-Sent Events, as the batch produces them:
`event: token` `{"index": i, "text": piece}` (row i's new text; never part of a character or of a stop string),
`event: end` `{"index": i, "text", "finish_reason", "prompt_tokens", "completion_tokens"}` when row i ends,
then `event: done` `{"adapter": ...}`; an error after the first event comes as `event: error` `{"error": {...}}`."""


@router.post(
    "/generate",
    response_model=GenerateResponse | GenerateManyResponse,
    responses={**ERROR_RESPONSES, **streamed_answer("JSON, or events when streamed")},
    summary="Generate with one adapter (or the base model) for one text or a list of texts",
    description=STREAM_DOC,
)
async def generate(request: GenerateRequest, state: State, http: Request):
    http.state.adapter = request.adapter
    texts = [request.text] if request.text is not None else request.texts
    assert texts is not None  # the schema requires one of the two
    if request.stream:
        events = _events(state.inference.stream(request.adapter, texts, request.sampling()), request.adapter)
        return await unless_disconnected(http, start_stream(events, lambda exc: sse_event(error_body(exc), "error")))
    results = await unless_disconnected(http, state.inference.generate(request.adapter, texts, request.sampling()))
    outputs = [Completion.from_result(result) for result in results]
    if request.text is not None:
        return GenerateResponse(adapter=request.adapter, **outputs[0].model_dump())
    return GenerateManyResponse(adapter=request.adapter, outputs=outputs)


async def _events(items: AsyncGenerator, adapter: str | None) -> AsyncGenerator[bytes, None]:
    async for index, item in items:
        if isinstance(item, GenerationResult):
            yield sse_event({"index": index, **Completion.from_result(item).model_dump()}, "end")
        elif item.text:
            yield sse_event({"index": index, "text": item.text}, "token")
    yield sse_event({"adapter": adapter}, "done")
