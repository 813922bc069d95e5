"""The soak's request mix: well-formed requests for every adapter kind and the base model, pipelines,
cancellations, oversized and poisoned requests, a burst past the admission bound, and, beside them, adapter
uploads, replacements and deletes while requests for those adapters run. Every request says what it may
be answered with (`Expect`); the ledger holds the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.soak_adapters import AdapterFiles, SoakAdapters
from bench.soak_ledger import Expect, Ledger, Outcome, Validator, error_code, judge
from bench.soak_server import Limits

PROMPTS = [
    "What is the capital of France?",
    "Which planet is the largest in the solar system?",
    "Who painted the Mona Lisa?",
    "When was the Beijing Olympic held?",
    "Name three colours of the rainbow.",
    "The quick brown fox jumps over the lazy",
]
FINISH_REASONS = frozenset({"stop", "length", "timeout"})
NAMED_PIPELINE = "soak-chain"
CANCEL_NEW_TOKENS = 64  # long enough that the cancellation usually lands mid-generation
MAX_BACKOFF_S = 5.0


@dataclass
class Catalogue:
    """What the server holds, as the soak's requests pick from it."""

    stable: list[str]  # adapters never replaced or deleted during the run
    swapped: list[str]  # replaced again and again while requests for them run
    pipelines: dict[str, list[str]]  # named pipeline -> its step names
    base_model: str = ""  # the base model's name on the OpenAI routes (what /ready reports)
    chat_template: bool = True  # the base model's tokenizer has one (else chat is refused, and not sent)
    versions: dict[str, int] = field(default_factory=dict)  # the swapped adapters' current versions
    temporary: list[str] = field(default_factory=list)  # created then deleted by the churn, most recent last


class Soak:
    """One run's client, ledger, limits and clock, shared by every task."""

    def __init__(self, client: httpx.AsyncClient, ledger: Ledger, limits: Limits, catalogue: Catalogue,
                 deadline: float, compare_answers: bool, excluded: tuple[str, ...] = ()):
        self.client = client
        self.ledger = ledger
        self.limits = limits
        self.catalogue = catalogue
        self.deadline = deadline
        self.compare_answers = compare_answers
        self.poisons = [p for p in poisons(limits) if not any(word in p.label for word in excluded)]

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def send(self, action: str, method: str, path: str, expect: Expect, *, back_off: bool = True,
                   **kwargs: Any) -> httpx.Response | None:
        """Send one request and record how it ended; the response when it came back as `expect` allows. Shed
        with 429, it waits Retry-After before returning (unless `back_off` is False), as clients should."""
        at_s, started = self.ledger.now(), time.perf_counter()
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            self.ledger.record(Outcome(action, None, None, time.perf_counter() - started, at_s=at_s,
                                       violation=f"transport error: {type(exc).__name__}: {exc!r}"))
            return None
        violation = judge(response, expect)
        code = error_code(response) if response.status_code >= 400 else None
        self.ledger.record(Outcome(action, response.status_code, code, time.perf_counter() - started,
                                   violation=violation, at_s=at_s))
        if response.status_code == 429 and back_off:
            await asyncio.sleep(retry_after_s(response))
        return response if violation is None else None


def retry_after_s(response: httpx.Response, most: float = MAX_BACKOFF_S) -> float:
    try:
        return min(float(response.headers.get("retry-after", 1)), most)
    except ValueError:
        return 1.0


# -- what a valid answer looks like --------------------------------------------------------------------------


def completion_problem(body: Any, max_new_tokens: int) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        return f"no text in {body!r:.200}"
    if body.get("finish_reason") not in FINISH_REASONS:
        return f"finish_reason {body.get('finish_reason')!r}"
    prompt, completion = body.get("prompt_tokens"), body.get("completion_tokens")
    if not (
        isinstance(prompt, int) and prompt >= 1 and isinstance(completion, int) and 0 <= completion <= max_new_tokens
    ):
        return f"token counts {prompt!r}/{completion!r} for max_new_tokens {max_new_tokens}"
    if body["finish_reason"] == "length" and completion != max_new_tokens:
        return f"finish_reason 'length' after {completion} of {max_new_tokens} tokens"
    return None


def one_generation(adapter: str | None, max_new_tokens: int) -> Validator:
    def validate(body: Any) -> str | None:
        if body.get("adapter") != adapter:
            return f"answered for adapter {body.get('adapter')!r}, asked {adapter!r}"
        return completion_problem(body, max_new_tokens)

    return validate


