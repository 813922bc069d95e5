from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from service.api.deps import AdminAccess, InferenceAccess, ReadAccess, State
from service.api.disconnect import unless_disconnected
from service.api.errors import ERROR_RESPONSES, error_body
from service.api.openapi import Name
from service.api.sse import sse_event, start_stream, streamed_answer
from service.pipeline_runner import check_definition, run_pipeline, stream_pipeline
from service.schemas.pipelines import (
    PipelineDefinition,
    PipelineList,
    PipelineResult,
    RunNamedPipelineRequest,
    RunPipelineRequest,
    StoredPipeline,
)
from service.store import validate_name

router = APIRouter(tags=["pipelines"])

STREAM_DOC = """With `"stream": true` the answer is Server-Sent Events: `event: step` (a step's record, as in
`steps`, when it completes), `event: token` `{"step", "text"}` (the last step's text as it is generated), then
`event: done` (the whole result, as a non-streamed run answers it); an error after the first event comes as
`event: error`."""


async def _answer(state, http: Request, text: str, steps: list, stream: bool):
    if not stream:
        return await unless_disconnected(http, run_pipeline(state.inference, text, steps))
    events = (sse_event(event.data, event.kind) async for event in stream_pipeline(state.inference, text, steps))
    return await unless_disconnected(http, start_stream(events, lambda exc: sse_event(error_body(exc), "error")))


STREAMED = streamed_answer("JSON, or events when streamed")


@router.post(
    "/pipeline",
    response_model=PipelineResult,
    responses={**ERROR_RESPONSES, **STREAMED},
    dependencies=[InferenceAccess],
    summary="Run steps, each with its own adapter, over one input",
    description=STREAM_DOC,
)
async def post_pipeline(request: RunPipelineRequest, state: State, http: Request):
    return await _answer(state, http, request.text, request.steps, request.stream)


def _load(state, name: str) -> PipelineDefinition:
    return PipelineDefinition.model_validate(state.store.get_pipeline(name))


@router.put(
    "/pipelines/{name}",
    response_model=StoredPipeline,
    dependencies=[AdminAccess],
    status_code=201,
    responses={200: {"model": StoredPipeline, "description": "Replaced"}, **ERROR_RESPONSES},
    summary="Store a named pipeline (201 created, 200 replaced)",
)
async def put_pipeline(name: Name, definition: PipelineDefinition, state: State, response: Response):
    validate_name(name)
    check_definition(definition.steps, state.settings)  # adapters are checked when it runs: they may come later
    document = definition.model_dump(exclude_defaults=True)
    created = await asyncio.to_thread(state.store.put_pipeline, name, document)
    response.status_code = 201 if created else 200
    return {"name": name, **definition.model_dump()}


@router.get(
    "/pipelines",
    response_model=PipelineList,
    responses=ERROR_RESPONSES,
    dependencies=[ReadAccess],
    summary="List named pipelines",
)
async def list_pipelines(state: State):
    return {
        "pipelines": [
            {"name": name, **PipelineDefinition.model_validate(doc).model_dump()}
            for name, doc in sorted(state.store.list_pipelines().items())
        ]
    }


@router.get(
    "/pipelines/{name}",
    response_model=StoredPipeline,
    responses=ERROR_RESPONSES,
    dependencies=[ReadAccess],
    summary="One named pipeline",
)
async def get_pipeline(name: Name, state: State):
    validate_name(name)
    return {"name": name, **_load(state, name).model_dump()}


@router.delete(
    "/pipelines/{name}",
    status_code=204,
    responses=ERROR_RESPONSES,
    dependencies=[AdminAccess],
    summary="Delete a named pipeline",
)
async def delete_pipeline(name: Name, state: State) -> Response:
    validate_name(name)
    await asyncio.to_thread(state.store.delete_pipeline, name)
    return Response(status_code=204)


@router.post(
    "/pipelines/{name}",
    response_model=PipelineResult,
    responses={**ERROR_RESPONSES, **STREAMED},
    dependencies=[InferenceAccess],
    summary="Run a named pipeline on one input",
    description=STREAM_DOC,
)
async def run_named_pipeline(name: Name, request: RunNamedPipelineRequest, state: State, http: Request):
    validate_name(name)
    return await _answer(state, http, request.text, _load(state, name).steps, request.stream)
