from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from service.api.deps import AdminAccess, ReadAccess, State
from service.api.errors import ERROR_RESPONSES
from service.api.openapi import Name
from service.errors import PayloadTooLarge, UploadError
from service.schemas.adapters import AdapterList, AdapterRecordOut
from service.store import validate_name

router = APIRouter(prefix="/adapters", tags=["adapters"])

UPLOAD_DOC = """Upload or replace an adapter saved by `PeftModel.save_pretrained`.

Either a multipart form with the files `adapter_config.json` and `adapter_model.safetensors` (parts named
`files`) plus optional fields `description` and `prompt_template`, or one `.zip` / `.tar.gz` archive as the
request body, with `description` and `prompt_template` as query parameters. A `prompt_template` such as
`"Human: {text}\\n\\nAssistant: "` is applied to this adapter's inputs. 201 when created, 200 when replaced."""


_ARCHIVE = {"schema": {"type": "string", "format": "binary"}}
# The route reads the raw request (to stream and bound it), so its body is described here.
UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 2, "maxItems": 3,
                  "description": "adapter_config.json and adapter_model.safetensors (README.md is accepted, not kept)"},
        "description": {"type": "string"},
        "prompt_template": {"type": "string", "description": "contains {text} exactly once"},
    }}},
    "application/zip": _ARCHIVE, "application/gzip": _ARCHIVE, "application/octet-stream": _ARCHIVE,
}}}


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge.upload(limit)
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
                    raise PayloadTooLarge.upload(limit)
                files[name] = data
            else:
                fields[key] = value
    finally:
        await form.close()
    return files, fields


@router.put("/{name}", response_model=AdapterRecordOut, summary="Upload or replace an adapter",
            responses={200: {"model": AdapterRecordOut, "description": "Replaced"}, **ERROR_RESPONSES},
            description=UPLOAD_DOC, dependencies=[AdminAccess], status_code=201, openapi_extra=UPLOAD_BODY)
async def put_adapter(name: Name, request: Request, response: Response, state: State,
                      description: str | None = None, prompt_template: str | None = None):
    validate_name(name)  # before reading a byte of the body
    limit = state.settings.max_upload_bytes
    registry = state.registry
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        files, fields = await _read_form(request, limit)
        metadata = {"description": fields.get("description", description),
                    "prompt_template": fields.get("prompt_template", prompt_template)}
        result = await asyncio.to_thread(registry.upload_files, name, files, **metadata)
    else:
        body = await _read_body(request, limit)
        if not body:
            raise UploadError("send the adapter as multipart files or as one .zip/.tar.gz archive body")
        result = await asyncio.to_thread(registry.upload_archive, name, body, description=description,
                                         prompt_template=prompt_template)
    response.status_code = 201 if result.created else 200
    return result.record.to_dict()


@router.get("", response_model=AdapterList, responses=ERROR_RESPONSES, dependencies=[ReadAccess],
            summary="List stored adapters")
async def list_adapters(state: State):
    return {"adapters": [record.to_dict() for record in state.registry.records()]}


@router.get("/{name}", response_model=AdapterRecordOut, responses=ERROR_RESPONSES, dependencies=[ReadAccess],
            summary="One adapter's record")
async def get_adapter(name: Name, state: State):
    validate_name(name)
    return state.registry.record(name).to_dict()


@router.delete(
    "/{name}", status_code=204, responses=ERROR_RESPONSES, dependencies=[AdminAccess], summary="Delete an adapter"
)
async def delete_adapter(name: Name, state: State) -> Response:
    validate_name(name)
    await asyncio.to_thread(state.registry.delete, name)  # requests already queued finish on the version they hold
    return Response(status_code=204)