def many_generations(adapter: str | None, count: int, max_new_tokens: int) -> Validator:
    def validate(body: Any) -> str | None:
        outputs = body.get("outputs")
        if body.get("adapter") != adapter or not isinstance(outputs, list) or len(outputs) != count:
            return f"expected {count} outputs for {adapter!r}: {body!r:.300}"
        return next((p for p in (completion_problem(o, max_new_tokens) for o in outputs) if p), None)

    return validate


def pipeline_result(step_names: list[str]) -> Validator:
    def validate(body: Any) -> str | None:
        outputs, steps = body.get("outputs"), body.get("steps")
        if not isinstance(outputs, dict) or set(outputs) != set(step_names):
            return f"outputs {sorted(outputs or {})} for steps {step_names}"
        if not isinstance(steps, list) or [s.get("name") for s in steps] != step_names:
            return f"step results {steps!r:.300} for steps {step_names}"
        bad = [
            s["name"]
            for s in steps
            if s.get("finish_reason") not in FINISH_REASONS or not isinstance(s.get("output"), str)
        ]
        return f"steps {bad} without a valid output" if bad else None

    return validate


def has_list(key: str) -> Validator:
    return lambda body: None if isinstance(body.get(key), list) else f"no {key!r} list: {body!r:.200}"


def record_version(name: str, version: int) -> Validator:
    def validate(body: Any) -> str | None:
        if body.get("name") != name or body.get("version") != version:
            return f"record {body.get('name')!r} version {body.get('version')!r}, expected {name!r} version {version}"
        return None

    return validate


def streamed_generation(adapter: str | None, max_new_tokens: int) -> Validator:
    """token events whose texts add up to the end event's text, the end's result valid, then done."""

    def validate(events: list[tuple[str | None, str]]) -> str | None:
        names = [name for name, _ in events]
        if names.count("end") != 1 or names[-1] != "done" or "error" in names:
            return f"events {names[:40]}"
        end = json.loads(events[names.index("end")][1])
        streamed = "".join(json.loads(data)["text"] for name, data in events if name == "token")
        if streamed != end.get("text"):
            return f"streamed {streamed!r} but the end event says {end.get('text')!r}"
        if json.loads(events[-1][1]).get("adapter") != adapter:
            return f"done for adapter {events[-1][1]}, asked {adapter!r}"
        return completion_problem(end, max_new_tokens)

    return validate


def openai_completion(model: str, max_tokens: int) -> Validator:
    def validate(body: Any) -> str | None:
        choices, usage = body.get("choices"), body.get("usage") or {}
        if body.get("model") != model or not isinstance(choices, list) or len(choices) != 1:
            return f"completion for {body.get('model')!r}: {body!r:.300}"
        choice = choices[0]
        if not isinstance(choice.get("text"), str) or choice.get("finish_reason") not in ("stop", "length"):
            return f"choice {choice!r:.300}"
        tokens = usage.get("completion_tokens")
        if not (isinstance(tokens, int) and 0 <= tokens <= max_tokens) or usage.get("total_tokens") != (
            usage.get("prompt_tokens", 0) + tokens
        ):
            return f"usage {usage!r} for max_tokens {max_tokens}"
        return None

    return validate


def openai_chat_stream(model: str) -> Validator:
    """`data:` chunks of one choice, a finish_reason, the usage chunk asked for, then `data: [DONE]`."""

    def validate(events: list[tuple[str | None, str]]) -> str | None:
        if not events or events[-1] != (None, "[DONE]"):
            return f"no final [DONE]: {events[-3:]}"
        chunks = [json.loads(data) for _, data in events[:-1]]
        if any(chunk.get("model") != model or chunk.get("object") != "chat.completion.chunk" for chunk in chunks):
            return f"chunks for another model or object: {chunks[:2]!r:.300}"
        reasons = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        finished = [reason for reason in reasons if reason]
        usage = chunks[-1].get("usage") if not chunks[-1]["choices"] else None
        if finished not in (["stop"], ["length"]) or not isinstance(usage, dict):
            return f"finish reasons {finished}, final usage {usage!r}"
        return None

    return validate


# -- well-formed inference -------------------------------------------------------------------------------------


def pick_target(soak: Soak, rng: random.Random) -> str | None:
    """A stable adapter or, one time in five, the base model."""
    return None if rng.random() < 0.2 else rng.choice(soak.catalogue.stable)


