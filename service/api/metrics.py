from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import ReadAccess, State
from service.api.errors import ERROR_RESPONSES

router = APIRouter(tags=["health"])


@router.get("/metrics", responses=ERROR_RESPONSES, dependencies=[ReadAccess], response_class=Response,
            summary="Prometheus metrics (text exposition format); the README lists them")
async def metrics(state: State, request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
