"""The soak's request mix: well-formed requests for every adapter kind and the base model, streamed and
OpenAI-protocol requests, pipelines, cancellations, and (from soak_hostile.py) oversized and poisoned requests;
a burst past the admission bound; and the watchers of /health and memory. Every request says what it may be
answered with (`Expect`); the ledger holds the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.soak_client import CANCEL_NEW_TOKENS, PROMPTS, Catalogue, Soak
from bench.soak_hostile import oversized_body, oversized_text, poisoned
from bench.soak_ledger import Expect, Ledger, Outcome
from bench.soak_validators import (
    has_list,
    many_generations,
    one_generation,
    openai_chat_stream,
    openai_completion,
    pipeline_result,
    streamed_generation,
)


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


Action = Callable[[Soak, random.Random], Awaitable[None]]

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
