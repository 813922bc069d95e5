"""The server half of the `deltaserve` command: run the server, prepare the base model.

    deltaserve serve [--host H --port P ...]          run the HTTP server (settings: DELTASERVE_* env, flags win)
    deltaserve serve --replicas N [--ray-address A]   the same API on Ray Serve: N engine replicas, one store
    deltaserve prepare-model [--base-model M]         convert and cache the base model ahead of time
    deltaserve convert SRC DEST [--base-model M]      an OpenDelta checkpoint -> a folder DeltaServe serves (offline)

`add_server_commands` adds these to the `deltaserve` parser (built in `deltaserve.cli`, next to the client's
commands). Their flags are the `Settings` fields (service/settings_flags.py). `serve` keeps the bind policy: with
no keys set it binds only a loopback address, unless --insecure. Torch, uvicorn and the app are imported only when
a command runs, so building the parser (and `deltaserve --help`) stays fast. Nothing here imports the client.
Exit status: 0 on success, 2 for bad settings or a refused bind, 3 when the server could not start.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from service.config import Settings
from service.settings_flags import FLAG_FIELDS, add_settings_flags, settings_from_flags

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_server_commands", "is_loopback"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
# prepare-model only reads where the model comes from and where its converted copy is cached.
PREPARE_MODEL_FIELDS = ("base_model", "cache_dir")

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad settings or a refused bind (exit status 2)."""


def server_command(run: Handler) -> Handler:
    """`run` with a usage error turned into a message on stderr and exit status 2."""

    @functools.wraps(run)
    def handler(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return handler


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return settings_from_flags(args)
    except ValidationError as exc:
        raise UsageError(f"invalid settings: {exc}") from exc


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: addresses only this machine can reach."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_bind(settings: Settings, insecure: bool) -> None:
    """Without keys, only loopback (said on stderr), or anywhere with --insecure (warned); else a UsageError."""
    if settings.admin_key or settings.api_keys:
        return
    where = f"{settings.host}:{settings.port}"
    if is_loopback(settings.host):
        print(
            f"deltaserve: no keys are set (DELTASERVE_ADMIN_KEY, DELTASERVE_API_KEYS), so the server is bound "
            f"to loopback only ({where}) and serves anyone on this machine without authentication",
            file=sys.stderr,
        )
    elif insecure:
        print(
            f"deltaserve: warning: --insecure: serving on {where} with no keys; anyone who can reach this "
            "port can upload adapters and run the model",
            file=sys.stderr,
        )
    else:
        raise UsageError(
            f"refusing to serve on {where} without keys: anyone who could reach it could upload "
            "adapters and run the model. Set DELTASERVE_ADMIN_KEY and DELTASERVE_API_KEYS (comma-separated), "
            "bind a loopback address (--host 127.0.0.1), or pass --insecure to serve without authentication."
        )


@server_command
def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _check_bind(settings, args.insecure)
    level = args.log_level or "info"
    logging.basicConfig(level="DEBUG" if level == "trace" else level.upper())
    if args.replicas is not None:
        return _serve_on_ray(settings, args)
    # uvicorn only; server.serve imports the app (and torch) itself
    from service import server

    return server.serve(settings, log_level=level)


def _serve_on_ray(settings: Settings, args: argparse.Namespace) -> int:
    if args.replicas < 1:
        raise UsageError(f"--replicas must be at least 1, not {args.replicas}")
    try:
        from service.ray_serve import launch
    except ImportError as exc:
        raise UsageError(f"--replicas needs Ray Serve: pip install 'deltaserve[ray]' ({exc})") from exc
    # The flags given reach every replica; the environment (keys included) reaches them as Ray's workers inherit it.
    overrides = {name: getattr(args, name) for name in FLAG_FIELDS if hasattr(args, name)}
    overrides = {name: str(value) if hasattr(value, "__fspath__") else value for name, value in overrides.items()}
    return launch.run(settings, overrides, replicas=args.replicas, ray_address=args.ray_address)


@server_command
def cmd_prepare_model(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from service.engine.base_model import prepare_base_model

    result = prepare_base_model(settings)
    print(f"base model ready{f': {result}' if result is not None else ''} (cache: {settings.cache_dir})")
    return 0


@server_command
def cmd_convert(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from service.opendelta_convert import ConversionError, convert_opendelta, module_skeleton

    try:
        model, name = module_skeleton(settings)
        print(convert_opendelta(args.source, args.destination, model, name))
    except ConversionError as exc:
        raise UsageError(f"cannot convert {args.source}: {exc}") from exc
    print(f"wrote {args.destination}")
    return 0


def add_server_commands(commands: Commands) -> None:
    """Add `serve`, `prepare-model` and `convert` to `commands`; each sets `handler` (Namespace -> exit status)."""
    serve = commands.add_parser(
        "serve",
        help="run the HTTP server",
        description="Run the HTTP server. Every setting is a flag here and a DELTASERVE_<NAME> environment "
        "variable; a flag given wins. Keys come only from DELTASERVE_ADMIN_KEY and DELTASERVE_API_KEYS; without "
        "keys the server only starts on a loopback address, unless --insecure. On SIGTERM or SIGINT it stops "
        "taking requests and gives the running ones shutdown-grace-s to finish.",
    )
    serve.add_argument("--insecure", action="store_true", help="allow a non-loopback address without keys")
    serve.add_argument("--log-level", choices=LOG_LEVELS, help="default info")
    serve.add_argument("--replicas", type=int, help="serve on Ray Serve with this many engine replicas (one per GPU "
                       "where the cluster has GPUs), all on one adapter store; needs the ray extra")
    serve.add_argument("--ray-address", help="with --replicas: the Ray cluster to join (default: start a local one)")
    add_settings_flags(serve)
    serve.set_defaults(handler=cmd_serve)

    prepare = commands.add_parser(
        "prepare-model", help="convert and cache the base model ahead of time",
        description="Convert and cache the base model so that `serve` starts fast (the Docker image runs this).",
    )
    add_settings_flags(prepare, PREPARE_MODEL_FIELDS)
    prepare.set_defaults(handler=cmd_prepare_model)

    convert = commands.add_parser(
        "convert", help="convert an OpenDelta checkpoint into a folder DeltaServe serves (offline)",
        description="Convert what OpenDelta's save_finetuned wrote (config.json, pytorch_model.bin) into a PEFT "
        "LoRA folder (delta_type lora) or DeltaServe's BitFit format (bitfit), checked against the base model's "
        "modules. Anything that does not map exactly is refused; the output folder is whole or absent.",
    )
    convert.add_argument("source", type=Path, help="the OpenDelta checkpoint folder")
    convert.add_argument("destination", type=Path, help="the folder to write (must not exist)")
    add_settings_flags(convert, PREPARE_MODEL_FIELDS)
    convert.set_defaults(handler=cmd_convert)
