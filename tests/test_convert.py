"""`deltaserve convert`: OpenDelta checkpoints, built here in the layout OpenDelta's `save_finetuned` writes
(`config.json` with `delta_type`, `pytorch_model.bin` holding only the delta's parameters), are converted, loaded
by the engine, and equal the base model with OpenDelta's own arithmetic applied by hand (forward hooks adding
`(x A^T B^T) * lora_alpha / r`; biases really set). The converted LoRA also loads in PEFT and equals the same.
Everything that does not map is refused with the problem named, and no output folder is left behind."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from service.engine import Engine
from service.opendelta_convert import ConversionError, convert_opendelta
from tests.peft_reference import FLOAT32_TOLERANCE, assert_matches_peft, generate_runs, load_peft, logprob_params
from tests.test_bitfit import with_biases
from tests.test_engine_equality import EOS, NEW_TOKENS, PROMPTS

FP32 = torch.float32
LORA_TARGETS = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "model.layers.0.mlp.down_proj"]
BITFIT_TARGETS = ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.up_proj", "lm_head"]
RANK, ALPHA = 4, 12  # scaling 3: a converter that dropped OpenDelta's lora_alpha / r would be far off


def save_opendelta(directory: Path, config: dict, state: dict[str, torch.Tensor]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    torch.save(state, directory / "pytorch_model.bin")
    return directory


def lora_state(model, seed: int = 3) -> dict[str, torch.Tensor]:
    """OpenDelta's LowRankLinear parameters, its unused `lin` included (it is trainable, so saved)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name in LORA_TARGETS:
        linear = model.get_submodule(name)
        state[f"{name}.lora.lora_A"] = torch.randn(RANK, linear.in_features, generator=generator) * 0.3
        state[f"{name}.lora.lora_B"] = torch.randn(linear.out_features, RANK, generator=generator) * 0.3
        state[f"{name}.lora.lin.weight"] = torch.randn(linear.out_features, linear.in_features, generator=generator)
        state[f"{name}.lora.lin.bias"] = torch.randn(linear.out_features, generator=generator)
    return state


LORA_CONFIG = {"delta_type": "lora", "lora_r": RANK, "lora_alpha": ALPHA, "lora_dropout": 0.0,
               "modified_modules": ["q_proj", "v_proj", "down_proj"], "unfrozen_modules": ["deltas"],
               "common_structure": False, "backbone_class": "LlamaForCausalLM", "opendelta_version": "0.3.2"}


def with_opendelta_lora(model, state: dict[str, torch.Tensor], scaling: float):
    """The oracle: a copy of `model` whose targets' outputs get OpenDelta's LowRankLinear.forward added."""
    oracle = copy.deepcopy(model).eval()
    for name in LORA_TARGETS:
        a, b = state[f"{name}.lora.lora_A"], state[f"{name}.lora.lora_B"]
        oracle.get_submodule(name).register_forward_hook(
            lambda _m, args, out, a=a, b=b: out + (args[0] @ a.T @ b.T) * scaling)
    return oracle


@pytest.fixture(scope="module")
def lora(tmp_path_factory, tiny_model):
    state = lora_state(tiny_model)
    root = tmp_path_factory.mktemp("opendelta-lora")
    source = save_opendelta(root / "opendelta", LORA_CONFIG, state)
    summary = convert_opendelta(source, root / "converted", tiny_model, "tiny-llama")
    return root / "converted", state, summary


@pytest.fixture(scope="module")
def eager_engine(tiny_base):
    return Engine(tiny_base, decode="eager")


def runs(model, tokenizer):
    return {text: generate_runs(model, tokenizer, [text], NEW_TOKENS, EOS)[0] for text in PROMPTS}


