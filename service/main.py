"""The app factory: `create_app(settings)` builds a FastAPI app whose lifespan loads the model once."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.admission import Admission
from service.api import adapters, generate, health, metrics, openai, pipelines, stats
from service.api.body_limits import BodyLimits
from service.api.errors import UnexpectedErrors, install_error_handlers
from service.api.openapi import install_openapi
from service.config import Settings
from service.engine.base_model import FrozenBase
from service.metrics import Metrics, RequestMetrics
from service.state import build_state

DESCRIPTION = """One frozen base model, many PEFT deltas (LoRA, IA3, prompt tuning, P-tuning, prefix tuning)
hot-swapped per request and batched together. Greedy output equals `PeftModel.generate`, token for token."""


def create_app(settings: Settings | None = None, *, base: FrozenBase | None = None) -> FastAPI:
    """`base` injects an already loaded model (tests use a tiny one); otherwise `settings` names it."""
    settings = settings or Settings()
    # Made with the app, not in its lifespan: a launcher may start draining (SIGTERM) at any time.
    admission = Admission(max_requests=settings.max_concurrent_requests, max_tokens=settings.max_queued_tokens)
    service_metrics = Metrics(settings.metrics_adapter_labels)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = await asyncio.to_thread(build_state, settings, admission, base, service_metrics)
        service_metrics.watch(state)
        state.batcher.start()
        app.state.deltaserve = state
        try:
            yield
        finally:
            await state.batcher.stop()
            app.state.deltaserve = None

    app = FastAPI(title="DeltaServe", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.admission = admission
    app.state.metrics = service_metrics
    install_error_handlers(app)
    app.add_middleware(UnexpectedErrors)  # innermost: inside it, errors become answers; outside, bodies are bounded
    app.add_middleware(BodyLimits, settings=settings)
    app.add_middleware(RequestMetrics, metrics=service_metrics)  # outermost: it counts refused bodies too
    for module in (health, generate, adapters, pipelines, stats, metrics, openai):
        app.include_router(module.router)
    install_openapi(app, settings)
    return app
