"""Expected outputs of bottleneck adapters, computed by AdapterHub's own `adapters` library.

`adapters` 1.3 pins transformers ~4.57, so it cannot run in the project's environment (transformers 5). This
script runs in a side environment and writes fixtures the project's tests compare against:

    make adapterhub-fixtures      # builds .venv-adapterhub (adapters 1.3, transformers 4.57, torch) and runs this

or by hand: `<side env>/bin/python tests/oracles/adapterhub/make_fixtures.py tests/fixtures/adapterhub`.

What it writes under OUT (small: well under a megabyte):
- base/: a tiny random Llama (the shape of tests/factory.py's, seed 0), saved as safetensors; both
  transformers versions load the same weights (check_base.py in the project's environment checks it);
- <config>/: one adapter per bottleneck configuration, saved by `model.save_adapter(dir, name,
  use_safetensors=True)`: adapter_config.json + adapter.safetensors, exactly what a user uploads. Every
  parameter is drawn at random (the library starts up-projections at zero, so a fresh adapter would change
  nothing and test nothing), at a scale where the greedy tokens differ from the base model's;
- expected.json: per adapter and for the base model alone, for each prompt (token ids, so no tokenizer is
  involved), the greedy continuation (8 tokens); expected_logits.safetensors: the float32 logits of each of
  those steps, [steps, vocab] (keys "<adapter or base>/<prompt index>").

Never edit the fixtures by hand: rerun this.
"""

from __future__ import annotations  # noqa: I001  (`adapters` here is AdapterHub's library, not our adapters/)

import json
import platform
import sys
from pathlib import Path

import adapters
import torch
import transformers
from adapters import (
    AdapterPlusConfig,
    BnConfig,
    CompacterConfig,
    CompacterPlusPlusConfig,
    DoubleSeqBnConfig,
    ParBnConfig,
    SeqBnConfig,
)
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 300
PROMPTS = [[5, 17, 42, 99, 7, 150, 33], [200, 11, 64, 8], [1, 250, 3, 77, 120, 45, 9, 10, 31, 260, 4]]
NEW_TOKENS = 8
PARAMETER_STD = 0.4  # random adapter parameters: large enough to move the greedy tokens of this tiny model

# name -> the configuration a user would write. Reduction factors divide the tiny model's hidden size (64).
CONFIGS: dict[str, BnConfig] = {
    "seq_bn": SeqBnConfig(reduction_factor=8),
    "seq_bn_gelu_r4": SeqBnConfig(reduction_factor=4, non_linearity="gelu"),
    "seq_bn_learned_scaling": SeqBnConfig(reduction_factor=8, scaling="learned"),
    # ln_before is left out: the library cannot save it as safetensors (its layer norm is registered twice).
    "seq_bn_channel_scaling_ln": SeqBnConfig(reduction_factor=8, scaling="channel", ln_after=True),
    "double_seq_bn": DoubleSeqBnConfig(reduction_factor=8),
    "par_bn": ParBnConfig(reduction_factor=8),
    "scaled_par_bn": ParBnConfig(reduction_factor=8, scaling=4.0),
    "compacter": CompacterConfig(reduction_factor=8, phm_dim=4),
    "compacter_pp": CompacterPlusPlusConfig(reduction_factor=8, phm_dim=4),
    "compacter_rank2_unshared": CompacterPlusPlusConfig(
        reduction_factor=8, phm_dim=2, phm_rank=2, shared_phm_rule=False, factorized_phm_rule=True
    ),
    # The low-rank adapter: a PHM layer of one block with a factorized weight, W = W_left @ W_right (rank 2).
    "low_rank_adapter": SeqBnConfig(reduction_factor=8, phm_layer=True, phm_dim=1, phm_rank=2, factorized_phm_W=True),
    # Options that change the arithmetic, one at a time (appended: the fixtures above keep their seeds).
    # AdapterPlus: original_ln_after=False, residual_before_ln=False, channel scaling. Its stochastic depth needs
    # torchvision to build and is the identity at inference, so it is left at 0.
    "adapter_plus": AdapterPlusConfig(reduction_factor=8, stochastic_depth=0.0),
    "seq_bn_residual_after_ln": SeqBnConfig(reduction_factor=8, residual_before_ln=False),
    "seq_bn_ln_after_adapter_residual": SeqBnConfig(reduction_factor=8, ln_after=True, adapter_residual_before_ln=True),
    "par_bn_ln_after": ParBnConfig(reduction_factor=8, ln_after=True),
    "seq_bn_per_layer_reduction": SeqBnConfig(reduction_factor={"0": 4, "default": 16}),
    "seq_bn_leave_out": SeqBnConfig(reduction_factor=8, leave_out=[0]),
    "attention_only_tanh": BnConfig(mh_adapter=True, output_adapter=False, reduction_factor=8, non_linearity="tanh",
                                    original_ln_before=True),
    "seq_bn_leakyrelu": SeqBnConfig(reduction_factor=8, non_linearity="leakyrelu"),
    "compacter_shared_w": CompacterConfig(reduction_factor=8, phm_dim=4, shared_W_phm=True),
    "compacter_dense_w_no_bias": CompacterPlusPlusConfig(reduction_factor=8, phm_dim=4, factorized_phm_W=False,
                                                         phm_bias=False),
    # Served by nobody: its gate averages over the tokens of each forward pass, so cached decoding differs from
    # uncached. Saved so that the refusal is tested on a file the library wrote.
    "seq_bn_gating": SeqBnConfig(reduction_factor=8, use_gating=True),
}


