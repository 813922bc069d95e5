"""The client commands' argument parsers: `add_client_commands` adds `generate`, `adapters …` and `pipeline …`
to the `deltaserve` parser, each with its handler from cli.py; `connection_options` is the
--url/--api-key/--admin-key/--timeout group they share."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from clients.cli import (
    cmd_adapters_delete,
    cmd_adapters_list,
    cmd_adapters_show,
    cmd_adapters_upload,
    cmd_generate,
    cmd_pipeline_delete,
    cmd_pipeline_list,
    cmd_pipeline_put,
    cmd_pipeline_run,
    cmd_pipeline_run_named,
    cmd_pipeline_show,
    parse_step,
)

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_client_commands", "connection_options"]

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
        "adapter_model.safetensors) or by AdapterHub's save_adapter (adapter_config.json and adapter.safetensors; "
        "a head beside them is not sent), or a .zip / .tar.gz archive of one. A directory's deltaserve.json "
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
