"""The benchmark's workload: a word-level tokenizer for random-initialised models, and adapters of every kind
on the model's own shapes: PEFT's kinds made and saved by PEFT, BitFit and bottleneck adapters written in the
files their formats define (the bottleneck ones in the layout AdapterHub's save_adapter writes, stored form),
with random weights (also used by the soak, bench/soak_adapters.py)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import (
    IA3Config,
    LoraConfig,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    get_peft_model,
)
from safetensors.torch import save_file
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass(frozen=True)
class BitFitAdapter:
    """Trained biases on these Linear layers of every decoder layer."""

    modules: tuple[str, ...] = ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")

    def save(self, model, folder: Path) -> None:
        folder.mkdir(parents=True)
        names = [f"model.layers.{i}.{m}" for i in range(model.config.num_hidden_layers) for m in self.modules]
        biases = {f"{n}.bias": torch.randn(model.get_submodule(n).out_features) * 0.02 for n in names}
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "BITFIT", "target_modules": names}))
        save_file(biases, str(folder / "adapter_model.safetensors"))


@dataclass(frozen=True)
class BottleneckAdapter:
    """A bottleneck adapter in AdapterHub's layout: Pfeiffer (after the feed-forward) or Houlsby (after both)."""

    reduction_factor: int = 16
    houlsby: bool = False

    def save(self, model, folder: Path) -> None:
        folder.mkdir(parents=True)
        hidden, name = model.config.hidden_size, "bench"
        width = hidden // self.reduction_factor
        config = {"mh_adapter": self.houlsby, "output_adapter": True, "reduction_factor": self.reduction_factor,
                  "non_linearity": "relu" if not self.houlsby else "swish", "original_ln_before": not self.houlsby,
                  "original_ln_after": True, "residual_before_ln": True, "is_parallel": False, "scaling": 1.0}
        locations = ["output_adapters", *(["attention_adapters"] if self.houlsby else [])]
        tensors = {}
        for layer in range(model.config.num_hidden_layers):
            for location in locations:
                prefix = f"model.layers.{layer}.{location}.adapters.{name}."
                tensors[prefix + "adapter_down.0.weight"] = torch.randn(width, hidden) * 0.02
                tensors[prefix + "adapter_down.0.bias"] = torch.zeros(width)
                tensors[prefix + "adapter_up.weight"] = torch.randn(hidden, width) * 0.02
                tensors[prefix + "adapter_up.bias"] = torch.zeros(hidden)
        saved = {"config": config, "name": name, "model_type": model.config.model_type, "hidden_size": hidden,
                 "model_class": type(model).__name__, "model_name": "", "version": "adapters.1.3.0"}
        (folder / "adapter_config.json").write_text(json.dumps(saved))
        save_file(tensors, str(folder / "adapter_model.safetensors"))  # the stored form's name


def word_level_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    # A real tokenizer object over the model's whole vocabulary: token ids map one to one.
    vocab = {f"t{i}": i for i in range(vocab_size)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="t0", eos_token="t1")


def adapter_configs(count: int) -> list[tuple[str, object]]:
    """`count` adapters cycling through every kind: LoRA ranks 8-64, IA3, prompt tuning, P-tuning, prefix, BitFit,
    bottleneck adapters (Pfeiffer and Houlsby)."""
    kinds = [
        (
            "lora-r8",
            LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=ATTENTION, init_lora_weights=False),
        ),
        (
            "lora-r16",
            LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, target_modules=ATTENTION, init_lora_weights=False),
        ),
        (
            "lora-r64",
            LoraConfig(
                task_type="CAUSAL_LM",
                r=64,
                lora_alpha=64,
                target_modules=[*ATTENTION, "down_proj"],
                init_lora_weights=False,
            ),
        ),
        (
            "ia3",
            IA3Config(
                task_type="CAUSAL_LM",
                target_modules=["k_proj", "v_proj", "down_proj"],
                feedforward_modules=["down_proj"],
            ),
        ),
        ("prompt", PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20)),
        ("ptuning", PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=16, encoder_hidden_size=128)),
        ("prefix", PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=16)),
        ("bitfit", BitFitAdapter()),
        ("bottleneck", BottleneckAdapter()),
        ("houlsby", BottleneckAdapter(houlsby=True)),
    ]
    return [(f"{kinds[i % len(kinds)][0]}-{i}", kinds[i % len(kinds)][1]) for i in range(count)]


def save_adapters(model, configs, root: Path) -> dict[str, Path]:
    paths = {}
    for name, config in configs:
        if isinstance(config, (BitFitAdapter, BottleneckAdapter)):
            config.save(model, root / name)
            paths[name] = root / name
            continue
        peft_model = get_peft_model(model, copy.deepcopy(config))
        peft_model.save_pretrained(str(root / name))
        # Take the adapter back out so the next one starts from the plain base model.
        model = (
            peft_model.unload() if not peft_model.peft_config["default"].is_prompt_learning else peft_model.base_model
        )
        paths[name] = root / name
    return paths
