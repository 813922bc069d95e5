"""PEFT's rules for which base modules an adapter config names, with every regex from the config bounded.

This mirrors, rule for rule, what PEFT (0.21) runs when it builds an adapter on a base model:
`peft.tuners.tuners_utils.check_target_module_exists` (target_modules, exclude_modules,
layers_to_transform, layers_pattern), IA3's `_check_target_module_feedforward`, and
`peft.utils.other.get_pattern_key` (rank_pattern / alpha_pattern keys). tests/test_module_patterns.py
checks the mirror against those PEFT functions.

Why not call PEFT's functions: they match the config's regexes with `re`, which backtracks exponentially
on a pattern such as "(.+)+X"; against a 30-character module name that takes minutes, holding the GIL, so
one upload would freeze the server. Here each pattern is first compiled by `re` (so exactly the patterns
PEFT accepts are accepted) and then matched by the `regex` module, which avoids most such blow-ups and
takes a timeout for the rest; all matching for one adapter shares one time budget.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import regex

from service.errors import InvalidAdapterConfig

# Matching one adapter's patterns against every module of the base model. Real configs take milliseconds
# (a per-module rank_pattern for an 80-layer model: about a second); past this the config is refused.
MATCH_BUDGET_S = 5.0
# `regex` expands counted repeats when it compiles: "(?:a{1000}){1000}" takes 270 MB. A module name is a
# few dozen characters, so no real pattern needs more than a few hundred repeated items.
MAX_REPEAT_PRODUCT = 10_000
_COUNTED_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")

Verdict = Literal["targeted", "excluded", "unmatched"]


class BoundedPatterns:
    """Compiles and matches the config's patterns for one adapter, within MATCH_BUDGET_S in all."""

    def __init__(self, budget_s: float = MATCH_BUDGET_S):
        self.budget_s = budget_s
        self._deadline = time.monotonic() + budget_s
        self._compiled: dict[str, regex.Pattern[str]] = {}

    def fullmatch(self, pattern: str, name: str, field: str) -> regex.Match[str] | None:
        return self._run(pattern, name, field, full=True)

    def match(self, pattern: str, name: str, field: str) -> regex.Match[str] | None:
        """Anchored at the start only, like re.match."""
        return self._run(pattern, name, field, full=False)

    def _run(self, pattern: str, name: str, field: str, *, full: bool) -> regex.Match[str] | None:
        compiled = self._compile(pattern, field)
        remaining = self._deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            # concurrent=True releases the GIL, so the event loop and the decode loop go on meanwhile.
            if full:
                return compiled.fullmatch(name, timeout=remaining, concurrent=True)
            return compiled.match(name, timeout=remaining, concurrent=True)
        except TimeoutError:
            raise InvalidAdapterConfig(
                f"adapter_config.json: matching '{field}' against the base model's module names took more than "
                f"{self.budget_s:g} s; use simpler patterns or a list of module names"
            ) from None

    def _compile(self, pattern: str, field: str) -> regex.Pattern[str]:
        compiled = self._compiled.get(pattern)
        if compiled is not None:
            return compiled
        try:
            re.compile(pattern)  # what PEFT accepts, and an re.error message the user knows
        except (re.error, RecursionError, OverflowError, ValueError) as exc:
            raise InvalidAdapterConfig(
                f"adapter_config.json: '{field}' is not a valid regular expression: {exc}"
            ) from None
        if _repeat_product(pattern) > MAX_REPEAT_PRODUCT:
            raise InvalidAdapterConfig(
                f"adapter_config.json: '{field}' repeats too much for a module name (counted repeats multiply to "
                f"more than {MAX_REPEAT_PRODUCT})"
            )
        try:
            compiled = regex.compile(pattern)
        except (regex.error, RecursionError, OverflowError, ValueError) as exc:
            raise InvalidAdapterConfig(
                f"adapter_config.json: '{field}' is not a valid regular expression: {exc}"
            ) from None
        self._compiled[pattern] = compiled
        return compiled


