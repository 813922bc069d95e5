"""BitFit adapters (only biases trained) equal transformers with the biases really set on the base model's Linear
layers: alone, in mixed batches with every other kind on both decode paths, and through an upload. Every bad
file is refused with the tensor or field named."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from service.config import Settings
from service.engine import Engine
from service.errors import IncompatibleAdapter, InvalidAdapterConfig, InvalidAdapterWeights
from service.main import create_app
from tests.conftest import KINDS
from tests.http_server import serve
from tests.peft_reference import (
    FLOAT32_TOLERANCE,
    PeftRun,
    assert_matches_peft,
    engine_logprobs,
    generate_runs,
    logprob_params,
)
from tests.test_api import multipart
from tests.test_engine_equality import EOS, NEW_TOKENS, PROMPTS

FP32 = torch.float32
TARGETS = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "model.layers.0.mlp.down_proj",
           "lm_head"]
BIAS_STD = 0.5  # moves the tiny model's greedy tokens clearly (checked below)


def bitfit_biases(model, seed: int = 7) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(model.get_submodule(name).out_features, generator=generator) * BIAS_STD
            for name in TARGETS}


def save_bitfit(directory: Path, biases: dict[str, torch.Tensor], **config) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps({"peft_type": "BITFIT", **config}))
    save_file({f"{name}.bias": tensor.contiguous() for name, tensor in biases.items()},
              str(directory / "adapter_model.safetensors"))
    return directory


def with_biases(model, biases: dict[str, torch.Tensor]):
    """The oracle: a copy of `model` whose Linear layers really have those biases."""
    oracle = copy.deepcopy(model)
    for name, bias in biases.items():
        oracle.get_submodule(name).bias = torch.nn.Parameter(bias.clone())
    return oracle.eval()


@pytest.fixture(scope="module")
def bitfit(tmp_path_factory, tiny_model) -> tuple[Path, dict[str, torch.Tensor]]:
    biases = bitfit_biases(tiny_model)
    return save_bitfit(tmp_path_factory.mktemp("bitfit") / "bitfit", biases, target_modules=TARGETS), biases


@pytest.fixture(scope="module")
def oracle_runs(bitfit, tiny_model, tokenizer) -> dict[str, PeftRun]:
    model = with_biases(tiny_model, bitfit[1])
    return {text: generate_runs(model, tokenizer, [text], NEW_TOKENS, EOS)[0] for text in PROMPTS}


@pytest.fixture(params=["eager", "static"])
def engines(request, engine, static_engine, bitfit):
    """The shared engines (every test kind loaded), with the BitFit adapter beside them for this test only."""
    chosen = engine if request.param == "eager" else static_engine
    chosen.load("bitfit", bitfit[0])
    yield chosen
    chosen.unregister("bitfit")


def test_bitfit_alone_equals_transformers_with_the_biases(engines, oracle_runs, vocab_size):
    ours = engines.generate(PROMPTS, "bitfit", logprob_params(NEW_TOKENS, vocab_size))
    for text, result in zip(PROMPTS, ours):
        assert_matches_peft(result, oracle_runs[text], FP32, f"bitfit {text!r}", eos_token_id=EOS)


def test_bitfit_in_a_mixed_batch_with_every_kind(engines, oracle_runs, vocab_size):
    params = logprob_params(NEW_TOKENS, vocab_size)
    names = ["bitfit", *KINDS, None, "bitfit"]
    plan = [(names[i % len(names)], PROMPTS[i % len(PROMPTS)]) for i in range(len(names))]
    alone = {(name, text): engines.generate([text], name, params)[0] for name, text in plan}
    mixed = engines.generate_rows([engines.make_row(text, engines.get(name), params) for name, text in plan])
    for (name, text), result in zip(plan, mixed):
        if name == "bitfit":
            assert_matches_peft(result, oracle_runs[text], FP32, f"bitfit {text!r} mixed", eos_token_id=EOS)
        else:  # the other kinds equal PEFT alone (test_engine_equality.py); mixed, they equal themselves alone
            assert result.token_ids == alone[(name, text)].token_ids, f"{name} {text!r} in a batch with bitfit"


def test_the_biases_move_the_output_well_above_the_tolerance(tiny_base, bitfit, vocab_size):
    """A BitFit adapter the engine ignored, or one 1% off, must fail the equality tests."""
    engine = Engine(tiny_base, decode="eager")
    engine.load("bitfit", bitfit[0])
    params = logprob_params(NEW_TOKENS, vocab_size)
    base, adapted = engine.generate(PROMPTS, None, params), engine.generate(PROMPTS, "bitfit", params)
    assert [r.token_ids for r in adapted] != [r.token_ids for r in base]
    moved = min(float((engine_logprobs(a, vocab_size)[0] - engine_logprobs(b, vocab_size)[0]).abs().max())
                for a, b in zip(adapted, base))
    assert moved >= 1000 * FLOAT32_TOLERANCE


def test_a_one_percent_error_is_caught(tiny_base, tiny_model, tokenizer, bitfit, tmp_path, vocab_size):
    nudged = {name: bias * 1.01 for name, bias in bitfit[1].items()}
    engine = Engine(tiny_base, decode="eager")
    engine.load("nudged", save_bitfit(tmp_path / "nudged", nudged))
    expected = generate_runs(with_biases(tiny_model, bitfit[1]), tokenizer, PROMPTS[:1], NEW_TOKENS, EOS)[0]
    result = engine.generate(PROMPTS[:1], "nudged", logprob_params(NEW_TOKENS, vocab_size))[0]
    with pytest.raises(AssertionError):
        assert_matches_peft(result, expected, FP32, "nudged", eos_token_id=EOS)


def test_a_base_with_its_own_biases_gets_the_trained_ones(tiny_model, tokenizer, tmp_path, vocab_size):
    """BitFit tunes existing biases: the adapter holds the trained values, not a difference."""
    from service.engine.base_model import wrap_base_model

    biased_base = with_biases(tiny_model, {"model.layers.0.self_attn.q_proj": torch.full((64,), 0.3)})
    trained = bitfit_biases(tiny_model, seed=11)
    engine = Engine(wrap_base_model(copy.deepcopy(biased_base), tokenizer, name="biased"), decode="eager")
    engine.load("tuned", save_bitfit(tmp_path / "tuned", trained))
    expected = generate_runs(with_biases(biased_base, trained), tokenizer, PROMPTS, NEW_TOKENS, EOS)
    ours = engine.generate(PROMPTS, "tuned", logprob_params(NEW_TOKENS, vocab_size))
    for text, result, run in zip(PROMPTS, ours, expected):
        assert_matches_peft(result, run, FP32, f"tuned {text!r}", eos_token_id=EOS)


REFUSALS = {
    "not-a-bias": ({"model.layers.0.self_attn.q_proj.weight": (64, 64)}, {}, InvalidAdapterWeights,
                   "is not a bias"),
    "unknown-module": ({"model.layers.9.self_attn.q_proj.bias": (64,)}, {}, IncompatibleAdapter,
                       "does not have as a Linear layer"),
    "not-linear": ({"model.norm.bias": (64,)}, {}, IncompatibleAdapter, "does not have as a Linear layer"),
    "wrong-shape": ({"model.layers.0.self_attn.q_proj.bias": (63,)}, {}, InvalidAdapterWeights,
                    "has shape (63,)"),
    "declared-without-tensor": ({"lm_head.bias": None}, {"target_modules": ["lm_head", "model.layers.0.mlp.up_proj"]},
                                InvalidAdapterConfig, "hold no bias for it"),
    "tensor-not-declared": ({"lm_head.bias": None, "model.layers.0.mlp.up_proj.bias": None},
                            {"target_modules": ["lm_head"]}, InvalidAdapterConfig, "which target_modules omits"),
    "unknown-field": ({"lm_head.bias": None}, {"r": 8}, InvalidAdapterConfig, "unknown field(s)"),
    "bad-targets": ({"lm_head.bias": None}, {"target_modules": "lm_head"}, InvalidAdapterConfig,
                    "must be a non-empty list"),
    "non-finite": ({"lm_head.bias": float("nan")}, {}, InvalidAdapterWeights, "holds NaN or infinite values"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_bitfit_adapters_are_refused_by_name(case, tiny_base, tiny_model, tmp_path):
    shapes, config, error, says = REFUSALS[case]
    tensors = {}
    for key, shape in shapes.items():
        module = key.removesuffix(".bias")
        if shape is None or isinstance(shape, float):
            tensor = torch.zeros(tiny_model.get_submodule(module).out_features)
            tensor[0] = shape if isinstance(shape, float) else 0.1
        else:
            tensor = torch.zeros(shape)
        tensors[key] = tensor
    directory = tmp_path / case
    directory.mkdir()
    (directory / "adapter_config.json").write_text(json.dumps({"peft_type": "BITFIT", **config}))
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    with pytest.raises(error, match=None) as raised:
        Engine(tiny_base, decode="eager").load("bad", directory)
    assert says in str(raised.value)


def test_upload_and_generate_over_http(tmp_path, tiny_base, bitfit, oracle_runs):
    import httpx

    settings = Settings(adapters_dir=tmp_path / "store", load_demo_adapters=False)
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        uploaded = client.put("/adapters/biases", **multipart(bitfit[0]))
        assert uploaded.status_code == 201, uploaded.text
        assert uploaded.json()["kind"] == "bitfit"
        assert uploaded.json()["parameters"] == sum(t.numel() for t in bitfit[1].values())
        text = PROMPTS[0]
        answer = client.post("/generate", json={"adapter": "biases", "text": text, "max_new_tokens": NEW_TOKENS})
        assert answer.status_code == 200
        expected = oracle_runs[text].tokens
        assert answer.json()["completion_tokens"] == len(expected)
        models = client.get("/v1/models").json()["data"]
        assert {"id": "biases", "kind": "bitfit"}.items() <= next(m for m in models if m["id"] == "biases").items()
