"""Adapter and pipeline names: one rule, checked in one place."""

from __future__ import annotations

import re

from service.errors import InvalidName

# Lower-case so names are the same on case-insensitive filesystems; the first character
# cannot be "." so a name can never be ".", "..", or one of the store's hidden folders.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
NAME_RULE = (
    "a name is 1 to 64 characters: lower-case letters, digits, '.', '_' or '-', "
    "starting with a letter or digit"
)


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def validate_name(name: object) -> str:
    """Return `name` unchanged if it follows the rule, else raise InvalidName saying the rule."""
    if not is_valid_name(name):
        raise InvalidName(f"invalid name {name!r}: {NAME_RULE}")
    return name  # type: ignore[return-value]
