"""The client half of the `deltaserve` command: talk to a running server through `DeltaServeClient`.

    deltaserve generate [--adapter A ...] TEXT        generate with one adapter (or the base model)
    deltaserve adapters upload|list|show|delete       manage the adapter store
    deltaserve pipeline run|put|list|show|delete|run-named   chain adapters

This module holds the commands' handlers; cli_parsers.py adds them to the `deltaserve` parser (built in
`deltaserve.cli`, next to the server's commands). The clients are made by the module-level `client_factory`
(tests replace it). Exit status: 0 on success, 1 when the server answers
with an error or cannot be reached, 2 for bad input.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from clients.client import DeltaServeClient
from clients.errors import DeltaServeClientError
from clients.types import PipelineResult

__all__ = ["client_factory", "parse_step"]

# Builds the client for each command; tests swap in one that sends through an httpx.MockTransport.
client_factory: Callable[..., DeltaServeClient] = DeltaServeClient

GENERATION_FLAGS = ("max_new_tokens", "temperature", "top_p", "top_k", "seed", "stop")
# The optional metadata file beside a saved adapter ({"description": ..., "prompt_template": ...}); the server's
# demo install reads the same file (service/peft_format.py; a test keeps the two names equal).
METADATA_FILE = "deltaserve.json"

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad input on the command line or in a file it names (exit status 2)."""


def client_command(run: Handler) -> Handler:
    """`run` with the client's failures turned into a message on stderr and an exit status."""

    @functools.wraps(run)
    def handler(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except DeltaServeClientError as exc:
            print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        except httpx.HTTPError as exc:
            try:
                where = f" {exc.request.url}"
            except RuntimeError:  # no request attached
                where = ""
            print(f"error: connection: {type(exc).__name__}{where}: {exc}", file=sys.stderr)
            return 1
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return handler


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _read_text(text: str) -> str:
    """A TEXT argument; "-" reads standard input."""
    return sys.stdin.read() if text == "-" else text


def _client(args: argparse.Namespace) -> DeltaServeClient:
    options: dict[str, Any] = {
        "base_url": getattr(args, "url", None),
        "api_key": getattr(args, "api_key", None),
        "admin_key": getattr(args, "admin_key", None),
    }
    if getattr(args, "timeout", None) is not None:
        options["timeout"] = args.timeout
    return client_factory(**options)


def _generation(args: argparse.Namespace) -> dict[str, Any]:
    return {name: value for name in GENERATION_FLAGS if (value := getattr(args, name, None)) is not None}


# --- generate ------------------------------------------------------------------------------------------------------


@client_command
def cmd_generate(args: argparse.Namespace) -> int:
    texts = [_read_text(text) for text in args.text]
    params = _generation(args)
    with _client(args) as client:
        if len(texts) == 1:
            result = client.generate(texts[0], adapter=args.adapter, **params)
            if args.json:
                _print_json(result.raw)
            else:
                print(result.text)
            return 0
        results = client.generate_many(texts, adapter=args.adapter, **params)
    if args.json:
        _print_json({"adapter": args.adapter, "outputs": [result.raw for result in results]})
    else:
        for result in results:
            print(result.text)
    return 0


# --- adapters ------------------------------------------------------------------------------------------------------


def _folder_metadata(path: str) -> dict[str, Any]:
    """The folder's deltaserve.json (description, prompt_template), as the demo adapters carry, if it has one."""
    file = Path(path) / METADATA_FILE
    if not file.is_file():
        return {}
    try:
        metadata = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{file} is not readable JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise UsageError(f"{file} must hold a JSON object")
    return metadata


@client_command
def cmd_adapters_upload(args: argparse.Namespace) -> int:
    metadata = _folder_metadata(args.path)  # flags given win over it
    description = args.description if args.description is not None else metadata.get("description")
    template = args.prompt_template if args.prompt_template is not None else metadata.get("prompt_template")
    with _client(args) as client:
        try:
            record = client.upload_adapter(args.name, args.path, description=description, prompt_template=template)
        except (OSError, ValueError) as exc:  # the path is not an adapter directory or archive
            raise UsageError(str(exc)) from exc
    if args.json:
        _print_json(record.raw)
    else:
        print(
            f"uploaded {record.name}: {record.kind}, {record.parameters} parameters, "
            f"version {record.version}, sha256 {record.sha256}"
        )
    return 0


@client_command
def cmd_adapters_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        records = client.list_adapters()
    if args.json:
        _print_json({"adapters": [record.raw for record in records]})
        return 0
    rows = [("NAME", "KIND", "VERSION", "PARAMETERS", "DESCRIPTION")]
    rows += [(r.name, r.kind, str(r.version), str(r.parameters), r.description or "") for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print(("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4]).rstrip())
    return 0


@client_command
def cmd_adapters_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_json(client.get_adapter(args.name).raw)
    return 0


@client_command
def cmd_adapters_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete_adapter(args.name)
    print(f"deleted adapter {args.name}")
    return 0


# --- pipelines -----------------------------------------------------------------------------------------------------


def parse_step(value: str) -> dict[str, Any]:
    """`NAME=ADAPTER[:INPUT]`: an empty ADAPTER means the base model; INPUT is a template such as "{spelling}"."""
    name, sep, rest = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=ADAPTER[:INPUT], got {value!r}")
    adapter, sep, template = rest.partition(":")
    step: dict[str, Any] = {"name": name, "adapter": adapter or None}
    if sep:
        step["input"] = template
    return step


def _definition(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline from --step flags or --file (a JSON object {"steps": [...], "description": ...} or a list)."""
    if args.file is None:
        return {"steps": list(args.step or [])}
    try:
        with open(args.file, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read pipeline file {args.file}: {exc}") from exc
    if isinstance(data, list):
        data = {"steps": data}
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise UsageError(f"{args.file}: expected a JSON list of steps or an object with a \"steps\" list")
    return data


def _print_pipeline_result(result: PipelineResult, as_json: bool) -> None:
    if as_json:
        _print_json(result.raw)
    else:
        print(result.output)


@client_command
def cmd_pipeline_run(args: argparse.Namespace) -> int:
    params = _generation(args)
    steps = [{**params, **step} for step in _definition(args)["steps"]]  # a step's own settings win
    with _client(args) as client:
        result = client.run_pipeline(_read_text(args.text), steps)
    _print_pipeline_result(result, args.json)
    return 0


@client_command
def cmd_pipeline_put(args: argparse.Namespace) -> int:
    definition = _definition(args)
    description = args.description if args.description is not None else definition.get("description")
    with _client(args) as client:
        record = client.put_pipeline(args.name, definition["steps"], description=description)
    print(f"saved pipeline {record.name}: {' -> '.join(step.get('name', '?') for step in record.steps)}")
    return 0


@client_command
def cmd_pipeline_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        records = client.list_pipelines()
    if args.json:
        _print_json({"pipelines": [record.raw for record in records]})
        return 0
    for record in records:
        steps = " -> ".join(f"{s.get('name')}({s.get('adapter') or 'base'})" for s in record.steps)
        print(f"{record.name}\t{steps}\t{record.description or ''}".rstrip())
    return 0


@client_command
def cmd_pipeline_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_json(client.get_pipeline(args.name).raw)
    return 0


@client_command
def cmd_pipeline_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete_pipeline(args.name)
    print(f"deleted pipeline {args.name}")
    return 0


@client_command
def cmd_pipeline_run_named(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.run_named_pipeline(args.name, _read_text(args.text))
    _print_pipeline_result(result, args.json)
    return 0
