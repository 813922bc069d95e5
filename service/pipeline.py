"""Pipelines: steps over one input, each a generation with its own adapter, run as a DAG on the shared batcher."""

from __future__ import annotations

import asyncio
import re
import time

from service.errors import InvalidRequest
from service.schemas.pipelines import PipelineStep
from service.state import ServiceState

REFERENCE = re.compile(r"\{([a-z][a-z0-9_]*)\}")
ORIGINAL_INPUT = "text"


def dependencies(steps: list[PipelineStep]) -> dict[str, list[str]]:
    """Each step's inputs: the steps its template names, or the previous step when it has no template."""
    deps: dict[str, list[str]] = {}
    for index, step in enumerate(steps):
        if step.input is None:
            deps[step.name] = [steps[index - 1].name] if index else []
        else:
            deps[step.name] = [ref for ref in dict.fromkeys(REFERENCE.findall(step.input)) if ref != ORIGINAL_INPUT]
    return deps


def check_definition(steps: list[PipelineStep], known_adapter=None) -> None:
    """Refuse a definition before any step runs: duplicate names, unknown references or adapters, cycles."""
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
            raise InvalidRequest(f"step '{step.name}' uses adapter '{step.adapter}', which is not loaded")
    _check_acyclic(deps)


def _check_acyclic(deps: dict[str, list[str]]) -> None:
    state: dict[str, str] = {}  # name -> "visiting" | "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name) :] + [name]
            raise InvalidRequest(f"the steps form a cycle: {' -> '.join(cycle)}")
        state[name] = "visiting"
        for ref in deps[name]:
            visit(ref, path + [name])
        state[name] = "done"

    for name in deps:
        visit(name, [])


def render(step: PipelineStep, index: int, steps: list[PipelineStep], text: str, outputs: dict[str, str]) -> str:
    if step.input is None:
        return outputs[steps[index - 1].name].strip() if index else text
    values = {ORIGINAL_INPUT: text, **{name: output.strip() for name, output in outputs.items()}}
    return REFERENCE.sub(lambda m: values.get(m.group(1), m.group(0)), step.input)


async def run_pipeline(state: ServiceState, text: str, steps: list[PipelineStep]) -> dict:
    # Imported here: api.generate imports service.state, which this module's importers also need.
    from service.api.generate import complete

    check_definition(steps, known_adapter=lambda name: name in state.engine.names())
    deps = dependencies(steps)
    done: dict[str, asyncio.Future] = {step.name: asyncio.get_running_loop().create_future() for step in steps}
    outputs: dict[str, str] = {}
    records: dict[str, dict] = {}

    async def run_step(index: int, step: PipelineStep) -> None:
        for ref in deps[step.name]:
            await done[ref]
        prompt = render(step, index, steps, text, outputs)
        started = time.perf_counter()
        completion = (await complete(state, step.adapter, [prompt], step))[0]
        outputs[step.name] = completion.text
        records[step.name] = {
            "name": step.name,
            "adapter": step.adapter,
            "input": prompt,
            "output": completion.text,
            "finish_reason": completion.finish_reason,
            "ms": round((time.perf_counter() - started) * 1000, 2),
        }
        done[step.name].set_result(None)

    # Every step starts at once and waits only for its own inputs: independent steps run concurrently
    # and share batches with each other and with other requests.
    tasks = [asyncio.ensure_future(run_step(i, step)) for i, step in enumerate(steps)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return {"outputs": {s.name: outputs[s.name] for s in steps}, "steps": [records[s.name] for s in steps]}