def _repeat_product(pattern: str) -> int:
    """The product of every {m} / {m,n} bound in the pattern: an upper bound on how `regex` expands them."""
    product = 1
    for low, high in _COUNTED_REPEAT.findall(pattern):
        product *= max(_bound(low), _bound(high), 1)
        if product > MAX_REPEAT_PRODUCT:
            break
    return product


def _bound(digits: str) -> int:
    # Past 6 digits it is over the limit anyway; int() of a 5,000-digit string would raise.
    if not digits:  # the open end of {m,}
        return 0
    return int(digits) if len(digits) <= 6 else MAX_REPEAT_PRODUCT + 1


@dataclass(frozen=True)
class TargetRules:
    """The config's module selection, in PEFT's forms, with defaults and "all-linear" already resolved."""

    target_modules: str | frozenset[str]  # a regex (full match) or names (equal, or a '.'-separated suffix)
    exclude_modules: str | frozenset[str] | None = None
    layers_to_transform: int | frozenset[int] | None = None
    layers_pattern: tuple[str, ...] | None = None

    def verdict(self, name: str, patterns: BoundedPatterns) -> Verdict:
        """PEFT's check_target_module_exists for one module name of the base model."""
        excluded = self.exclude_modules
        if isinstance(excluded, str):
            if patterns.fullmatch(excluded, name, "exclude_modules"):
                return "excluded"
        elif excluded and (name in excluded or name.endswith(self._exclude_suffixes)):
            return "excluded"

        targets = self.target_modules
        if isinstance(targets, str):
            return "targeted" if patterns.fullmatch(targets, name, "target_modules") else "unmatched"
        if name in targets:  # named in full: PEFT applies no layer filter
            return "targeted"
        if not name.endswith(self._target_suffixes):
            return "unmatched"
        if self.layers_to_transform is None:
            return "targeted"
        index = self._layer_index(name, patterns)
        if index is None:
            return "unmatched"
        if isinstance(self.layers_to_transform, int):
            return "targeted" if index == self.layers_to_transform else "unmatched"
        return "targeted" if index in self.layers_to_transform else "unmatched"

    @cached_property
    def _target_suffixes(self) -> tuple[str, ...]:
        return tuple(f".{key}" for key in self.target_modules) if not isinstance(self.target_modules, str) else ()

    @cached_property
    def _exclude_suffixes(self) -> tuple[str, ...]:
        excluded = self.exclude_modules
        return tuple(f".{key}" for key in excluded) if excluded and not isinstance(excluded, str) else ()

    def _layer_index(self, name: str, patterns: BoundedPatterns) -> int | None:
        # PEFT's regexes: the first numbered segment (lazy), so nested indexes (MoE experts) are not taken.
        if self.layers_pattern is None:
            found = patterns.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", name, "layers_to_transform")
            return int(found.group("idx")) if found else None
        for layer_pattern in self.layers_pattern:
            found = patterns.match(rf"(?:^|.*?\.){layer_pattern}\.(?P<idx>\d+)\.", name, "layers_pattern")
            if found is not None:
                return int(found.group("idx"))
        return None


def is_feedforward(feedforward_modules: str | frozenset[str], name: str, patterns: BoundedPatterns) -> bool:
    """IA3's _check_target_module_feedforward: a full-match regex, or names as plain suffixes (no '.')."""
    if isinstance(feedforward_modules, str):
        return patterns.fullmatch(feedforward_modules, name, "feedforward_modules") is not None
    return name.endswith(tuple(feedforward_modules))


def pattern_key(keys: list[str], name: str, patterns: BoundedPatterns, field: str) -> str:
    """PEFT's get_pattern_key: the first key that matches the end of `name` at a '.' boundary, else `name`."""
    for key in keys:
        if patterns.match(rf"(.*\.)?({key})$", name, field):
            return key
    return name
