"""Read the deployment files, so tests run exactly what the image runs.

`dockerfile_cmd()` is the Dockerfile's CMD (exec form) as a list; `local_serve_command(port=...)` is that same
command made runnable outside Docker (`python -m deltaserve`, another port), and `local_env()` the environment
that makes it import this checkout.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE_FILE = REPO_ROOT / "compose.yaml"


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, backslash continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, also inside a continuation
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    if pending:
        raise ValueError(f"{path}: the last instruction ends with a line continuation")
    return instructions


def _exec_form(arguments: str, what: str) -> list[str]:
    try:
        argv = json.loads(arguments)
    except ValueError as exc:
        raise ValueError(f"{what} is not in exec (JSON) form: {arguments}") from exc
    if not (isinstance(argv, list) and argv and all(isinstance(arg, str) for arg in argv)):
        raise ValueError(f"{what} is not a JSON list of strings: {arguments}")
    return argv


def dockerfile_cmd(path: Path = DOCKERFILE) -> list[str]:
    """The command the container runs: the last CMD, which must be in exec form."""
    cmds = [arguments for keyword, arguments in dockerfile_instructions(path) if keyword == "CMD"]
    if not cmds:
        raise ValueError(f"{path} has no CMD")
    return _exec_form(cmds[-1], "CMD")


def dockerfile_healthcheck(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options (--interval=30s -> {"interval": "30s"}) and its command in exec form."""
    checks = [arguments for keyword, arguments in dockerfile_instructions(path) if keyword == "HEALTHCHECK"]
    if not checks:
        raise ValueError(f"{path} has no HEALTHCHECK")
    options, sep, command = checks[-1].partition("CMD ")
    if not sep:
        raise ValueError(f"HEALTHCHECK without CMD: {checks[-1]}")
    parsed = dict(option.removeprefix("--").split("=", 1) for option in shlex.split(options))
    return parsed, _exec_form(command, "HEALTHCHECK CMD")


def dockerfile_env(path: Path = DOCKERFILE) -> dict[str, str]:
    """Variables set by ENV KEY=VALUE instructions (later ones win)."""
    env: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions(path):
        if keyword == "ENV":
            for item in shlex.split(arguments):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"use ENV KEY=VALUE, not the legacy form: {arguments}")
                env[key] = value
    return env


def with_option(argv: list[str], flag: str, value: str) -> list[str]:
    """argv with `flag`'s value replaced (or the flag appended when it is absent)."""
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


def local_command(argv: list[str]) -> list[str]:
    """A container command made runnable here: `deltaserve` becomes `python -m deltaserve`, which runs the console
    script's own `main` (tests/test_deploy_files.py checks that). Not the installed script itself: an editable
    install's script was generated from the pyproject of the checkout it was installed from, which need not be
    this one. Run it with `local_env()`."""
    if argv[0] != "deltaserve":
        return list(argv)
    return [sys.executable, "-m", "deltaserve", *argv[1:]]


def local_env(base: dict[str, str] | None = None, **variables: str) -> dict[str, str]:
    """`base` (default: this process's environment) plus `variables`, with this checkout first on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(variables)
    return env


def local_serve_command(port: int | None = None, host: str | None = None) -> list[str]:
    """The Dockerfile's CMD, runnable outside Docker, optionally on another port or host."""
    argv = dockerfile_cmd()
    if port is not None:
        argv = with_option(argv, "--port", str(port))
    if host is not None:
        argv = with_option(argv, "--host", host)
    return local_command(argv)
