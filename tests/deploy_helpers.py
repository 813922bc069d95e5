"""Read the deployment files, so tests run exactly what the image runs.

`dockerfile_cmd()` is the Dockerfile's CMD (exec form) as a list; `local_serve_command(port=...)` is that same
command made runnable outside Docker (`python -m deltaserve`, another port), and `local_env()` the environment
that makes it import this checkout.
"""

from __future__ import annotations

import json
import os
import re
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


# -- compose.yaml, checked without Docker ----------------------------------------------------------------
# What `docker compose config` refuses in a file like ours, checked in Python so that machines without Docker
# (our CI) check it too: keys the Compose specification does not know, malformed values, named volumes that
# are not declared, and `${...}` interpolation, including `${VAR:?message}` failing when VAR is unset.
COMPOSE_TOP_LEVEL_KEYS = {
    "version", "name", "include", "services", "networks", "volumes", "configs", "secrets", "models",
}
COMPOSE_SERVICE_KEYS = {
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup", "cgroup_parent", "command",
    "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period",
    "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec", "depends_on", "deploy", "develop",
    "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "env_file",
    "environment", "expose", "extends", "external_links", "extra_hosts", "gpus", "group_add", "healthcheck",
    "hostname", "image", "init", "ipc", "isolation", "label_file", "labels", "links", "logging", "mac_address",
    "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit", "models", "network_mode", "networks",
    "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform", "ports", "post_start", "pre_stop",
    "privileged", "profiles", "provider", "pull_policy", "read_only", "restart", "runtime", "scale", "secrets",
    "security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs",
    "tty", "ulimits", "use_api_socket", "user", "userns_mode", "uts", "volumes", "volumes_from", "working_dir",
}
COMPOSE_HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}
COMPOSE_DEVICE_KEYS = {"driver", "count", "device_ids", "capabilities", "options"}
COMPOSE_RESTART = re.compile(r"no|always|unless-stopped|on-failure(:\d+)?")
COMPOSE_DURATION = re.compile(r"(\d+(\.\d+)?(h|m|s|ms|us|ns))+")
COMPOSE_PORT = re.compile(r"((\d{1,3}(\.\d{1,3}){3}):)?(\d{1,5}(-\d{1,5})?:)?\d{1,5}(-\d{1,5})?(/(tcp|udp|sctp))?")
# $$ | ${NAME} or ${NAME<op>argument} with op one of - :- ? :? + :+ | $NAME | a lone $ (an error)
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|(?P<bad>))"
)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation of one string; ValueError where compose would stop."""

    def substitute(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("bad") is not None:
            raise ValueError(f"invalid interpolation in {value!r}: a '$' that starts no variable (write '$$')")
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in env
        usable = present and (env[name] != "" or not (op or "").startswith(":"))
        if op in (":-", "-"):
            return env[name] if usable else arg
        if op in (":?", "?"):
            if not usable:
                raise ValueError(f"required variable {name} is missing a value: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if usable else ""
        return env.get(name, "")

    return _INTERPOLATION.sub(substitute, value)


def interpolate_all(node: object, env: dict[str, str]) -> object:
    """Every string of a parsed compose file interpolated, as compose does before reading the file."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: interpolate_all(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_all(value, env) for value in node]
    return node


def compose_problems(compose: dict) -> list[str]:
    """What is wrong with a parsed, interpolated compose file (YAML anchors and `<<` merges already resolved)."""
    problems: list[str] = []

    def unknown(keys: object, known: set[str], where: str) -> None:
        for key in keys if isinstance(keys, dict) else []:
            if key not in known and not str(key).startswith("x-"):
                problems.append(f"{where}: unknown key {key!r}")

    unknown(compose, COMPOSE_TOP_LEVEL_KEYS, "top level")
    services = compose.get("services")
    if not isinstance(services, dict) or not services:
        return [*problems, "top level: no services"]
    named_volumes = compose.get("volumes") or {}
    if not isinstance(named_volumes, dict):
        problems.append("top level: volumes must be a mapping")
        named_volumes = {}
    for name, service in services.items():
        where = f"services.{name}"
        if not isinstance(service, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        unknown(service, COMPOSE_SERVICE_KEYS, where)
        if "image" not in service and "build" not in service:
            problems.append(f"{where}: needs an image or a build")
        for port in service.get("ports", []):
            if not (isinstance(port, (str, int)) and COMPOSE_PORT.fullmatch(str(port))):
                problems.append(f"{where}.ports: {port!r} is not a port mapping")
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source, _, target = volume.partition(":")
                if not target.startswith("/"):
                    problems.append(f"{where}.volumes: {volume!r} has no absolute container path")
                if not source.startswith((".", "/", "~")) and source not in named_volumes:
                    problems.append(f"{where}.volumes: named volume {source!r} is not declared under top-level volumes")
        environment = service.get("environment", {})
        if isinstance(environment, dict):
            for key, value in environment.items():
                if value is not None and not isinstance(value, (str, int, float, bool)):
                    problems.append(f"{where}.environment.{key}: {value!r} is not a scalar")
        elif not (isinstance(environment, list) and all(isinstance(item, str) for item in environment)):
            problems.append(f"{where}.environment: must be a mapping or a list of KEY=VALUE strings")
        restart = service.get("restart")
        if restart is not None and not COMPOSE_RESTART.fullmatch(str(restart)):
            problems.append(f"{where}.restart: {restart!r} is not a restart policy")
        profiles = service.get("profiles", [])
        if not (isinstance(profiles, list) and all(isinstance(p, str) for p in profiles)):
            problems.append(f"{where}.profiles: must be a list of names")
        healthcheck = service.get("healthcheck")
        if healthcheck is not None:
            unknown(healthcheck, COMPOSE_HEALTHCHECK_KEYS, f"{where}.healthcheck")
            test = healthcheck.get("test")
            exec_form = isinstance(test, list) and bool(test) and test[0] in ("NONE", "CMD", "CMD-SHELL")
            if not (isinstance(test, str) or exec_form):
                problems.append(f"{where}.healthcheck.test: {test!r} must be a string or [CMD|CMD-SHELL|NONE, ...]")
            for key in ("interval", "timeout", "start_period", "start_interval"):
                if key in healthcheck and not COMPOSE_DURATION.fullmatch(str(healthcheck[key])):
                    problems.append(f"{where}.healthcheck.{key}: {healthcheck[key]!r} is not a duration")
            if "retries" in healthcheck and not isinstance(healthcheck["retries"], int):
                problems.append(f"{where}.healthcheck.retries: must be a whole number")
        devices = (((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices", [])
        for device in devices:
            unknown(device, COMPOSE_DEVICE_KEYS, f"{where}.deploy.resources.reservations.devices")
            if not isinstance(device.get("capabilities"), list):
                problems.append(f"{where}: a device reservation needs a list of capabilities")
    return problems
