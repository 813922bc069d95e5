from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from service.api.deps import ReadAccess, State
from service.api.errors import ERROR_RESPONSES

router = APIRouter(tags=["health"])


@router.get(
    "/stats",
    responses=ERROR_RESPONSES,
    dependencies=[ReadAccess],
    summary="Engine counters, the decode path, admission, and the adapter cache (hits, loads, evictions, residents)",
)
async def stats(state: State) -> dict:
    return {
        "engine": asdict(state.engine.stats),
        "decode": state.engine.decode_info(),
        "queue": {
            "waiting_rows": state.batcher.queued(),
            "running_rows": state.batcher.running(),
            "cancelled_waiting_rows": state.batcher.cancelled_waiting,
        },
        "admission": state.admission.snapshot(),
        "adapters": state.engine.adapters.snapshot(),
    }
