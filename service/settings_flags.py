"""`Settings` fields as command-line flags, so that a setting is declared once (in service/config.py).

Every field becomes `--field-name` (`--x/--no-x` for a bool, the choices of a Literal, comma-separated values for
a list), with its help made from the field's description, its environment variable and its default; the
secrets stay environment-only. A flag left out keeps the value from `DELTASERVE_*` (or the default), a flag given
wins over it.

Why argparse flags generated here rather than pydantic-settings' own CLI source: the `deltaserve` command is an
argparse tree shared with the client commands, and the CLI source would take over parsing for the whole
`Settings` model. Keeping the secrets out of it needs `CliSuppress` markers inside `Settings`; a Literal becomes a
metavar checked later by pydantic rather than argparse choices; and a bad value is a `SettingsError` instead of
an ordinary usage error. Generating the ~40 lines here keeps `Settings` free of CLI concerns and the flags
exactly as the command had them (`--no-mixed-batches`, `--dtype {auto,...}`).
"""

from __future__ import annotations

import argparse
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from service.config import Settings

__all__ = ["ENV_ONLY", "FLAG_FIELDS", "add_settings_flags", "default_text", "env_name", "flag", "settings_from_flags"]

ENV_PREFIX = "DELTASERVE_"
# Secrets: a flag would show them to everyone on the machine (`ps`) and keep them in shell history.
ENV_ONLY = frozenset({"admin_key", "api_keys"})
FLAG_FIELDS: tuple[str, ...] = tuple(name for name in Settings.model_fields if name not in ENV_ONLY)
# Spellings the command had before its flags were derived from the field names; they keep working.
FLAG_ALIASES: dict[str, tuple[str, ...]] = {"load_demo_adapters": ("--demo-adapters",)}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def default_text(name: str) -> str | None:
    """The field's default as one would write it in its environment variable; None when it is unset (None or an
    empty list). A path under the home directory is written with `~`."""
    value = Settings.model_fields[name].get_default(call_default_factory=True)
    if value is None or value == []:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Path) and value.is_relative_to(Path.home()):
        return str(Path("~") / value.relative_to(Path.home()))
    return str(value)


def _comma_separated(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _without_none(annotation: Any) -> Any:
    """`X | None` -> X."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _argument(name: str) -> dict[str, Any]:
    """add_argument's keywords for one field: how its values are read, and its help."""
    field = Settings.model_fields[name]
    default = default_text(name)
    help_text = f"{field.description} (env {env_name(name)}; default {default if default is not None else 'unset'})"
    # default=SUPPRESS: a flag not given leaves no attribute, so the environment keeps its say.
    keywords: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text.replace("%", "%%")}
    annotation = _without_none(field.annotation)
    if annotation is bool:
        return {**keywords, "action": argparse.BooleanOptionalAction}
    if get_origin(annotation) is Literal:
        return {**keywords, "choices": get_args(annotation)}
    if get_origin(annotation) is list:
        return {**keywords, "type": _comma_separated, "metavar": "A,B,..."}
    if annotation in (str, int, float, Path):
        return {**keywords, "type": annotation}
    raise TypeError(f"Settings.{name}: no command-line form for {field.annotation!r}; add one in {__name__}")


def add_settings_flags(parser: argparse.ArgumentParser, names: tuple[str, ...] = FLAG_FIELDS) -> None:
    """One flag per named field (every field but the secrets by default), in one help group."""
    group = parser.add_argument_group("settings (each also DELTASERVE_<NAME>; a flag given wins)")
    for name in names:
        if name in ENV_ONLY:
            raise ValueError(f"{name} is a secret: it is read from {env_name(name)} only")
        group.add_argument(flag(name), *FLAG_ALIASES.get(name, ()), **_argument(name))


def settings_from_flags(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the settings flags that were given. Raises pydantic's
    ValidationError for a bad value."""
    overrides = {name: getattr(args, name) for name in FLAG_FIELDS if hasattr(args, name)}
    return Settings(**overrides)
