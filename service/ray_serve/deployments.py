"""The two Serve deployments: Router (the HTTP ingress, mounted with serve.ingress, that routes each request to a
replica where its adapter is warm) and EngineReplica (one engine on one device, running our own app).

A replica serves the app `create_app` builds, the one a single process serves, so every route, error, limit and
key check is the same. (Serve allows one serve.ingress deployment per application, and the router has to be it:
it reads the body to learn the adapter. So a replica starts its app's lifespan itself, with uvicorn's lifespan
runner, exactly as serve.ingress would.) The router calls a replica's `forward` through a handle carrying the request's
multiplexing id (its adapter); `@serve.multiplexed` on the replica compiles the adapter on first use and reports
it as loaded, which is what Serve routes the next request for it by. Per request, the registry still reads the
record on disk, so a replacement written through any replica is served by this one at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from ray import serve
from uvicorn.config import Config
from uvicorn.lifespan.on import LifespanOn

from service.config import Settings
from service.errors import DeltaServeError
from service.main import create_app
from service.ray_serve.forwarding import ForwardedRequest, ForwardedResponse, ResponseStart, call_app, call_app_whole
from service.ray_serve.router_app import REPLICA_HEADER, RouterApp
from service.ray_serve.routing import uploaded_adapter

ENGINE_DEPLOYMENT = "DeltaServeEngine"
ROUTER_DEPLOYMENT = "DeltaServeRouter"


class WarmAdapter:
    """What Serve's multiplexing keeps per adapter id: only the name (the engine's cache holds the compiled form)."""

    def __init__(self, name: str):
        self.name = name


@serve.deployment(name=ENGINE_DEPLOYMENT)
class EngineReplica:
    async def __init__(self, settings: dict[str, Any]):  # type: ignore[misc]  # Serve awaits an async __init__
        self.settings = Settings(**settings)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self._app = create_app(self.settings)
        self._lifespan = LifespanOn(Config(self._app, lifespan="on", log_config=None, access_log=False))
        await self._lifespan.startup()  # loads the model and the store, before the replica takes requests
        if self._lifespan.should_exit:
            raise RuntimeError("the app failed to start; the replica's log says why")

        async def warm(adapter: str) -> WarmAdapter:
            state = getattr(self._app.state, "deltaserve", None)
            if state is not None:
                await asyncio.to_thread(state.registry.resolve, adapter)
            return WarmAdapter(adapter)

        # As many adapters reported warm as the engine keeps on its device.
        self._warm = serve.multiplexed(max_num_models_per_replica=self.settings.max_resident_adapters)(warm)

    async def __del__(self):
        await self._lifespan.shutdown()  # the batcher stops; requests still running finish first

    async def forward(self, request: ForwardedRequest) -> AsyncGenerator[ResponseStart | bytes, None]:
        """Answer one request with our app, streamed; the router's handle names the adapter to warm first."""
        adapter = serve.get_multiplexed_model_id()
        if adapter:
            with contextlib.suppress(DeltaServeError):  # gone meanwhile: the app answers the 404 itself
                await self._warm(adapter)
        status = None
        async with contextlib.aclosing(call_app(self._app, request)) as parts:
            async for part in parts:
                if isinstance(part, ResponseStart):
                    status = part.status
                    part = ResponseStart(part.status, [*part.headers, (REPLICA_HEADER, self.replica.encode())])
                yield part
        uploaded = uploaded_adapter(request.method, request.path)
        if uploaded is not None and status in (200, 201):
            with contextlib.suppress(DeltaServeError):  # this replica compiled the new version: say it is warm here
                await self._warm(uploaded)

    async def call(self, request: ForwardedRequest) -> ForwardedResponse:
        """One whole answer from this replica (the router's fan-out to every replica; tests)."""
        return await call_app_whole(self._app, request, self.replica)


@serve.deployment(name=ROUTER_DEPLOYMENT)
@serve.ingress()
class Router:
    def __init__(self, engine: Any, settings: dict[str, Any]):
        self._app = RouterApp(engine, Settings(**settings))

    def __serve_build_asgi_app__(self):
        return self._app
