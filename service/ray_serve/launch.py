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


# Serve's HTTP proxy holds the connections on Ray: it closes idle ones as a single process does, and its request
# timeout stays above ours so that our deadline answers first, with its clear error (deploy/serve.yaml agrees).
REQUEST_TIMEOUT_MARGIN_S = 30.0


def proxy_http_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "keep_alive_timeout_s": settings.keep_alive_s,
        "request_timeout_s": settings.request_timeout_s + REQUEST_TIMEOUT_MARGIN_S,
    }


def run(settings: Settings, overrides: dict[str, Any], *, replicas: int, ray_address: str | None) -> int:
    ray.init(address=ray_address, include_dashboard=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        serve.start(http_options=proxy_http_options(settings))
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
