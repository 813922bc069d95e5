"""What a valid answer looks like, per kind of request: each validator gets a 2xx body (or its events) and
says what is wrong with it, or None."""

from __future__ import annotations

import json
from typing import Any

from bench.soak_client import FINISH_REASONS
from bench.soak_ledger import Validator


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