def test_lora_converts_to_peft_names_and_scaling(lora):
    directory, _, summary = lora
    config = json.loads((directory / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", RANK, ALPHA)
    assert config["target_modules"] == sorted(LORA_TARGETS)
    assert summary == f"lora -> PEFT LoRA, r={RANK}, lora_alpha={ALPHA}: 3 modules, 6 tensors"


def test_converted_lora_in_the_engine_equals_opendelta_arithmetic(lora, eager_engine, tiny_model, tokenizer,
                                                                 vocab_size):
    directory, state, _ = lora
    expected = runs(with_opendelta_lora(tiny_model, state, ALPHA / RANK), tokenizer)
    assert [run.tokens for run in expected.values()] != [run.tokens for run in runs(tiny_model, tokenizer).values()]
    eager_engine.load("od-lora", directory)
    try:
        ours = eager_engine.generate(PROMPTS, "od-lora", logprob_params(NEW_TOKENS, vocab_size))
    finally:
        eager_engine.unregister("od-lora")
    for text, result in zip(PROMPTS, ours):
        assert_matches_peft(result, expected[text], FP32, f"opendelta lora {text!r}", eos_token_id=EOS)


def test_converted_lora_loads_in_peft_and_equals_opendelta_arithmetic(lora, tiny_model, tokenizer):
    directory, state, _ = lora
    expected = runs(with_opendelta_lora(tiny_model, state, ALPHA / RANK), tokenizer)
    peft = runs(load_peft(tiny_model, directory), tokenizer)
    for text in PROMPTS:
        assert peft[text].tokens == expected[text].tokens, text
        assert float((peft[text].logits - expected[text].logits).abs().max()) <= FLOAT32_TOLERANCE, text


def test_a_one_percent_scaling_error_would_be_caught(lora, tiny_model, tokenizer):
    """The oracle is sharp enough: OpenDelta's arithmetic 1% off parts from the converted adapter in PEFT."""
    directory, state, _ = lora
    nudged = runs(with_opendelta_lora(tiny_model, state, 1.01 * ALPHA / RANK), tokenizer)
    peft = runs(load_peft(tiny_model, directory), tokenizer)
    assert max(float((peft[t].logits[:1] - nudged[t].logits[:1]).abs().max()) for t in PROMPTS) > 10 * FLOAT32_TOLERANCE


def test_converted_bitfit_in_the_engine_equals_the_biases_really_set(tmp_path, tiny_model, tokenizer, eager_engine,
                                                                    vocab_size):
    generator = torch.Generator().manual_seed(11)
    biases = {name: torch.randn(tiny_model.get_submodule(name).out_features, generator=generator) * 0.5
              for name in BITFIT_TARGETS}
    source = save_opendelta(tmp_path / "opendelta", {"delta_type": "bitfit", "modified_modules": ["q_proj"]},
                            {f"{name}.bias": bias for name, bias in biases.items()})
    assert convert_opendelta(source, tmp_path / "out", tiny_model, "tiny").startswith("bitfit -> DeltaServe BitFit")
    expected = runs(with_biases(tiny_model, biases), tokenizer)
    eager_engine.load("od-bitfit", tmp_path / "out")
    try:
        ours = eager_engine.generate(PROMPTS, "od-bitfit", logprob_params(NEW_TOKENS, vocab_size))
    finally:
        eager_engine.unregister("od-bitfit")
    for text, result in zip(PROMPTS, ours):
        assert_matches_peft(result, expected[text], FP32, f"opendelta bitfit {text!r}", eos_token_id=EOS)


class RunsCode:
    """A pickle payload: unpickling it would call os.system and create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_not_run(tmp_path, tiny_model):
    marker = tmp_path / "ran"
    source = tmp_path / "evil"
    source.mkdir()
    (source / "config.json").write_text(json.dumps(LORA_CONFIG))
    torch.save({"model.layers.0.self_attn.q_proj.lora.lora_A": RunsCode(marker)}, source / "pytorch_model.bin")
    with pytest.raises(ConversionError, match="weights_only=True, so it was not unpickled"):
        convert_opendelta(source, tmp_path / "out", tiny_model, "tiny")
    assert not marker.exists() and not (tmp_path / "out").exists()


def _refused(tmp_path, model, config, state, match):
    source = save_opendelta(tmp_path / "src", config, state)
    with pytest.raises(ConversionError, match=match):
        convert_opendelta(source, tmp_path / "out", model, "tiny")
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["src"]


@pytest.mark.parametrize("delta_type", ["prefix", "soft_prompt", "adapter", "compacter", "low_rank_adapter", "x"])
def test_other_delta_types_are_refused_by_name(tmp_path, tiny_model, delta_type):
    _refused(tmp_path, tiny_model, {**LORA_CONFIG, "delta_type": delta_type}, lora_state(tiny_model),
             f"delta_type '{delta_type}' is not converted")


def test_keys_modules_and_shapes_that_do_not_map_are_refused(tmp_path, tiny_model):
    good = lora_state(tiny_model)
    q = "model.layers.0.self_attn.q_proj"
    cases = [
        ({**good, f"{q}.lora.lora_C": torch.zeros(1)}, "unknown LoRA parameter 'lora_C'"),
        ({**good, "model.norm.weight": torch.zeros(1)}, "model.norm.weight: not a LoRA parameter"),
        ({"model.layers.9.self_attn.q_proj.lora.lora_A": torch.zeros(RANK, 8),
          "model.layers.9.self_attn.q_proj.lora.lora_B": torch.zeros(8, RANK)}, "no module 'model.layers.9"),
        ({**good, f"{q}.lora.lora_A": good[f"{q}.lora.lora_A"][:2]}, "shape \\[2, "),
        ({k: v for k, v in good.items() if not k.startswith(q + ".lora.lora_B")}, f"{q}.lora.lora_B is missing"),
    ]
    for index, (state, match) in enumerate(cases):
        _refused(tmp_path / str(index), tiny_model, LORA_CONFIG, state, match)
    _refused(tmp_path / "norm", tiny_model, {"delta_type": "bitfit"},
             {"model.layers.0.input_layernorm.bitfit.bias": torch.zeros(tiny_model.config.hidden_size)},
             "non-Linear module")
    _refused(tmp_path / "alpha", tiny_model, {**LORA_CONFIG, "lora_alpha": None}, good, "lora_alpha must be a number")


def test_the_cli_converts_on_disk_and_refuses_a_malicious_pickle(tmp_path, tiny_model, tokenizer, lora):
    base = tmp_path / "base"
    tiny_model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    source = save_opendelta(tmp_path / "od", LORA_CONFIG, lora[1])
    command = [sys.executable, "-m", "deltaserve", "convert", "--base-model", str(base)]
    done = subprocess.run([*command, str(source), str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"lora -> PEFT LoRA, r={RANK}, lora_alpha={ALPHA}: 3 modules, 6 tensors" in done.stdout
    assert (tmp_path / "out" / "adapter_model.safetensors").read_bytes() == \
        (lora[0] / "adapter_model.safetensors").read_bytes()

    marker = tmp_path / "ran"
    torch.save({"x.lora.lora_A": RunsCode(marker)}, source / "pytorch_model.bin")
    refused = subprocess.run([*command, str(source), str(tmp_path / "evil")], capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and "weights_only=True, so it was not unpickled" in refused.stderr
    assert not marker.exists() and not (tmp_path / "evil").exists()
