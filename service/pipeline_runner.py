"""Pipelines: steps over one input, each a generation with its own adapter, run as a DAG on the shared batcher.

A pipeline is admitted as one request, and everything it could cost is checked before its first step runs:
its shape (names, references, cycles), its adapters, each step's and all steps' new tokens, how many
outputs a step's input may splice in, and how long its input can grow from the original text. The input a
step actually gets is checked again, exactly, once the outputs it uses are known.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from service.admission import Lease
from service.config import Settings
from service.engine.rows import StreamDelta
from service.errors import DeadlineExceeded, InvalidRequest
from service.inference import Inference
from service.schemas.pipelines import PipelineStep

REFERENCE = re.compile(r"\{([a-z][a-z0-9_]*)\}")
ORIGINAL_INPUT = "text"
MAX_REFERENCES_PER_STEP = 16  # splicing an output many times only multiplies the input


def dependencies(steps: list[PipelineStep]) -> dict[str, list[str]]:
    """Each step's inputs: the steps its template names, or the previous step when it has no template."""
    deps: dict[str, list[str]] = {}
    for index, step in enumerate(steps):
        if step.input is None:
            deps[step.name] = [steps[index - 1].name] if index else []
        else:
            deps[step.name] = [ref for ref in dict.fromkeys(REFERENCE.findall(step.input)) if ref != ORIGINAL_INPUT]
    return deps


def check_definition(steps: list[PipelineStep], settings: Settings,
                     known_adapter: Callable[[str], bool] | None = None) -> None:
    """Refuse a definition before any step runs: duplicate names, unknown references or adapters, cycles,
    and steps or totals past the limits."""
    names = [step.name for step in steps]
    for name in names:
        if name == ORIGINAL_INPUT:
            raise InvalidRequest("a step may not be called 'text': {text} is the pipeline's input")
        if names.count(name) > 1:
            raise InvalidRequest(f"duplicate step name '{name}'")
    deps = dependencies(steps)
    for step in steps:
        for ref in deps[step.name]:
            if ref not in names:
                raise InvalidRequest(f"step '{step.name}' refers to {{{ref}}}, which is no step of this pipeline")
        if known_adapter is not None and step.adapter is not None and not known_adapter(step.adapter):
            raise InvalidRequest(f"step '{step.name}' uses adapter '{step.adapter}', which is not in the store")
        if step.max_new_tokens > settings.max_new_tokens_limit:
            raise InvalidRequest(
                f"step '{step.name}': max_new_tokens may be at most {settings.max_new_tokens_limit} "
                f"(DELTASERVE_MAX_NEW_TOKENS_LIMIT), not {step.max_new_tokens}"
            )
        if step.input is not None and len(REFERENCE.findall(step.input)) > MAX_REFERENCES_PER_STEP:
            raise InvalidRequest(
                f"step '{step.name}' splices in more than {MAX_REFERENCES_PER_STEP} {{...}} references"
            )
    total = sum(step.max_new_tokens for step in steps)
    if total > settings.max_pipeline_new_tokens:
        raise InvalidRequest(
            f"the steps ask for {total} new tokens together, more than the {settings.max_pipeline_new_tokens} "
            "one pipeline may (DELTASERVE_MAX_PIPELINE_NEW_TOKENS)"
        )
    _check_acyclic(deps)


def _check_acyclic(deps: dict[str, list[str]]) -> None:
    state: dict[str, str] = {}  # name -> "visiting" | "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*path[path.index(name) :], name]
            raise InvalidRequest(f"the steps form a cycle: {' -> '.join(cycle)}")
        state[name] = "visiting"
        for ref in deps[name]:
            visit(ref, [*path, name])
        state[name] = "done"

    for name in deps:
        visit(name, [])


def known_input_size(step: PipelineStep, index: int, text: str) -> int:
    """Characters of a step's input that do not depend on other steps' outputs."""
    if step.input is None:
        return len(text) if index == 0 else 0
    spliced = REFERENCE.sub(lambda m: text if m.group(1) == ORIGINAL_INPUT else "", step.input)
    return len(spliced)


