"""`deltaserve serve --replicas N`: the Serve application on a Ray cluster (a local one unless --ray-address),
with Serve's HTTP proxy on the settings' host and port. Blocks until SIGTERM or SIGINT, then shuts Serve down
(each replica lets its running requests finish, as a single process does on SIGTERM)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import ray
from ray import serve

from service.config import Settings
from service.ray_serve.app import build_app

log = logging.getLogger(__name__)
APP_NAME = "deltaserve"


def run(settings: Settings, overrides: dict[str, Any], *, replicas: int, ray_address: str | None) -> int:
    ray.init(address=ray_address, include_dashboard=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(
            build_app({"settings": overrides, "replicas": replicas, "num_gpus": 1 if gpus >= 1 else 0}),
            name=APP_NAME,
            route_prefix="/",
        )
        log.info("Serving %d replica(s) on http://%s:%d", replicas, settings.host, settings.port)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()
        serve.delete(APP_NAME)
        serve.shutdown()
    finally:
        ray.shutdown()
    return 0
