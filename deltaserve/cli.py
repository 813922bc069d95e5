"""The `deltaserve` command: one parser holding the server's commands and the client's.

    deltaserve serve | prepare-model                    service/cli.py      (settings flags, bind policy, uvicorn)
    deltaserve generate | adapters ... | pipeline ...   clients/cli.py      (DeltaServeClient against a server)

Why a third, tiny package composes them rather than one half importing the other: the server package must not
import the client (it is a library the server does not need), and the client must not import the server (a
client-only user needs no torch, no pydantic-settings, no uvicorn). Here each half only adds its subcommands to
the one parser, and each subcommand's handler turns its own failures into an exit status, so this module knows
neither half's internals. Building the parser imports neither torch nor the app: `deltaserve --help` and every
client command stay fast, and `serve` imports the server stack when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clients.cli_parsers import add_client_commands, connection_options
from service.cli import add_server_commands

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    connection = connection_options()
    parser = argparse.ArgumentParser(
        prog="deltaserve",
        description="Serve many PEFT adapters on one frozen base model, and talk to a running server.",
        parents=[connection],  # so --url etc. may also come before the command
        epilog="Settings for serve/prepare-model come from DELTASERVE_* environment variables; flags override them.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_server_commands(commands)
    add_client_commands(commands, connection)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 on success, 1 when a server answers with an error or cannot be reached, 2 for a usage error,
    3 when `serve` could not start."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    status: int = handler(args)
    return status
