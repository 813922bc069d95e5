from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from service.api.deps import AdminAccess, State
from service.errors import PayloadTooLarge, UploadError
from service.schemas.adapters import AdapterList, AdapterRecordOut
from service.schemas.errors import ErrorResponse
from service.store import validate_name

router = APIRouter(prefix="/adapters", tags=["adapters"])

ERRORS = {
    400: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
    415: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
}

UPLOAD_DOC = """Upload or replace an adapter saved by `PeftModel.save_pretrained`.

Either a multipart form with the files `adapter_config.json` and `adapter_model.safetensors` (parts named
`files`) plus optional fields `description` and `prompt_template`, or one `.zip` / `.tar.gz` archive as the
request body, with `description` and `prompt_template` as query parameters. A `prompt_template` such as
`"Human: {text}\\n\\nAssistant: "` is applied to this adapter's inputs. 201 when created, 200 when replaced."""


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the upload exceeds the {limit // (1024 * 1024)} MiB limit (DELTASERVE_MAX_UPLOAD_BYTES)")


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_form(request: Request, limit: int) -> tuple[dict[str, bytes], dict[str, str]]:
    form = await request.form(max_files=16, max_fields=16)
    files: dict[str, bytes] = {}
    fields: dict[str, str] = {}
    total = 0
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                name = (value.filename or "").rsplit("/", 1)[-1]
                if not name:
                    raise UploadError(f"the file part '{key}' has no filename")
                if name in files:
                    raise UploadError(f"the file {name} was sent twice")
                data = await value.read(limit + 1 - total)
                total += len(data)
                if total > limit:
                    raise _too_large(limit)
                files[name] = data
            else:
                fields[key] = value
    finally:
        await form.close()
    return files, fields


@router.put("/{name}", response_model=AdapterRecordOut, responses=ERRORS, summary="Upload or replace an adapter",
            description=UPLOAD_DOC, dependencies=[AdminAccess], status_code=201)
async def put_adapter(name: str, request: Request, response: Response, state: State,
                      description: str | None = None, prompt_template: str | None = None):
    validate_name(name)  # before reading a byte of the body
    limit = state.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    store = state.store
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        files, fields = await _read_form(request, limit)
        description = fields.get("description", description)
        prompt_template = fields.get("prompt_template", prompt_template)
        staged = await asyncio.to_thread(store.stage_files, files)
    else:
        body = await _read_body(request, limit)
        if not body:
            raise UploadError("send the adapter as multipart files or as one .zip/.tar.gz archive body")
        staged = await asyncio.to_thread(store.stage_archive, body)
    # The engine's compile is the store's check: nothing becomes visible unless it would serve.
    result = await asyncio.to_thread(
        store.put, name, staged, state.engine.compile, description=description, prompt_template=prompt_template
    )
    state.engine.register(name, result.inspection, store.files(name))
    response.status_code = 201 if result.created else 200
    return result.record.to_dict()


@router.get("", response_model=AdapterList, summary="List stored adapters")
async def list_adapters(state: State):
    return {"adapters": [record.to_dict() for record in state.store.list()]}


@router.get("/{name}", response_model=AdapterRecordOut, responses=ERRORS, summary="One adapter's record")
async def get_adapter(name: str, state: State):
    return state.store.get(name).to_dict()


@router.delete("/{name}", status_code=204, responses=ERRORS, dependencies=[AdminAccess], summary="Delete an adapter")
async def delete_adapter(name: str, state: State) -> Response:
    await asyncio.to_thread(state.store.delete, name)
    state.engine.unregister(name)  # requests already queued finish on the version they hold
    return Response(status_code=204)
