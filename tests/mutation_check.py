"""Mutation check: break the engine slightly, one way at a time, and see that the equality tests notice.

    python -m tests.mutation_check               # every mutation; exit status 1 unless every one is CAUGHT
    python -m tests.mutation_check --list        # the table below
    python -m tests.mutation_check ia3-vectors-x1.01 prefix_tuning-positions+1
    make mutation-check

Each mutation runs the equality tests (EQUALITY_TESTS) in a fresh pytest process that loads this module as a
plugin (`-p tests.mutation_check`); the plugin patches the engine at one of the two points below before any
adapter is compiled, and only for one test adapter (tests/conftest.py, tests/test_bitfit.py for BitFit and
tests/test_bottleneck.py for the AdapterHub fixtures save each in a directory named after it). A mutation is
CAUGHT when some test fails, MISSED when they all pass, and INERT when it never changed anything: its point has
moved or is no longer used, so update the point here. The tests first run unmutated and must pass, or every
mutation would look caught.

The engine is being refactored: everything this check knows about it is in POINTS and in the few `_change`
functions under it, which read the compiled delta's fields (`CompiledDelta.prompt`: `VirtualTokens.embeddings` or
`KVPrefix.kv`; `.modules[module].scale` for LoRA, `.vector` for IA3, `.bias` for BitFit, `.down`/`.up`/`.scale`/
`.norm` for bottleneck pieces) and the prefill's `position_ids`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EQUALITY_TESTS = (
    "tests/test_engine_equality.py",
    "tests/test_engine_bf16.py",
    "tests/test_static_decode.py",
    "tests/test_bitfit.py",
    "tests/test_bottleneck.py",
)
MUTATION_ENV = "DELTASERVE_MUTATION"  # the mutation the plugin applies (unset or empty: none)
REPORT_ENV = "DELTASERVE_MUTATION_REPORT"  # where the plugin writes how often the mutation changed something
REPO_ROOT = Path(__file__).resolve().parent.parent


# -- where the engine is patched --------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    module: str
    name: str
    why: str


POINTS = {
    # Every adapter the engine serves is compiled by this function (Engine.compile and the adapter cache's
    # loader both call it by this name); what it returns is the delta both decode paths read.
    "compiled": Point("service.engine.engine", "compile_directory", "the compiled delta, right after compile"),
    # The first forward pass's inputs. Decode positions continue from the prefill's on both decode paths.
    "prefill": Point("service.engine.decode_loop", "build_prefill", "the prefill's position_ids"),
}

Delta = Any  # service.engine.deltas.CompiledDelta; typed loosely so a refactor breaks only the changes below


class _Counter:
    changes = 0  # how often the active mutation changed a delta or a row


def _patch(monkeypatch: pytest.MonkeyPatch, point: str, wrap: Callable[[Callable], Callable]) -> None:
    target = POINTS[point]
    module = importlib.import_module(target.module)
    monkeypatch.setattr(module, target.name, wrap(getattr(module, target.name)))


def _on_compiled(kind: str, change: Callable[[Delta], Delta],
                 counts: bool = True) -> Callable[[pytest.MonkeyPatch], None]:
    """Apply `change` to every delta compiled from test adapter `kind`'s directory (`counts`: it is the mutation)."""

    def apply(monkeypatch: pytest.MonkeyPatch) -> None:
        def wrap(compile_adapter: Callable) -> Callable:
            def compile_mutated(directory: Path, *args: Any, **kwargs: Any) -> Delta:
                delta = compile_adapter(directory, *args, **kwargs)
                if Path(directory).name != kind:
                    return delta
                _Counter.changes += counts
                return change(delta)

            return compile_mutated

        _patch(monkeypatch, "compiled", wrap)

    return apply


def _scale_lora(factor: float) -> Callable[[Delta], Delta]:
    def change(delta: Delta) -> Delta:
        modules = {}
        for module, part in delta.modules.items():
            modules[module] = copy.copy(part)
            modules[module].scale = part.scale * factor  # y += scale * B A x: the LoRA output, scaled
        return dataclasses.replace(delta, modules=modules)

    return change


def _scale_ia3(factor: float) -> Callable[[Delta], Delta]:
    def change(delta: Delta) -> Delta:
        modules = {}
        for module, part in delta.modules.items():
            modules[module] = copy.copy(part)
            modules[module].vector = part.vector * factor
        return dataclasses.replace(delta, modules=modules)

    return change


def _scale_bitfit(factor: float) -> Callable[[Delta], Delta]:
    def change(delta: Delta) -> Delta:
        modules = {}
        for module, part in delta.modules.items():
            modules[module] = copy.copy(part)
            modules[module].bias = part.bias * factor
        return dataclasses.replace(delta, modules=modules)

    return change