def tiny_base() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


@torch.no_grad()
def run(model: LlamaForCausalLM) -> tuple[list[list[int]], list[torch.Tensor]]:
    tokens, logits = [], []
    for prompt in PROMPTS:
        ids = torch.tensor([prompt])
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
            # Without the KV cache: adapters 1.3's Llama decoder layer takes the cache as `past_key_value`
            # while transformers 4.57 passes `past_key_values`, so cached decoding forgets the context (the
            # first token is right, the rest are not). Recomputing every step gives the library's true outputs.
            use_cache=False,
        )
        tokens.append(out[0, len(prompt) :].tolist())
        # Every step's logits, from one uncached forward over the prompt and the tokens chosen before that step:
        # position len(prompt) - 1 + k predicts step k.
        steps = model(input_ids=out[:, :-1]).logits[0, len(prompt) - 1 :]
        logits.append(steps.float().clone())
    return tokens, logits


@torch.no_grad()
def randomize(model: torch.nn.Module, name: str, seed: int) -> int:
    generator = torch.Generator().manual_seed(seed)
    count = 0
    for parameter_name, parameter in model.named_parameters():
        if f".{name}." in parameter_name or parameter_name.endswith(f".{name}"):
            noise = torch.randn(parameter.shape, generator=generator) * PARAMETER_STD
            # Scales and layer-norm weights stay near 1 (their trained values are); the rest is centred on 0.
            near_one = ("scaling" in parameter_name or "norm" in parameter_name) and "bias" not in parameter_name
            centre = 1.0 if near_one else 0.0
            parameter.copy_(centre + noise)
            count += parameter.numel()
    return count


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model = tiny_base()
    model.save_pretrained(out / "base", safe_serialization=True)
    adapters.init(model)

    expected: dict = {
        "prompts": PROMPTS,
        "new_tokens": NEW_TOKENS,
        "versions": {
            "adapters": adapters.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "outputs": {},
    }
    all_logits: dict[str, torch.Tensor] = {}
    base_tokens, base_logits = run(model)
    expected["outputs"]["base"] = {"tokens": base_tokens}
    all_logits.update({f"base/{i}": t for i, t in enumerate(base_logits)})

    for seed, (name, config) in enumerate(CONFIGS.items(), start=1):
        model.add_adapter(name, config=config)
        parameters = randomize(model, name, seed)
        model.set_active_adapters(name)
        tokens, logits = run(model)
        model.set_active_adapters(None)
        changed = sum(t != b for t, b in zip(tokens, base_tokens))
        if changed == 0:
            raise SystemExit(f"{name}: the random adapter does not change any greedy continuation; raise PARAMETER_STD")
        model.save_adapter(str(out / name), name, use_safetensors=True)
        expected["outputs"][name] = {"tokens": tokens, "parameters": parameters, "prompts_changed": changed}
        all_logits.update({f"{name}/{i}": t for i, t in enumerate(logits)})
        model.delete_adapter(name)
        print(f"{name:28s} {parameters:7d} parameters, changes {changed} of {len(PROMPTS)} continuations")

    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    save_file(all_logits, str(out / "expected_logits.safetensors"))
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