async def generate(
    soak: Soak, action: str, adapter: str | None, text: str, max_new_tokens: int, **sampling: Any
) -> httpx.Response | None:
    body = {"adapter": adapter, "text": text, "max_new_tokens": max_new_tokens, **sampling}
    expect = Expect.of(200, sheddable=True, validate=one_generation(adapter, max_new_tokens))
    return await soak.send(action, "POST", "/generate", expect, json=body)


async def greedy(soak: Soak, rng: random.Random) -> None:
    await generate(soak, "generate.greedy", pick_target(soak, rng), rng.choice(PROMPTS), rng.randint(2, 24))


async def sampled(soak: Soak, rng: random.Random) -> None:
    await generate(
        soak,
        "generate.sampled",
        pick_target(soak, rng),
        rng.choice(PROMPTS),
        rng.randint(2, 24),
        temperature=rng.choice([0.3, 0.7, 1.0, 1.5]),
        top_p=rng.choice([0.5, 0.9, 1.0]),
        top_k=rng.choice([0, 5, 50]),
        seed=rng.randrange(2**32),
    )


async def streamed(soak: Soak, rng: random.Random) -> None:
    adapter, max_new_tokens = pick_target(soak, rng), rng.randint(2, 24)
    body = {"adapter": adapter, "text": rng.choice(PROMPTS), "max_new_tokens": max_new_tokens, "stream": True}
    expect = Expect.of(200, sheddable=True, validate=streamed_generation(adapter, max_new_tokens), events=True)
    await soak.send("generate.streamed", "POST", "/generate", expect, json=body)


def openai_model(soak: Soak, rng: random.Random) -> str:
    return pick_target(soak, rng) or soak.catalogue.base_model


async def openai_completions(soak: Soak, rng: random.Random) -> None:
    model, max_tokens = openai_model(soak, rng), rng.randint(2, 16)
    body = {"model": model, "prompt": rng.choice(PROMPTS), "max_tokens": max_tokens, "temperature": 0}
    expect = Expect.of(200, sheddable=True, validate=openai_completion(model, max_tokens))
    await soak.send("openai.completions", "POST", "/v1/completions", expect, json=body)


async def openai_chat_streamed(soak: Soak, rng: random.Random) -> None:
    if not soak.catalogue.chat_template:
        return await openai_completions(soak, rng)
    model = openai_model(soak, rng)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
        "max_tokens": rng.randint(2, 16),
        "temperature": rng.choice([0, 0.7]),
        "seed": rng.randrange(2**32),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    expect = Expect.of(200, sheddable=True, validate=openai_chat_stream(model), events=True)
    await soak.send("openai.chat_streamed", "POST", "/v1/chat/completions", expect, json=body)


async def texts_list(soak: Soak, rng: random.Random) -> None:
    adapter, count, max_new_tokens = pick_target(soak, rng), rng.randint(2, 5), rng.randint(2, 16)
    texts = [rng.choice(PROMPTS) for _ in range(count)]
    expect = Expect.of(200, sheddable=True, validate=many_generations(adapter, count, max_new_tokens))
    await soak.send(
        "generate.texts",
        "POST",
        "/generate",
        expect,
        json={"adapter": adapter, "texts": texts, "max_new_tokens": max_new_tokens, "seed": 7, "temperature": 0.8},
    )


def probes(catalogue: Catalogue) -> list[dict[str, Any]]:
    """Fixed requests sent again and again: each must give the same text every time."""
    adapters: list[str | None] = [None, *catalogue.stable]
    return [
        {
            "adapter": adapter,
            "text": PROMPTS[index % len(PROMPTS)],
            "max_new_tokens": 12,
            **({"temperature": 0.9, "top_p": 0.95, "seed": 1234 + index} if index % 2 else {}),
        }
        for index, adapter in enumerate(adapters)
    ]


async def repeated(soak: Soak, rng: random.Random) -> None:
    body = rng.choice(probes(soak.catalogue))
    expect = Expect.of(200, sheddable=True, validate=one_generation(body["adapter"], body["max_new_tokens"]))
    response = await soak.send("generate.repeat", "POST", "/generate", expect, json=body)
    if response is not None and response.status_code == 200 and soak.compare_answers:
        soak.ledger.compare(body, response.json()["text"])


async def swapped_adapter(soak: Soak, rng: random.Random) -> None:
    """An adapter the churn replaces while this runs: the request runs on one version, whole."""
    await generate(
        soak, "generate.swapped", rng.choice(soak.catalogue.swapped), rng.choice(PROMPTS), rng.randint(2, 16)
    )