def _scale_bottleneck(part: str, factor: float) -> Callable[[Delta], Delta]:
    """A bottleneck piece's `part` (down, up, scale, or the ln_after norm's weight) scaled by `factor`."""

    def change(delta: Delta) -> Delta:
        modules = {}
        for module, piece in delta.modules.items():
            modules[module] = copy.copy(piece)
            if part == "norm":
                modules[module].norm = (piece.norm[0] * factor, piece.norm[1])
            else:
                setattr(modules[module], part, getattr(piece, part) * factor)
        return dataclasses.replace(delta, modules=modules)

    return change


def _scale_virtual_embeddings(factor: float) -> Callable[[Delta], Delta]:
    return lambda delta: dataclasses.replace(delta, prompt=type(delta.prompt)(delta.prompt.embeddings * factor))


def _scale_kv_prefix(factor: float) -> Callable[[Delta], Delta]:
    return lambda delta: dataclasses.replace(delta, prompt=type(delta.prompt)(delta.prompt.kv * factor))


def _shift_prefix_positions(kind: str, by: int) -> Callable[[pytest.MonkeyPatch], None]:
    """Rows of test adapter `kind` get every position shifted by `by` (an off-by-one in counting the prefix)."""

    def apply(monkeypatch: pytest.MonkeyPatch) -> None:
        configs: list[object] = []  # the adapter's config objects: compiled copies of a delta share them

        def remember(delta: Delta) -> Delta:
            configs.append(delta.config)
            return delta

        def wrap(build_prefill: Callable) -> Callable:
            def prefill_shifted(rows: list, *args: Any, **kwargs: Any) -> Any:
                prefill = build_prefill(rows, *args, **kwargs)
                for index, row in enumerate(rows):
                    if row.delta is not None and any(row.delta.config is config for config in configs):
                        prefill.position_ids[index] += by
                        _Counter.changes += 1
                return prefill

            return prefill_shifted

        _on_compiled(kind, remember, counts=False)(monkeypatch)
        _patch(monkeypatch, "prefill", wrap)

    return apply


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    apply: Callable[[pytest.MonkeyPatch], None]


MUTATIONS = (
    Mutation("lora-output-x1.003", "plain LoRA: output scaled by 1.003", _on_compiled("lora", _scale_lora(1.003))),
    Mutation("lora_patterns-output-x1.003", "LoRA with rank/alpha patterns and rsLoRA: output scaled by 1.003",
             _on_compiled("lora_patterns", _scale_lora(1.003))),
    Mutation("ia3-vectors-x1.01", "IA3: every vector scaled by 1.01", _on_compiled("ia3", _scale_ia3(1.01))),
    Mutation("bitfit-biases-x1.01", "BitFit: every bias scaled by 1.01", _on_compiled("bitfit", _scale_bitfit(1.01))),
    Mutation("seq_bn-up-x1.01", "bottleneck (Pfeiffer): up-projections scaled by 1.01",
             _on_compiled("seq_bn", _scale_bottleneck("up", 1.01))),
    Mutation("compacter-down-x1.01", "Compacter: the dense down-projections (Kronecker sums) scaled by 1.01",
             _on_compiled("compacter", _scale_bottleneck("down", 1.01))),
    Mutation("adapter_plus-scale-x1.01", "AdapterPlus: channel scaling scaled by 1.01",
             _on_compiled("adapter_plus", _scale_bottleneck("scale", 1.01))),
    Mutation("par_bn_ln_after-norm-x1.01", "parallel adapter with ln_after: the norm's weight scaled by 1.01",
             _on_compiled("par_bn_ln_after", _scale_bottleneck("norm", 1.01))),
    Mutation("prompt_tuning-embeddings-x1.01", "prompt tuning (random init): virtual embeddings scaled by 1.01",
             _on_compiled("prompt_tuning", _scale_virtual_embeddings(1.01))),
    Mutation("prompt_tuning_text-embeddings-x1.01", "prompt tuning (TEXT init): virtual embeddings scaled by 1.01",
             _on_compiled("prompt_tuning_text", _scale_virtual_embeddings(1.01))),
    Mutation("p_tuning_mlp-embeddings-x1.01", "P-tuning (MLP): virtual embeddings scaled by 1.01",
             _on_compiled("p_tuning_mlp", _scale_virtual_embeddings(1.01))),
    Mutation("p_tuning_lstm-embeddings-x1.01", "P-tuning (LSTM): virtual embeddings scaled by 1.01",
             _on_compiled("p_tuning_lstm", _scale_virtual_embeddings(1.01))),
    Mutation("prefix_tuning-positions+1", "prefix tuning: the row's positions shifted by one",
             _shift_prefix_positions("prefix_tuning", 1)),
    Mutation("prefix_projection-positions+1", "prefix tuning with projection: the row's positions shifted by one",
             _shift_prefix_positions("prefix_projection", 1)),
    Mutation("prefix_tuning-kv-x1.01", "prefix tuning: keys and values scaled by 1.01",
             _on_compiled("prefix_tuning", _scale_kv_prefix(1.01))),
    Mutation("prefix_projection-kv-x1.01", "prefix tuning with projection: keys and values scaled by 1.01",
             _on_compiled("prefix_projection", _scale_kv_prefix(1.01))),
)
BY_NAME = {mutation.name: mutation for mutation in MUTATIONS}


