"""The AdapterHub fixtures (tests/fixtures/adapterhub, written by the `adapters` library itself in a side
environment: tests/oracles/adapterhub/make_fixtures.py) load in this environment as they were made, and the
written-out arithmetic of tests/oracles/adapterhub/reference.py reproduces the library's outputs for every
bottleneck configuration: the specification the engine's bottleneck kind is held to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

from tests.oracles.adapterhub.reference import bottleneck_adapter, kronecker_sum

FIXTURES = Path(__file__).parent / "fixtures" / "adapterhub"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
LOGITS = load_file(FIXTURES / "expected_logits.safetensors")
ADAPTERS = [name for name in EXPECTED["outputs"] if name != "base"]
# Written out, the reference adds the same numbers in another order than the library: float32 rounding only.
LOGIT_TOLERANCE = 1e-4



def written_out(name: str) -> bool:
    """The configurations reference.py writes out: the library's presets, not every option of the engine's."""
    config = json.loads((FIXTURES / name / "adapter_config.json").read_text())["config"]
    plain = not (config["ln_after"] or config["use_gating"] or config["shared_W_phm"] or not config["phm_bias"])
    return (plain and config["original_ln_after"] and config["residual_before_ln"] is True
            and config["non_linearity"] in ("relu", "gelu", "swish", "silu", "tanh"))


UNSUPPORTED_BY_THE_REFERENCE = {name for name in ADAPTERS if not written_out(name)}


@pytest.fixture(scope="module")
def base() -> LlamaForCausalLM:
    return LlamaForCausalLM.from_pretrained(FIXTURES / "base", dtype=torch.float32).eval()


@torch.no_grad()
def outputs(model: LlamaForCausalLM) -> tuple[list[list[int]], list[torch.Tensor]]:
    tokens, logits = [], []
    for prompt in EXPECTED["prompts"]:
        ids = torch.tensor([prompt])
        generated = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                   max_new_tokens=EXPECTED["new_tokens"], min_new_tokens=EXPECTED["new_tokens"],
                                   eos_token_id=None, pad_token_id=0)
        tokens.append(generated[0, len(prompt):].tolist())
        logits.append(model(input_ids=generated[:, :-1]).logits[0, len(prompt) - 1:])  # every step's
    return tokens, logits


def assert_matches(name: str, tokens: list[list[int]], logits: list[torch.Tensor]) -> None:
    assert tokens == EXPECTED["outputs"][name]["tokens"]
    for index, row in enumerate(logits):
        torch.testing.assert_close(row, LOGITS[f"{name}/{index}"], rtol=0, atol=LOGIT_TOLERANCE)


def test_the_base_model_loads_as_the_library_saved_it(base) -> None:
    assert_matches("base", *outputs(base))


@pytest.mark.parametrize("name", [n for n in ADAPTERS if n not in UNSUPPORTED_BY_THE_REFERENCE])
def test_the_reference_arithmetic_equals_the_library(base, name: str) -> None:
    with bottleneck_adapter(base, FIXTURES / name):
        assert_matches(name, *outputs(base))
    assert_matches("base", *outputs(base))  # the hooks are gone


def test_every_fixture_adapter_changes_the_output() -> None:
    """A fixture the base model would pass as well tests nothing."""
    base_tokens = EXPECTED["outputs"]["base"]["tokens"]
    assert all(EXPECTED["outputs"][name]["tokens"] != base_tokens for name in ADAPTERS)


def test_the_reference_notices_a_one_percent_error(base) -> None:
    """The check is only as good as the smallest error it catches: scale one adapter's up-projection by 1.01."""
    directory = FIXTURES / "seq_bn"
    original = load_file(directory / "adapter.safetensors")
    key = next(k for k in original if k.endswith("adapter_up.weight"))
    import tests.oracles.adapterhub.reference as reference

    def nudged(path):
        tensors = dict(original)
        tensors[key] = tensors[key] * 1.01
        return tensors

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reference, "load_file", nudged)
        with bottleneck_adapter(base, directory):
            _, logits = outputs(base)
    worst = max(float((row - LOGITS[f"seq_bn/{i}"]).abs().max()) for i, row in enumerate(logits))
    assert worst > 10 * LOGIT_TOLERANCE


def test_kronecker_sum_is_the_sum_of_kronecker_products() -> None:
    rule, weights = torch.randn(3, 2, 2), torch.randn(3, 4, 5)
    expected = sum(torch.kron(rule[i], weights[i]) for i in range(3))
    torch.testing.assert_close(kronecker_sum(rule, weights), expected)