def render(step: PipelineStep, index: int, steps: list[PipelineStep], text: str, outputs: dict[str, str]) -> str:
    if step.input is None:
        return outputs[steps[index - 1].name].strip() if index else text
    values = {ORIGINAL_INPUT: text, **{name: output.strip() for name, output in outputs.items()}}
    return REFERENCE.sub(lambda m: values.get(m.group(1), m.group(0)), step.input)


@dataclass(frozen=True)
class PipelineEvent:
    """What a streamed pipeline tells its caller, in order: `step` (a step's record, as it completes),
    `token` (`{"step", "text"}`: the last step's text as it is generated), then `done` (the whole result,
    the same document a non-streamed run answers)."""

    kind: str  # "step" | "token" | "done"
    data: dict


async def run_pipeline(inference: Inference, text: str, steps: list[PipelineStep]) -> dict:
    async with contextlib.aclosing(stream_pipeline(inference, text, steps)) as events:
        async for event in events:
            if event.kind == "done":
                return event.data
    raise AssertionError("a pipeline ended without its result")


async def stream_pipeline(
    inference: Inference, text: str, steps: list[PipelineStep]
) -> AsyncGenerator[PipelineEvent, None]:
    settings = inference.settings
    check_definition(steps, settings, known_adapter=inference.registry.exists)
    inference.check_text(text)
    for index, step in enumerate(steps):
        inference.check_chars(known_input_size(step, index, text), f"step '{step.name}' input")
    deps = dependencies(steps)
    loop = asyncio.get_running_loop()
    done: dict[str, asyncio.Future] = {step.name: loop.create_future() for step in steps}
    outputs: dict[str, str] = {}
    records: dict[str, dict] = {}
    events: asyncio.Queue[PipelineEvent | BaseException] = asyncio.Queue()
    deadline = inference.deadline()
    last = steps[-1].name  # the pipeline's answer: its tokens are streamed

    async def run_step(index: int, step: PipelineStep, lease: Lease) -> None:
        for ref in deps[step.name]:
            await done[ref]
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(
                f"the pipeline ran past its deadline (DELTASERVE_REQUEST_TIMEOUT_S) before step '{step.name}'"
            )
        prompt = render(step, index, steps, text, outputs)
        inference.check_text(prompt, f"step '{step.name}' input")
        started = time.perf_counter()
        if step.name == last:
            result = None
            rows = inference.stream_rows(
                step.adapter, [prompt], step.sampling(), lease=lease, deadline=deadline, refuse_when_full=False
            )
            async with contextlib.aclosing(rows) as items:
                async for _, item in items:
                    if isinstance(item, StreamDelta):
                        if item.text:
                            events.put_nowait(PipelineEvent("token", {"step": step.name, "text": item.text}))
                    else:
                        result = item
            assert result is not None
        else:
            result = (
                await inference.run(
                    step.adapter, [prompt], step.sampling(), lease=lease, deadline=deadline, refuse_when_full=False
                )
            )[0]
        outputs[step.name] = result.text
        records[step.name] = {
            "name": step.name,
            "adapter": step.adapter,
            "input": prompt,
            "output": result.text,
            "finish_reason": result.finish_reason,
            "ms": round((time.perf_counter() - started) * 1000, 2),
        }
        events.put_nowait(PipelineEvent("step", records[step.name]))
        done[step.name].set_result(None)

    async def run_all(lease: Lease) -> None:
        # Every step starts at once and waits only for its own inputs: independent steps run concurrently
        # and share batches with each other and with other requests.
        tasks = [asyncio.ensure_future(run_step(i, step, lease)) for i, step in enumerate(steps)]
        try:
            await asyncio.gather(*tasks)
            events.put_nowait(
                PipelineEvent(
                    "done",
                    {
                        "outputs": {s.name: outputs[s.name] for s in steps},
                        "steps": [records[s.name] for s in steps],
                    },
                )
            )
        except BaseException as exc:
            events.put_nowait(exc)
            raise
        finally:
            for task in tasks:
                task.cancel()

    with inference.admission.lease() as lease:
        runner = asyncio.ensure_future(run_all(lease))
        try:
            while True:
                event = await events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if event.kind == "done":
                    return
        finally:
            runner.cancel()
            with contextlib.suppress(BaseException):
                await runner