# -- the pytest plugin: active only in processes this check starts ---------------------------------------
_monkeypatch: pytest.MonkeyPatch | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _monkeypatch
    name = os.environ.get(MUTATION_ENV)
    if name:
        _monkeypatch = pytest.MonkeyPatch()
        BY_NAME[name].apply(_monkeypatch)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _monkeypatch is not None:
        _monkeypatch.undo()
    report = os.environ.get(REPORT_ENV)
    if report:
        Path(report).write_text(json.dumps({"changes": _Counter.changes}))


# -- the runner -------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    verdict: str  # CAUGHT, MISSED, INERT or ERROR
    seconds: float
    detail: str  # the first failing test, or why the run was not usable


def run_tests(mutation: str, tests: list[str], keep_going: bool, report: Path) -> Outcome:
    command = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", "-p", "tests.mutation_check"]
    command += ([] if keep_going else ["-x"]) + tests
    env = {**os.environ, MUTATION_ENV: mutation, REPORT_ENV: str(report)}
    report.unlink(missing_ok=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    failed = [line.removeprefix("FAILED ") for line in done.stdout.splitlines() if line.startswith("FAILED ")]
    changes = json.loads(report.read_text())["changes"] if report.exists() else 0
    if done.returncode not in (0, 1):  # interrupted, internal or usage error, no tests collected
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        return Outcome("ERROR", seconds, f"pytest exit status {done.returncode}: " + " | ".join(tail))
    if mutation and not changes:
        return Outcome("INERT", seconds, "it never changed anything: update POINTS in tests/mutation_check.py")
    if done.returncode == 0:
        return Outcome("MISSED", seconds, "every test passed")
    return Outcome("CAUGHT", seconds, "; ".join(failed) if keep_going else (failed[0] if failed else "a test failed"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mutations", nargs="*", help="names from --list (default: all)")
    parser.add_argument("--list", action="store_true", help="print the mutations and the points they patch")
    parser.add_argument("--tests", action="append", help="a test file or node to run per mutation (repeatable; "
                        "default: the equality tests)")
    parser.add_argument("--keep-going", action="store_true", help="run every test, to list all that catch a mutation")
    parser.add_argument("--skip-baseline", action="store_true", help="do not first run the tests unmutated")
    args = parser.parse_args(argv)
    if args.list:
        for point, target in POINTS.items():
            print(f"point {point}: {target.module}.{target.name} ({target.why})")
        for mutation in MUTATIONS:
            print(f"{mutation.name:38s} {mutation.description}")
        return 0
    unknown = [name for name in args.mutations if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown mutations {unknown}; see --list")
    chosen = [BY_NAME[name] for name in args.mutations] or list(MUTATIONS)
    tests = args.tests or list(EQUALITY_TESTS)
    report = Path(os.environ.get("TMPDIR", "/tmp")) / f"deltaserve-mutation-{os.getpid()}.json"

    if not args.skip_baseline:
        baseline = run_tests("", tests, keep_going=False, report=report)
        if baseline.verdict != "MISSED":  # unmutated, every test must pass
            print(f"baseline: the unmutated tests do not pass ({baseline.detail}); no mutation can be judged")
            return 2
        print(f"baseline  the unmutated tests pass ({baseline.seconds:.0f} s)", flush=True)

    outcomes = {}
    for mutation in chosen:
        outcome = outcomes[mutation.name] = run_tests(mutation.name, tests, args.keep_going, report)
        print(f"{outcome.verdict:7s} {mutation.name:38s} {outcome.seconds:5.0f} s  {outcome.detail}", flush=True)
    report.unlink(missing_ok=True)
    not_caught = [name for name, outcome in outcomes.items() if outcome.verdict != "CAUGHT"]
    summary = f"{len(outcomes) - len(not_caught)} of {len(outcomes)} mutations caught"
    print(summary + (f"; not caught: {not_caught}" if not_caught else ""))
    return 1 if not_caught else 0


if __name__ == "__main__":
    sys.exit(main())
