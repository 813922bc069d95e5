from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.deps import InferenceAccess, State
from service.api.disconnect import unless_disconnected
from service.api.errors import ERROR_RESPONSES
from service.schemas.generate import Completion, GenerateManyResponse, GenerateRequest, GenerateResponse

router = APIRouter(tags=["generate"], dependencies=[InferenceAccess])


@router.post(
    "/generate",
    response_model=GenerateResponse | GenerateManyResponse,
    responses=ERROR_RESPONSES,
    summary="Generate with one adapter (or the base model) for one text or a list of texts",
)
async def generate(request: GenerateRequest, state: State, http: Request):
    texts = [request.text] if request.text is not None else request.texts
    results = await unless_disconnected(http, state.inference.generate(request.adapter, texts, request.sampling()))
    outputs = [Completion.from_result(result) for result in results]
    if request.text is not None:
        return GenerateResponse(adapter=request.adapter, **outputs[0].model_dump())
    return GenerateManyResponse(adapter=request.adapter, outputs=outputs)