async def churned_adapter(soak: Soak, rng: random.Random) -> None:
    """An adapter the churn creates and deletes: 200 while it exists, 404 once it is gone."""
    adapter = rng.choice(soak.catalogue.temporary[-3:] or ["soak-temp-0"])
    expect = Expect.of(200, 404, sheddable=True, validate=one_generation(adapter, 8))
    await soak.send(
        "generate.churned",
        "POST",
        "/generate",
        expect,
        json={"adapter": adapter, "text": rng.choice(PROMPTS), "max_new_tokens": 8},
    )


def inline_steps(soak: Soak, rng: random.Random) -> list[dict[str, Any]]:
    first, second = rng.choice(soak.catalogue.stable), rng.choice(soak.catalogue.stable)
    return [
        {"name": "first", "adapter": first, "max_new_tokens": rng.randint(2, 10)},
        {"name": "second", "adapter": second, "input": "{text}", "max_new_tokens": rng.randint(2, 10)},
        {
            "name": "joined",
            "adapter": None,
            "input": "Combine: {first} / {second}",
            "max_new_tokens": rng.randint(2, 10),
            "temperature": 0.7,
            "seed": rng.randrange(1000),
        },
    ]


async def pipeline_inline(soak: Soak, rng: random.Random) -> None:
    steps = inline_steps(soak, rng)
    expect = Expect.of(200, sheddable=True, validate=pipeline_result([s["name"] for s in steps]))
    await soak.send("pipeline.inline", "POST", "/pipeline", expect, json={"text": rng.choice(PROMPTS), "steps": steps})


async def pipeline_named(soak: Soak, rng: random.Random) -> None:
    name = rng.choice(sorted(soak.catalogue.pipelines))
    expect = Expect.of(200, sheddable=True, validate=pipeline_result(soak.catalogue.pipelines[name]))
    await soak.send(f"pipeline.named.{name}", "POST", f"/pipelines/{name}", expect, json={"text": rng.choice(PROMPTS)})


async def cancelled(soak: Soak, rng: random.Random) -> None:
    """A client that gives up mid-request and closes its connection; the server should drop its rows."""
    adapter = pick_target(soak, rng)
    body = {"adapter": adapter, "text": rng.choice(PROMPTS), "max_new_tokens": CANCEL_NEW_TOKENS}
    expect = Expect.of(200, sheddable=True, validate=one_generation(adapter, CANCEL_NEW_TOKENS))
    patience = rng.uniform(0.05, 1.5)
    at_s, started = soak.ledger.now(), time.perf_counter()
    try:
        # No back-off inside the patience: a 429 recorded and then cancelled would count twice.
        await asyncio.wait_for(soak.send("cancel", "POST", "/generate", expect, back_off=False, json=body), patience)
    except asyncio.TimeoutError:
        soak.ledger.record(Outcome("cancel", None, None, time.perf_counter() - started, cancelled=True, at_s=at_s))


async def reads(soak: Soak, rng: random.Random) -> None:
    path, expect = rng.choice(
        [
            ("/adapters", Expect.of(200, validate=has_list("adapters"))),
            ("/pipelines", Expect.of(200, validate=has_list("pipelines"))),
            ("/stats", Expect.of(200)),
            (f"/adapters/{rng.choice(soak.catalogue.stable)}", Expect.of(200)),
            (f"/adapters/{rng.choice(soak.catalogue.temporary[-3:] or ['soak-temp-0'])}", Expect.of(200, 404)),
        ]
    )
    await soak.send("read", "GET", path, expect)


# -- oversized and poisoned requests ---------------------------------------------------------------------------


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


Action = Callable[[Soak, random.Random], Awaitable[None]]
# (weight, action): mostly well-formed work, with every kind of abuse mixed in all the time.
TRAFFIC: list[tuple[int, Action]] = [
    (16, greedy),
    (8, sampled),
    (6, texts_list),
    (6, streamed),
    (4, openai_completions),
    (4, openai_chat_streamed),
    (8, repeated),
    (8, swapped_adapter),
    (4, churned_adapter),
    (5, pipeline_inline),
    (4, pipeline_named),
    (6, cancelled),
    (3, oversized_body),
    (3, oversized_text),
    (10, poisoned),
    (3, reads),
]


