"""`Settings` is the one list of settings: every field but the secrets is a `serve` flag whose help is the field's
description, and the README's Settings table lists exactly the fields, with their defaults."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest

from deltaserve.cli import build_parser
from service.config import Settings
from service.settings_flags import default_text, env_name, flag, settings_from_flags

README = Path(__file__).resolve().parents[1] / "README.md"
SECRETS = ("admin_key", "api_keys")  # environment only
NOT_SECRET = [name for name in Settings.model_fields if name not in SECRETS]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DELTASERVE_"):
            monkeypatch.delenv(name)


def subcommand(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = commands.choices[name]
    return parser


def flags_of(command: str) -> dict[str, argparse.Action]:
    """The settings flags of a subcommand, by field name."""
    return {action.dest: action for action in subcommand(command)._actions if action.dest in Settings.model_fields}


def other_value(name: str, tmp_path: Path) -> tuple[list[str], Any]:
    """Command-line words that set field `name` to a value other than its default, and that value."""
    field = Settings.model_fields[name]
    default = field.get_default(call_default_factory=True)
    annotation = field.annotation
    if annotation is bool:
        return ([f"--no-{flag(name)[2:]}"] if default else [flag(name)]), not default
    if get_origin(annotation) is Literal:
        choice = next(choice for choice in get_args(annotation) if choice != default)
        return [flag(name), choice], choice
    if get_origin(annotation) is list:
        return [flag(name), "a, b"], ["a", "b"]
    if annotation is Path:
        return [flag(name), str(tmp_path / name)], tmp_path / name
    if annotation is int:
        value = default + 1 if name != "port" else 8123
        return [flag(name), str(value)], value
    if annotation is float:
        return [flag(name), str(default + 0.5)], default + 0.5
    return [flag(name), "something-else"], "something-else"  # str, str | None


@pytest.mark.parametrize("name", NOT_SECRET)
def test_every_setting_but_the_secrets_is_a_serve_flag(name: str, tmp_path: Path) -> None:
    words, value = other_value(name, tmp_path)
    assert value != Settings.model_fields[name].get_default(call_default_factory=True)
    settings = settings_from_flags(build_parser().parse_args(["serve", *words]))
    assert getattr(settings, name) == value


def test_flags_cover_every_field_but_the_secrets() -> None:
    assert set(flags_of("serve")) == set(NOT_SECRET)
    assert set(flags_of("prepare-model")) == {"base_model", "cache_dir"}


@pytest.mark.parametrize("secret", SECRETS)
def test_secrets_are_not_flags(secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", flag(secret), "x"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_flags_left_out_keep_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTASERVE_MIXED_BATCHES", "false")
    monkeypatch.setenv("DELTASERVE_PINNED_ADAPTERS", "x,y")
    monkeypatch.setenv("DELTASERVE_HEADER_TIMEOUT_S", "2.5")
    settings = settings_from_flags(build_parser().parse_args(["serve", "--header-timeout-s", "4"]))
    assert (settings.mixed_batches, settings.pinned_adapters, settings.header_timeout_s) == (False, ["x", "y"], 4.0)
    settings = settings_from_flags(build_parser().parse_args(["serve", "--mixed-batches"]))
    assert settings.mixed_batches is True


def test_literal_settings_take_only_their_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--decode", "graphs"])
    assert "invalid choice: 'graphs'" in capsys.readouterr().err


@pytest.mark.parametrize("name", NOT_SECRET)
def test_help_is_the_description_the_variable_and_the_default(name: str) -> None:
    help_text = flags_of("serve")[name].help or ""
    default = default_text(name)
    assert help_text.replace("%%", "%") == (
        f"{Settings.model_fields[name].description} (env {env_name(name)}; default {default or 'unset'})"
    )


# --- the README's Settings table -----------------------------------------------------------------------------


def readme_settings_rows() -> dict[str, tuple[str, str]]:
    """{FIELD_NAME: (default cell, meaning cell)} from the table under "## Settings"."""
    section = README.read_text(encoding="utf-8").split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| `([A-Z0-9_]+)` \| (.*?) \| (.*) \|", line.strip())
        if match:
            name, default, meaning = match.groups()
            assert name not in rows, f"{name} is listed twice"
            rows[name] = (default, meaning)
    return rows


def test_readme_lists_every_setting_once() -> None:
    assert sorted(readme_settings_rows()) == sorted(name.upper() for name in Settings.model_fields)


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_readme_gives_the_default_and_the_description(name: str) -> None:
    default_cell, meaning = readme_settings_rows()[name.upper()]
    default = default_text(name)
    expected = f"`{default}`" if default is not None else "unset"
    # The cell may say more after the value, e.g. "`268435456` (256 MiB)".
    assert default_cell == expected or default_cell.startswith(expected + " "), (default_cell, expected)
    description = Settings.model_fields[name].description or ""
    assert meaning == description or meaning.startswith(description + " "), (meaning, description)
