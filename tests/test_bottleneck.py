"""Bottleneck adapters equal AdapterHub's `adapters` library: the same greedy tokens and, at every step, the
log-probabilities of the whole vocabulary within the float32 tolerance, for every configuration the library saved
in tests/fixtures/adapterhub (its own files and its own outputs, made in a side environment: make_fixtures.py).
Alone and mixed with every other kind, on both decode paths. The fixtures' base model is the suite's tiny model
(the same seed and shapes; checked below), so the fixture adapters sit beside the PEFT ones in one engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from service.engine import Engine
from service.engine.batch import RowRequest
from tests.conftest import KINDS
from tests.peft_reference import FLOAT32_TOLERANCE, PeftRun, assert_matches_peft, engine_logprobs, logprob_params

FIXTURES = Path(__file__).parent / "fixtures" / "adapterhub"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
LIBRARY_LOGITS = load_file(FIXTURES / "expected_logits.safetensors")
PROMPTS: list[list[int]] = EXPECTED["prompts"]
STEPS = EXPECTED["new_tokens"]
NOT_SERVED = {"seq_bn_gating"}  # refused by name (test_bottleneck_refusals.py)
SERVED = sorted(name for name in EXPECTED["outputs"] if name not in ("base", *NOT_SERVED))
EOS = 2
FP32 = torch.float32


def stored_form(source: Path, destination: Path) -> Path:
    """The folder as the store keeps it: the library's adapter.safetensors under PEFT's file name."""
    destination.mkdir(parents=True)
    shutil.copyfile(source / "adapter_config.json", destination / "adapter_config.json")
    shutil.copyfile(source / "adapter.safetensors", destination / "adapter_model.safetensors")
    return destination


def library_run(name: str, prompt: int) -> PeftRun:
    return PeftRun(tokens=EXPECTED["outputs"][name]["tokens"][prompt], logits=LIBRARY_LOGITS[f"{name}/{prompt}"])


def rows(engine: Engine, plan: list[tuple[str | None, int]], vocab_size: int) -> list[RowRequest]:
    params = logprob_params(STEPS, vocab_size)
    return [RowRequest(prompt_ids=PROMPTS[p], delta=engine.get(name), params=params) for name, p in plan]


@pytest.fixture(scope="module")
def bottleneck_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bottleneck")
    return {name: stored_form(FIXTURES / name, root / name) for name in SERVED}


@pytest.fixture(scope="module", params=["eager", "static"])
def engines(request, bottleneck_dirs):
    """The shared engines (every PEFT test kind loaded), with every fixture bottleneck adapter beside them."""
    chosen = request.getfixturevalue("engine" if request.param == "eager" else "static_engine")
    for name, directory in bottleneck_dirs.items():
        chosen.load(name, directory)
    yield chosen
    for name in bottleneck_dirs:
        chosen.unregister(name)


def test_the_fixture_base_is_the_suite_tiny_model(tiny_model) -> None:
    saved = load_file(FIXTURES / "base" / "model.safetensors")
    state = tiny_model.state_dict()
    assert set(saved) == set(state) and all(torch.equal(saved[key], state[key]) for key in saved)


@pytest.mark.parametrize("name", SERVED)
def test_alone_equals_the_library(engines, name, vocab_size) -> None:
    results = engines.generate_rows(rows(engines, [(name, p) for p in range(len(PROMPTS))], vocab_size))
    for prompt, result in enumerate(results):
        assert_matches_peft(result, library_run(name, prompt), FP32, f"{name} prompt {prompt}", eos_token_id=EOS)
        assert result.finish_reason == "length"


def test_a_mixed_batch_of_every_bottleneck_variant_and_every_kind(engines, vocab_size) -> None:
    """Different bottleneck adapters (several non-linearities, wirings, norms) and every other kind in one
    forward pass: each bottleneck row equals the library, each other row equals itself alone."""
    names: list[str | None] = [*SERVED, *KINDS, None]
    plan = [(name, i % len(PROMPTS)) for i, name in enumerate(names)]
    mixed = engines.generate_rows(rows(engines, plan, vocab_size))
    for (name, prompt), result in zip(plan, mixed):
        if name in SERVED:
            assert_matches_peft(result, library_run(name, prompt), FP32, f"{name} mixed", eos_token_id=EOS)
        else:
            alone = engines.generate_rows(rows(engines, [(name, prompt)], vocab_size))[0]
            assert result.token_ids == alone.token_ids, f"{name} beside bottleneck adapters"
            difference = (engine_logprobs(result, vocab_size) - engine_logprobs(alone, vocab_size)).abs().max()
            assert float(difference) <= FLOAT32_TOLERANCE


def test_the_base_model_rows_of_a_mixed_batch_are_bit_identical(engines, vocab_size) -> None:
    plan = [(None, 0), ("seq_bn", 1), (None, 2), ("adapter_plus", 0), ("compacter", 2)]
    mixed = engines.generate_rows(rows(engines, plan, vocab_size))
    for (name, prompt), result in zip(plan, mixed):
        if name is None:
            assert result.token_ids == EXPECTED["outputs"]["base"]["tokens"][prompt]


def test_every_served_fixture_moves_the_output(engines, vocab_size) -> None:
    """An adapter the engine ignored would fail the equality tests: each moves the first step far above the
    tolerance (and the library's tokens differ from the base model's, make_fixtures checks)."""
    base = engines.generate_rows(rows(engines, [(None, 0)], vocab_size))[0]
    for name in SERVED:
        adapted = engines.generate_rows(rows(engines, [(name, 0)], vocab_size))[0]
        moved = (engine_logprobs(adapted, vocab_size)[0] - engine_logprobs(base, vocab_size)[0]).abs().max()
        assert float(moved) >= 100 * FLOAT32_TOLERANCE, name


@pytest.mark.parametrize("part, factor", [("adapter_up.weight", 1.01), ("adapter_down.0.bias", 1.01),
                                          ("scaling", 1.01)])
def test_a_one_percent_error_is_caught(tiny_base, tmp_path, vocab_size, part, factor) -> None:
    name = "seq_bn" if part != "scaling" else "adapter_plus"
    directory = stored_form(FIXTURES / name, tmp_path / name)
    tensors = load_file(directory / "adapter_model.safetensors")
    key = next(k for k in sorted(tensors) if k.endswith(part))
    tensors[key] = tensors[key] * factor
    from safetensors.torch import save_file

    save_file(tensors, str(directory / "adapter_model.safetensors"))
    engine = Engine(tiny_base, decode="eager")
    engine.load("nudged", directory)
    results = engine.generate_rows(rows(engine, [("nudged", p) for p in range(len(PROMPTS))], vocab_size))
    failures = 0
    for prompt, result in enumerate(results):
        try:
            assert_matches_peft(result, library_run(name, prompt), FP32, "nudged", eos_token_id=EOS)
        except AssertionError:
            failures += 1
    assert failures == len(PROMPTS)


def test_compiled_forms_are_dense(engine, bottleneck_dirs) -> None:
    """Compacter and the low-rank adapter are plain down/up matrices once compiled: no Kronecker product is left
    for the request path."""
    from service.engine.deltas.bottleneck import BottleneckPiece

    delta = engine.compile(bottleneck_dirs["compacter"])
    assert delta.kind == "bottleneck"
    assert delta.modules and all(isinstance(piece, BottleneckPiece) for piece in delta.modules.values())
    sublayers = ("mlp.down_proj", "self_attn.o_proj")
    assert sorted(delta.modules) == [f"model.layers.{i}.{m}" for i in range(2) for m in sublayers]
    piece = delta.modules["model.layers.0.mlp.down_proj"]
    assert isinstance(piece, BottleneckPiece)
    assert tuple(piece.down.shape) == (8, 64) and tuple(piece.up.shape) == (64, 8)