async def traffic_worker(soak: Soak, rng: random.Random) -> None:
    weights = [weight for weight, _ in TRAFFIC]
    actions = [action for _, action in TRAFFIC]
    while soak.running():
        await rng.choices(actions, weights)[0](soak, rng)


# -- the burst past the admission bound ---------------------------------------------------------------------------


async def burst(soak: Soak, size: int, at: float) -> None:
    """`size` requests at once, well past DELTASERVE_MAX_CONCURRENT_REQUESTS: the excess must be shed with
    429 + Retry-After at once, the rest answered."""
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    await asyncio.gather(*(generate(soak, "burst", None, PROMPTS[i % len(PROMPTS)], 8) for i in range(size)))


# -- uploads, replacements and deletes while requests run --------------------------------------------------------


async def upload(
    soak: Soak,
    action: str,
    name: str,
    files: AdapterFiles,
    expect: Expect,
    *,
    archive: bool = False,
    description: str = "soak",
) -> httpx.Response | None:
    if archive:
        return await soak.send(
            action, "PUT", f"/adapters/{name}", expect, content=files.tar_gz(), params={"description": description}
        )
    return await soak.send(
        action, "PUT", f"/adapters/{name}", expect, files=files.multipart(), data={"description": description}
    )


class Churn:
    """Writes to the store, one at a time, while the traffic runs; each checks the store answers as it should."""

    def __init__(self, soak: Soak, adapters: SoakAdapters, rng: random.Random):
        self.soak, self.adapters, self.rng = soak, adapters, rng
        self.replacements = 0
        self.temporaries = 0

    async def run(self) -> None:
        cycle = [
            self.replace,
            self.temporary,
            self.replace,
            self.refused_upload,
            self.replace,
            self.pickle,
            self.refused_replacement,
            self.temporary,
            self.replace_pipeline,
            self.unsafe_archive,
            self.declared_too_large,
            self.refused_upload,
        ]
        step = 0
        while self.soak.running():
            await cycle[step % len(cycle)]()
            step += 1
            await asyncio.sleep(self.rng.uniform(0.1, 0.8))

    async def replace(self) -> None:
        """A new version of a swapped adapter (multipart or archive in turn) while requests for it run."""
        name = self.rng.choice(self.soak.catalogue.swapped)
        files = self.adapters.variants[name.removeprefix("soak-")][self.replacements % 2]
        version = self.soak.catalogue.versions[name] + 1
        expect = Expect.of(200, validate=record_version(name, version))
        if (
            await upload(self.soak, "churn.replace", name, files, expect, archive=self.replacements % 2 == 1)
            is not None
        ):
            self.soak.catalogue.versions[name] = version
        self.replacements += 1

    async def temporary(self) -> None:
        """Create an adapter, send requests for it, delete it while they may still run (they finish on the
        version they hold, or get 404 if they came too late)."""
        name = f"soak-temp-{self.temporaries}"
        self.temporaries += 1
        created = await upload(
            self.soak,
            "churn.create",
            name,
            self.adapters.served["lora-r16-1"],
            Expect.of(201, validate=record_version(name, 1)),
        )
        if created is None:
            return
        self.soak.catalogue.temporary.append(name)
        requests = [asyncio.ensure_future(churned_adapter_now(self.soak, self.rng, name)) for _ in range(3)]
        await asyncio.sleep(self.rng.uniform(0.0, 0.3))
        await self.soak.send("churn.delete", "DELETE", f"/adapters/{name}", Expect.of(204))
        await asyncio.gather(*requests)
        await self.soak.send("churn.deleted_is_gone", "GET", f"/adapters/{name}", Expect.of(404))

    async def refused_upload(self) -> None:
        """Broken weights (NaN, overflowing, truncated) under a new name: refused, and the store unchanged."""
        kind = self.rng.choice(sorted(self.adapters.broken))
        name = f"soak-broken-{kind}"
        statuses = (400, 422) if kind == "truncated" else (422,)
        await upload(self.soak, f"churn.refused_{kind}", name, self.adapters.broken[kind], Expect.of(*statuses))
        await self.soak.send("churn.refused_is_absent", "GET", f"/adapters/{name}", Expect.of(404))

    async def refused_replacement(self) -> None:
        """NaN weights as a replacement: refused, and the version served stays the one before."""
        name = self.rng.choice(self.soak.catalogue.swapped)
        await upload(self.soak, "churn.refused_replacement", name, self.adapters.broken["nan"], Expect.of(422))
        expect = Expect.of(200, validate=record_version(name, self.soak.catalogue.versions[name]))
        await self.soak.send("churn.version_kept", "GET", f"/adapters/{name}", expect)

    async def pickle(self) -> None:
        files = self.adapters.served["lora-r8-0"].multipart(weights_name="adapter_model.bin")
        await self.soak.send("churn.pickle", "PUT", "/adapters/soak-pickle", Expect.of(415), files=files)

    async def unsafe_archive(self) -> None:
        body = self.adapters.served["lora-r8-0"].tar_gz(prefix="../")
        await self.soak.send("churn.unsafe_archive", "PUT", "/adapters/soak-unsafe", Expect.of(400), content=body)

    async def replace_pipeline(self) -> None:
        """The named pipeline redefined (the same steps) while runs of it are in flight."""
        steps = named_pipeline_steps(self.soak.catalogue.stable)
        await self.soak.send(
            "churn.replace_pipeline",
            "PUT",
            f"/pipelines/{NAMED_PIPELINE}",
            Expect.of(200),
            json={"description": "soak", "steps": steps},
        )

    async def declared_too_large(self) -> None:
        """An upload whose Content-Length is over the limit: refused before a byte of it is read."""
        await declared_too_large(self.soak, self.soak.limits.max_upload_bytes + 1024 * 1024)


