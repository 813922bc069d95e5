"""Oversized and poisoned requests: each must be refused with its documented 4xx, or answered in full, and
never take anyone else's request down with it."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from bench.soak_client import PROMPTS, Soak
from bench.soak_ledger import Expect
from bench.soak_server import Limits


async def chunked(data: bytes, size: int = 16384):
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def oversized_body(soak: Soak, rng: random.Random) -> None:
    """A JSON body over DELTASERVE_MAX_REQUEST_BYTES, with Content-Length or chunked: 413 before parsing."""
    padding = "a" * (soak.limits.max_request_bytes + 1024)
    data = f'{{"text": "{padding}", "max_new_tokens": 4}}'.encode()
    expect = Expect.of(413)
    if rng.random() < 0.5:
        await soak.send(
            "oversize.body", "POST", "/generate", expect, content=data, headers={"content-type": "application/json"}
        )
    else:
        await soak.send(
            "oversize.body_chunked",
            "POST",
            "/pipeline",
            expect,
            content=chunked(data),
            headers={"content-type": "application/json"},
        )


async def oversized_text(soak: Soak, rng: random.Random) -> None:
    """Texts over DELTASERVE_MAX_INPUT_CHARS in a body under the byte limit: 422 before tokenizing."""
    long_text = "word " * (soak.limits.max_input_chars // 5 + 1)
    action, path, body = rng.choice(
        [
            ("oversize.text", "/generate", {"text": long_text}),
            ("oversize.texts_item", "/generate", {"texts": ["short", long_text]}),
            ("oversize.pipeline_text", "/pipeline", {"text": long_text, "steps": [{"name": "a", "max_new_tokens": 2}]}),
        ]
    )
    await soak.send(action, "POST", path, Expect.of(422), json=body)


@dataclass(frozen=True)
class Poison:
    """A hostile request and the statuses it may get. A raw `body` is sent as it is (NaN, bad UTF-8, lone
    surrogate escapes, deep nesting), a dict as JSON."""

    label: str
    path: str
    body: dict[str, Any] | bytes
    statuses: frozenset[int]
    method: str = "POST"


def poisons(limits: Limits) -> list[Poison]:
    """Extreme but valid sampling must be answered; everything else refused cleanly, never with a 500."""
    text = PROMPTS[0]
    ok, refused, bad_body = frozenset({200}), frozenset({422}), frozenset({400, 422})
    either = frozenset({200, 422})
    return [
        Poison("temperature_denormal", "/generate", {"text": text, "temperature": 5e-324, "max_new_tokens": 4}, ok),
        Poison(
            "top_p_tiny",
            "/generate",
            {"text": text, "temperature": 1.0, "top_p": 1e-300, "seed": 3, "max_new_tokens": 4},
            ok,
        ),
        Poison(
            "temperature_and_top_k_max",
            "/generate",
            {"text": text, "temperature": 10.0, "top_k": 1_000_000, "seed": 5, "max_new_tokens": 4},
            ok,
        ),
        Poison("seed_max", "/generate", {"text": text, "temperature": 0.7, "seed": 2**63 - 1, "max_new_tokens": 4}, ok),
        Poison("seed_2_70", "/generate", {"text": text, "temperature": 0.7, "seed": 2**70}, refused),
        Poison("seed_negative", "/generate", {"text": text, "seed": -1}, refused),
        Poison("bool_max_new_tokens", "/generate", {"text": text, "max_new_tokens": True}, refused),
        Poison("bool_temperature", "/generate", {"text": text, "temperature": False}, refused),
        Poison("bool_seed", "/generate", {"text": text, "seed": True}, refused),
        # 8.0 is an integer to JSON Schema (accepted); 8.5 is not.
        Poison("fractional_max_new_tokens", "/generate", {"text": text, "max_new_tokens": 8.5}, refused),
        Poison("string_max_new_tokens", "/generate", {"text": text, "max_new_tokens": "8"}, refused),
        Poison(
            "max_new_tokens_over_limit",
            "/generate",
            {"text": text, "max_new_tokens": limits.max_new_tokens_limit + 1},
            refused,
        ),
        Poison("nan_temperature", "/generate", b'{"text": "hi", "temperature": NaN}', refused),
        Poison("infinite_top_p", "/generate", b'{"text": "hi", "top_p": Infinity}', refused),
        Poison("negative_infinite_temperature", "/generate", b'{"text": "hi", "temperature": -Infinity}', refused),
        Poison("huge_integer", "/generate", b'{"text": "hi", "max_new_tokens": 1' + b"0" * 5000 + b"}", bad_body),
        Poison("deep_nesting", "/generate", b'{"text": ' + b"[" * 20000 + b"]" * 20000 + b"}", bad_body),
        Poison("invalid_json", "/generate", b'{"text": ', bad_body),
        Poison("not_utf8", "/generate", b'{"text": "\xff\xfe"}', bad_body),
        Poison("lone_surrogate_text", "/generate", b'{"text": "\\ud800 hello", "max_new_tokens": 4}', bad_body),
        Poison("lone_surrogate_stop", "/generate", b'{"text": "hi", "stop": ["\\ud800"], "max_new_tokens": 4}', either),
        Poison(
            "lone_surrogate_pipeline_text",
            "/pipeline",
            b'{"text": "\\udfff", "steps": [{"name": "a", "max_new_tokens": 2}]}',
            bad_body,
        ),
        Poison(
            "lone_surrogate_step_input",
            "/pipeline",
            b'{"text": "hi", "steps": [{"name": "a", "input": "\\ud800 {text}", "max_new_tokens": 2}]}',
            bad_body,
        ),
        Poison(
            "lone_surrogate_pipeline_description",
            "/pipelines/soak-poison",
            b'{"description": "\\ud800", "steps": [{"name": "a", "max_new_tokens": 2}]}',
            frozenset({201, 200, 400, 422}),
            method="PUT",
        ),
        Poison("empty_text", "/generate", {"text": "", "max_new_tokens": 4}, either),
        Poison("null_character", "/generate", {"text": "a\u0000b", "max_new_tokens": 4}, either),
        Poison("text_not_a_string", "/generate", {"text": 5}, refused),
        Poison("unknown_field", "/generate", {"text": text, "bogus": 1}, refused),
        Poison("text_and_texts", "/generate", {"text": text, "texts": [text]}, refused),
        Poison("too_many_texts", "/generate", {"texts": [text] * 257, "max_new_tokens": 1}, refused),
        Poison("too_many_stop_strings", "/generate", {"text": text, "stop": ["s"] * 17}, refused),
        Poison("unknown_adapter", "/generate", {"adapter": "soak-no-such-adapter", "text": text}, frozenset({404})),
        Poison("adapter_path", "/generate", {"adapter": "../../etc/passwd", "text": text}, frozenset({404, 422})),
        Poison(
            "pipeline_cycle",
            "/pipeline",
            {"text": text, "steps": [{"name": "a", "input": "{b}"}, {"name": "b", "input": "{a}"}]},
            refused,
        ),
        Poison(
            "pipeline_duplicate_step", "/pipeline", {"text": text, "steps": [{"name": "a"}, {"name": "a"}]}, refused
        ),
        Poison(
            "pipeline_unknown_adapter",
            "/pipeline",
            {"text": text, "steps": [{"name": "a", "adapter": "soak-no-such-adapter"}]},
            frozenset({404, 422}),
        ),
    ]


async def send_poison(soak: Soak, poison: Poison) -> None:
    expect = Expect(poison.statuses, sheddable=True)
    action = f"poison.{poison.label}"
    if isinstance(poison.body, bytes):
        await soak.send(
            action,
            poison.method,
            poison.path,
            expect,
            content=poison.body,
            headers={"content-type": "application/json"},
        )
    else:
        await soak.send(action, poison.method, poison.path, expect, json=poison.body)


async def poisoned(soak: Soak, rng: random.Random) -> None:
    await send_poison(soak, rng.choice(soak.poisons))


async def poison_sweep(soak: Soak) -> None:
    """Every poisoned request once as the load starts, so that even a short run sends each of them."""
    for poison in soak.poisons:
        await send_poison(soak, poison)


# (weight, action): mostly well-formed work, with every kind of abuse mixed in all the time.
