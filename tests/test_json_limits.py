"""Bounded JSON parsing: size and depth refused before the parser recurses, every refusal a typed 4xx."""

from __future__ import annotations

import json
import time

import pytest

from service.errors import InvalidJson, JsonTooDeep, JsonTooLarge
from service.json_limits import json_depth_exceeds, parse_json, read_json_file

LIMITS = {"max_bytes": 1 << 20, "max_depth": 64}


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("document", [
    nested(64),
    "[" * 64 + "]" * 64,
    '{"brackets in strings do not count": "[[[[{{{{", "escaped quote": "\\"[[[", "backslash": "\\\\"}',
    '[[["\\\\\\"[[[[[[[[[[[[[["]]]',
    '"just a string"',
    '{"target_modules": ["q_proj", "v_proj"], "r": 8, "lora_alpha": 16.5, "rank_pattern": {}}',
])
def test_within_limits_parses_as_json_does(document):
    assert not json_depth_exceeds(document, 64)
    assert parse_json(document.encode(), **LIMITS) == json.loads(document)


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_too_deep_is_refused_without_recursing(depth):
    for document in (nested(depth), "[" * depth + "]" * depth):
        with pytest.raises(JsonTooDeep, match="more than 64 levels") as refused:
            parse_json(document.encode(), **LIMITS, what="adapter_config.json")
        assert refused.value.status == 400 and "adapter_config.json" in refused.value.message


def test_depth_is_exact_at_the_limit():
    for depth in range(1, 12):
        assert json_depth_exceeds(nested(depth), depth - 1)
        assert not json_depth_exceeds(nested(depth), depth)


def test_too_large_is_a_413_before_parsing():
    with pytest.raises(JsonTooLarge) as refused:
        parse_json(b" " * 101 + b"{}", max_bytes=100, max_depth=64)
    assert refused.value.status == 413 and refused.value.code == "payload_too_large"


@pytest.mark.parametrize("document, says", [
    (b'{"lora_alpha": NaN}', "NaN is not a JSON value"),
    (b'{"lora_alpha": -Infinity}', "-Infinity is not a JSON value"),
    (b'{"r": ' + b"1" * 5000 + b"}", "not valid JSON"),  # int() refuses over 4300 digits with a ValueError
    (b"{nope", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_not_json_is_a_400(document, says):
    with pytest.raises(InvalidJson, match=says) as refused:
        parse_json(document, **LIMITS)
    assert refused.value.status == 400


def test_depth_check_is_linear_on_hostile_strings():
    # An unterminated string of escaped quotes made a string-matching regex quadratic (10 s at 40 KB).
    hostile = '"' + '\\"' * 500_000  # 1 MB
    started = time.monotonic()
    with pytest.raises(InvalidJson):
        parse_json(hostile.encode(), max_bytes=2 << 20, max_depth=64)
    assert time.monotonic() - started < 5.0


def test_read_json_file_reads_no_further_than_the_limit(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b"[" + b"1," * 1_000_000 + b"1]")
    with pytest.raises(JsonTooLarge, match=r"big\.json"):
        read_json_file(path, max_bytes=1000, max_depth=64)
