"""The client half of the `deltaserve` command: talk to a running server through `DeltaServeClient`.

    deltaserve generate [--adapter A ...] TEXT        generate with one adapter (or the base model)
    deltaserve adapters upload|list|show|delete       manage the adapter store
    deltaserve pipeline run|put|list|show|delete|run-named   chain adapters

`add_client_commands` adds these to the `deltaserve` parser (built in `deltaserve.cli`, next to the server's
commands); `connection_options` is the --url/--api-key/--admin-key/--timeout group they share. The clients are
made by the module-level `client_factory` (tests replace it). Exit status: 0 on success, 1 when the server answers
with an error or cannot be reached, 2 for bad input.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from clients.client import DeltaServeClient
from clients.errors import DeltaServeClientError
from clients.types import PipelineResult

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_client_commands", "client_factory", "connection_options", "parse_step"]

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


# --- parsers -------------------------------------------------------------------------------------------------------

PIPELINE_HELP = """\
A pipeline is a list of steps, each run with one adapter. Give the steps as repeated
  --step NAME=ADAPTER[:INPUT]
(an empty ADAPTER means the base model; INPUT, optional, is a template over the pipeline's text and the
earlier steps' outputs, e.g. "{spelling}"), or as --file DEF.json holding
  {"steps": [{"name": "spelling", "adapter": "spell-fix"},
             {"name": "tone", "adapter": "formal", "input": "{spelling}", "max_new_tokens": 64}],
   "description": "fix spelling, then make it formal"}
(a bare list of steps works too). `run` prints the last step's output; --json prints every step."""


def connection_options() -> argparse.ArgumentParser:
    """--url/--api-key/--admin-key/--timeout, as a parent parser: give it to the top-level parser too, so they are
    accepted before or after the command (their SUPPRESS default keeps whichever was given)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("server connection")
    group.add_argument(
        "--url", default=argparse.SUPPRESS, help="server URL (env DELTASERVE_URL; default http://127.0.0.1:8000)"
    )
    group.add_argument("--api-key", default=argparse.SUPPRESS, help="key for inference (env DELTASERVE_API_KEY)")
    group.add_argument("--admin-key", default=argparse.SUPPRESS, help="key for writes (env DELTASERVE_ADMIN_KEY)")
    group.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="seconds to wait (default 300)")
    return parent


def _generation_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("generation (left out: the server's defaults)")
    group.add_argument("--max-new-tokens", type=int)
    group.add_argument("--temperature", type=float, help="0 means greedy")
    group.add_argument("--top-p", type=float)
    group.add_argument("--top-k", type=int)
    group.add_argument("--seed", type=int)
    group.add_argument("--stop", action="append", metavar="S", help="stop string (repeatable)")
    return parent


def _add_generate(commands: Commands, connection: argparse.ArgumentParser,
                  generation: argparse.ArgumentParser) -> None:
    generate = commands.add_parser(
        "generate", parents=[connection, generation], help="generate text",
        description="Generate text with an adapter (or the base model). Several TEXTs go as one batch request; "
        "TEXT '-' reads standard input.",
    )
    generate.add_argument("--adapter", help="adapter name (default: the base model)")
    generate.add_argument("--json", action="store_true", help="print the server's full JSON answer")
    generate.add_argument("text", nargs="+", metavar="TEXT")
    generate.set_defaults(handler=cmd_generate)


def _add_adapters(commands: Commands, connection: argparse.ArgumentParser) -> None:
    adapters = commands.add_parser("adapters", help="manage adapters", description="Manage the adapter store.")
    adapter_commands = adapters.add_subparsers(title="adapter commands", metavar="COMMAND", required=True)
    upload = adapter_commands.add_parser(
        "upload", parents=[connection], help="upload (or replace) an adapter",
        description="Upload an adapter: PATH is a directory saved by PEFT (adapter_config.json and "
        "adapter_model.safetensors) or a .zip / .tar.gz archive of one. A directory's deltaserve.json "
        "({\"description\": ..., \"prompt_template\": ...}) fills in the flags not given. Needs the admin key.",
    )
    upload.add_argument("name", metavar="NAME")
    upload.add_argument("path", metavar="PATH")
    upload.add_argument("--description")
    upload.add_argument(
        "--prompt-template",
        help="template for this adapter's inputs, {text} marks the input (for newlines in bash: $'Q: {text}\\nA:')",
    )
    upload.add_argument("--json", action="store_true", help="print the adapter record as JSON")
    upload.set_defaults(handler=cmd_adapters_upload)
    listing = adapter_commands.add_parser("list", parents=[connection], help="list adapters")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_adapters_list)
    for verb, handler, text in (("show", cmd_adapters_show, "print one adapter's record as JSON"),
                                ("delete", cmd_adapters_delete, "delete an adapter (admin key)")):
        sub = adapter_commands.add_parser(verb, parents=[connection], help=text)
        sub.add_argument("name", metavar="NAME")
        sub.set_defaults(handler=handler)


def _add_pipeline(commands: Commands, connection: argparse.ArgumentParser,
                  generation: argparse.ArgumentParser) -> None:
    pipeline = commands.add_parser(
        "pipeline", help="chain adapters", description=PIPELINE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pipeline_commands = pipeline.add_subparsers(title="pipeline commands", metavar="COMMAND", required=True)

    def with_definition(sub: argparse.ArgumentParser) -> None:
        source = sub.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--step", type=parse_step, action="append", metavar="NAME=ADAPTER[:INPUT]", help="a step (repeatable)"
        )
        source.add_argument("--file", metavar="DEF.json", help="pipeline definition (JSON)")

    run = pipeline_commands.add_parser(
        "run", parents=[connection, generation], help="run steps given here",
        description=PIPELINE_HELP + "\nGeneration flags apply to every step that does not set its own.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    with_definition(run)
    run.add_argument("--json", action="store_true", help="print every step's result as JSON")
    run.add_argument("text", metavar="TEXT")
    run.set_defaults(handler=cmd_pipeline_run)
    put = pipeline_commands.add_parser(
        "put", parents=[connection], help="save a named pipeline (admin key)",
        description=PIPELINE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    put.add_argument("name", metavar="NAME")
    with_definition(put)
    put.add_argument("--description", help="overrides the file's description")
    put.set_defaults(handler=cmd_pipeline_put)
    plist = pipeline_commands.add_parser("list", parents=[connection], help="list saved pipelines")
    plist.add_argument("--json", action="store_true")
    plist.set_defaults(handler=cmd_pipeline_list)
    for verb, handler, text in (("show", cmd_pipeline_show, "print a saved pipeline as JSON"),
                                ("delete", cmd_pipeline_delete, "delete a saved pipeline (admin key)")):
        sub = pipeline_commands.add_parser(verb, parents=[connection], help=text)
        sub.add_argument("name", metavar="NAME")
        sub.set_defaults(handler=handler)
    named = pipeline_commands.add_parser("run-named", parents=[connection], help="run a saved pipeline")
    named.add_argument("name", metavar="NAME")
    named.add_argument("--json", action="store_true", help="print every step's result as JSON")
    named.add_argument("text", metavar="TEXT")
    named.set_defaults(handler=cmd_pipeline_run_named)


def add_client_commands(commands: Commands, connection: argparse.ArgumentParser) -> None:
    """Add `generate`, `adapters …` and `pipeline …` to `commands`; each sets `handler` (Namespace -> exit status)."""
    generation = _generation_options()
    _add_generate(commands, connection, generation)
    _add_adapters(commands, connection)
    _add_pipeline(commands, connection, generation)
