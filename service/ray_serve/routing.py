"""Which adapter a request is for, read from its body: the multiplexing id Serve routes on.

Serve prefers a replica that has reported the request's `multiplexed_model_id` as loaded, so requests for one
adapter go where it is compiled and resident. The id comes from the body (`adapter` on the native routes, `model`
on /v1, a pipeline's first adapter). It is only a preference: a request with a wrong or missing id still gets its
real answer (404, 422 ...) from whichever replica takes it, so the router never refuses anything itself.

An upload of a new version goes to the replica where the adapter is warm, and leaves it warm there: the replica
that wrote a version holds it compiled (the router reports it so).

A pipeline runs on one replica, chosen by its first adapter: its concurrent steps then share that replica's
batches, and no step pays another router-to-replica hop (which costs more than compiling a small adapter:
README "Scale-out on Ray Serve"). Its later adapters become warm there too.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from service.store.names import is_valid_name

JSON_ROUTES = ("/generate", "/pipeline", "/v1/completions", "/v1/chat/completions")
NAMED_PIPELINE_PREFIX = "/pipelines/"
ADAPTERS_PREFIX = "/adapters/"


def uploaded_adapter(method: str, path: str) -> str | None:
    """The adapter a `PUT /adapters/<name>` writes."""
    if method != "PUT" or not path.startswith(ADAPTERS_PREFIX) or path.count("/") != 2:
        return None
    name = path[len(ADAPTERS_PREFIX):]
    return name if is_valid_name(name) else None


def first_adapter(steps: object) -> str | None:
    if not isinstance(steps, list):
        return None
    for step in steps:
        adapter = step.get("adapter") if isinstance(step, dict) else None
        if isinstance(adapter, str):
            return adapter
    return None


def routing_key(method: str, path: str, body: bytes, *, adapter_exists: Callable[[str], bool],
                pipeline_steps: Callable[[str], object]) -> str | None:
    """The adapter `body` asks for (an existing one, by a valid name), or None: no preference."""
    uploaded = uploaded_adapter(method, path)
    if uploaded is not None:
        return uploaded if adapter_exists(uploaded) else None
    if method != "POST":
        return None
    named_pipeline = path.startswith(NAMED_PIPELINE_PREFIX) and path.count("/") == 2
    if path not in JSON_ROUTES and not named_pipeline:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # the replica answers the 400
        return None
    if not isinstance(document, dict):
        return None
    if path == "/generate":
        key = document.get("adapter")
    elif path.startswith("/v1/"):
        key = document.get("model")  # the base model's name is no adapter: no preference
    elif path == "/pipeline":
        key = first_adapter(document.get("steps"))
    else:
        name = path[len(NAMED_PIPELINE_PREFIX):]
        key = first_adapter(pipeline_steps(name)) if is_valid_name(name) else None
    if not isinstance(key, str) or not is_valid_name(key) or not adapter_exists(key):
        return None
    return key
