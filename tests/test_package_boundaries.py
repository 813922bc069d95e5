"""Which package may import which: the server never imports the client, the client never imports the server or
torch, and the `deltaserve` command's parser imports neither torch nor the app (only `serve` does, when it runs)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from clients import cli as client_cli
from service import peft_format
from tests.deploy_helpers import REPO_ROOT, local_env


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function, also through importlib.import_module("...")."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def package_imports(package: str) -> dict[str, set[str]]:
    return {str(path.relative_to(REPO_ROOT)): imported_modules(path) for path in (REPO_ROOT / package).rglob("*.py")}


def reaches(names: set[str], package: str) -> set[str]:
    return {name for name in names if name == package or name.startswith(package + ".")}


def test_the_server_never_imports_the_client() -> None:
    offenders = {file: reaches(names, "clients") for file, names in package_imports("service").items()}
    assert {file: names for file, names in offenders.items() if names} == {}


def test_the_client_never_imports_the_server() -> None:
    offenders = {file: reaches(names, "service") | reaches(names, "torch")
                 for file, names in package_imports("clients").items()}
    assert {file: names for file, names in offenders.items() if names} == {}


def test_nothing_below_the_routes_imports_them() -> None:
    """Routes call the service layer, never the other way round; only the app factory mounts them."""
    offenders = {file: reaches(names, "service.api") for file, names in package_imports("service").items()
                 if not file.startswith("service/api/") and file != "service/main.py"
                 and not file.startswith("service/ray_serve/")}  # the Ray router also answers HTTP itself
    assert {file: names for file, names in offenders.items() if names} == {}


# What the engine and the store may use of the rest of the service: errors, settings and file formats.
SHARED_BELOW_THE_SERVICE = ("service.errors", "service.config", "service.json_limits", "service.peft_format")


@pytest.mark.parametrize(("package", "own"), [("service/engine", "service.engine"), ("service/store", "service.store")])
def test_the_engine_and_store_know_nothing_of_the_service_layer(package: str, own: str) -> None:
    allowed = (own, *SHARED_BELOW_THE_SERVICE)
    offenders = {
        file: {name for name in reaches(names, "service") if not any(reaches({name}, a) for a in allowed)}
        for file, names in package_imports(package).items()
    }
    assert {file: names for file, names in offenders.items() if names} == {}


def test_the_import_scan_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("import importlib\ndef f():\n    from clients.cli import main\n"
                      "    return importlib.import_module('clients.types')\n")
    assert reaches(imported_modules(module), "clients") == {"clients.cli", "clients.types"}


def test_only_the_ray_package_imports_ray() -> None:
    """Ray is an optional extra: the service, the command and the client work without it."""
    offenders = {file: reaches(names, "ray") | reaches(names, "service.ray_serve")
                 for package in ("service", "clients", "deltaserve") for file, names in package_imports(package).items()
                 if not file.startswith("service/ray_serve/")}
    offenders["service/cli.py"] -= {"service.ray_serve"}  # `serve --replicas` imports it when it runs
    assert {file: names for file, names in offenders.items() if names} == {}


@pytest.mark.parametrize(("code", "forbidden"), [
    ("import clients, clients.cli", ("torch", "service", "uvicorn", "pydantic_settings")),
    ("from deltaserve.cli import build_parser; build_parser()", ("torch", "service.main", "service.engine", "uvicorn")),
    ("import service.main, service.state", ("ray",)),
], ids=["client", "command-parser", "app-without-ray"])
def test_what_an_import_pulls_in(code: str, forbidden: tuple[str, ...]) -> None:
    """In a fresh interpreter: a client-only user needs no torch; `deltaserve --help` loads no model code."""
    check = (f"{code}\nimport sys\n"
             f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r} or m in {forbidden!r})\n"
             "print(','.join(loaded))")
    done = subprocess.run([sys.executable, "-c", check], check=False, capture_output=True, text=True, env=local_env(),
                          cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_metadata_file_name_is_the_servers() -> None:
    """The client reads the same optional deltaserve.json beside an adapter as the server's demo install."""
    assert client_cli.METADATA_FILE == peft_format.METADATA_FILE