async def churned_adapter_now(soak: Soak, rng: random.Random, name: str) -> None:
    expect = Expect.of(200, 404, sheddable=True, validate=one_generation(name, 8))
    await soak.send(
        "generate.churned",
        "POST",
        "/generate",
        expect,
        json={"adapter": name, "text": rng.choice(PROMPTS), "max_new_tokens": 8},
    )


def named_pipeline_steps(stable: list[str]) -> list[dict[str, Any]]:
    lora, prefix = next(n for n in stable if "lora" in n), next(n for n in stable if "prefix" in n)
    return [
        {"name": "first", "adapter": lora, "max_new_tokens": 6},
        {"name": "second", "adapter": prefix, "input": "{text}", "max_new_tokens": 6},
        {"name": "joined", "adapter": None, "input": "{first} and {second}", "max_new_tokens": 6},
    ]


async def declared_too_large(soak: Soak, declared: int) -> None:
    """Raw HTTP: httpx will not send a Content-Length its body does not have. The server must answer 413
    from the headers alone."""
    host, port = soak.client.base_url.host, soak.client.base_url.port
    at_s, started = soak.ledger.now(), time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"PUT /adapters/soak-too-large HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/gzip\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode()
        )
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    except (OSError, asyncio.TimeoutError) as exc:
        soak.ledger.record(
            Outcome(
                "churn.upload_declared_too_large",
                None,
                None,
                time.perf_counter() - started,
                at_s=at_s,
                violation=f"transport error: {type(exc).__name__}: {exc!r}",
            )
        )
        return
    status_line = reply.split(b"\r\n", 1)[0].decode(errors="replace")
    status = int(status_line.split()[1]) if len(status_line.split()) > 1 and status_line.split()[1].isdigit() else None
    ok = status == 413 and b"payload_too_large" in reply
    soak.ledger.record(
        Outcome(
            "churn.upload_declared_too_large",
            status,
            "payload_too_large" if ok else None,
            time.perf_counter() - started,
            at_s=at_s,
            violation=None if ok else f"answer {reply[:300]!r}",
        )
    )


# -- watching the server while it works ------------------------------------------------------------------------


async def health_poller(url: str, ledger: Ledger, stop: asyncio.Event, interval_s: float) -> list[float]:
    """GET /health every `interval_s` on its own connection; its latencies in ms. A failed probe is a violation."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                response = await client.get("/health")
                if response.status_code != 200:
                    ledger.violate("health", f"/health answered {response.status_code}")
            except httpx.TransportError as exc:
                ledger.violate("health", f"/health transport error: {type(exc).__name__}: {exc}")
            latencies.append((time.perf_counter() - started) * 1000)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
    return latencies


async def memory_sampler(
    read_rss: Callable[[], float | None], stop: asyncio.Event, interval_s: float, started: float
) -> list[tuple[float, float]]:
    """(seconds since start, RSS MiB) every `interval_s`."""
    samples: list[tuple[float, float]] = []
    while not stop.is_set():
        rss = read_rss()
        if rss is not None:
            samples.append((round(time.monotonic() - started, 1), round(rss, 1)))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
    return samples
