"""The Serve application: `build_app(args)`, for `serve run service.ray_serve.app:build_app` and Serve config
files (deploy/serve.yaml), and what `deltaserve serve --replicas N` runs.

`args` (all optional):
    settings      DELTASERVE_* settings by field name, for every replica and the router (keys stay in the
                  environment: DELTASERVE_ADMIN_KEY, DELTASERVE_API_KEYS)
    replicas      engine replicas (leave it out where the config gives num_replicas or an autoscaling_config)
    num_gpus      per engine replica (default 0; 1 on GPU machines: one engine per device)
    num_cpus      per engine replica (default 1)
    router_num_cpus  for the router (default 0.1)

A config file's `deployments:` section overrides these per deployment (DeltaServeEngine, DeltaServeRouter).
"""

from __future__ import annotations

from typing import Any, cast

from ray.serve import Application, Deployment

from service.config import Settings
from service.ray_serve.deployments import EngineReplica, Router
from service.settings_flags import ENV_ONLY

ARGS = frozenset({"settings", "replicas", "num_gpus", "num_cpus", "router_num_cpus"})


def build_app(args: dict[str, Any] | None = None) -> Application:
    args = dict(args or {})
    unknown = set(args) - ARGS
    if unknown:
        raise ValueError(f"unknown application arguments {sorted(unknown)}; known: {sorted(ARGS)}")
    settings = {str(name): value for name, value in dict(args.get("settings") or {}).items()}
    secret = set(settings) & ENV_ONLY
    if secret:
        raise ValueError(f"{sorted(secret)} are read from the environment only, never from a config file")
    Settings(**settings)  # a bad value fails here, before any replica starts
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": float(args.get("num_cpus", 1)), "num_gpus": float(args.get("num_gpus", 0))}
    }
    if "replicas" in args:  # otherwise the config's num_replicas or autoscaling_config decides
        options["num_replicas"] = int(args["replicas"])
    engine = cast(Deployment, EngineReplica).options(**options).bind(settings)
    router = cast(Deployment, Router).options(ray_actor_options={"num_cpus": float(args.get("router_num_cpus", 0.1))})
    return router.bind(engine, settings)
