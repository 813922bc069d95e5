from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from service.api.deps import State

router = APIRouter(tags=["health"])


@router.get("/stats", summary="Engine counters, the decode path, and the adapter cache (hits, loads, evictions, resident adapters)")
async def stats(state: State) -> dict:
    return {"engine": asdict(state.engine.stats), "decode": state.engine.decode_info(), "adapters": state.engine.adapters.snapshot()}
