from __future__ import annotations

import os

from fastapi import APIRouter

from service.api.deps import State
from service.errors import EngineUnavailable

router = APIRouter(tags=["health"])


@router.get("/health", summary="The process is alive")
async def health() -> dict:
    return {"status": "ok"}


@router.get("/ready", summary="The base model is loaded and the adapter store is readable")
async def ready(state: State) -> dict:
    if not os.access(state.store.root, os.R_OK | os.X_OK):
        raise EngineUnavailable(f"the adapter store {state.store.root} is not readable")
    return {
        "status": "ready",
        "base_model": state.engine.base.name,
        "device": str(state.engine.base.device),
        "dtype": str(state.engine.base.dtype).removeprefix("torch."),
        "adapters": len(state.engine.names()),
    }
