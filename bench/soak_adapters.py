"""Adapter folders for the soak: every delta kind made by peft on the served model's own shapes (random
weights, as bench/workload.py makes them), variants for replacing them, and broken copies the server must refuse.

An adapter here is a folder as `PeftModel.save_pretrained` leaves it: adapter_config.json and
adapter_model.safetensors. What goes over HTTP is built from those two files.
"""

from __future__ import annotations

import copy
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class AdapterFiles:
    """The two files of one adapter, in memory, ready to upload."""

    config: bytes
    weights: bytes

    @classmethod
    def read(cls, folder: Path) -> AdapterFiles:
        return cls((folder / CONFIG_FILE).read_bytes(), (folder / WEIGHTS_FILE).read_bytes())

    def multipart(self, weights_name: str = WEIGHTS_FILE) -> list[tuple[str, tuple[str, bytes]]]:
        return [("files", (CONFIG_FILE, self.config)), ("files", (weights_name, self.weights))]

    def tar_gz(self, prefix: str = "") -> bytes:
        """One .tar.gz body; `prefix` is prepended to member names (an unsafe one makes a hostile archive)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for name, data in ((CONFIG_FILE, self.config), (WEIGHTS_FILE, self.weights)):
                member = tarfile.TarInfo(prefix + name)
                member.size = len(data)
                archive.addfile(member, io.BytesIO(data))
        return buffer.getvalue()


@dataclass(frozen=True)
class SoakAdapters:
    """What the soak uploads: `served` by kind (stable for the whole run), `variants` of the adapters it
    replaces while requests run (two versions each), and the `broken` uploads the server must refuse."""

    served: dict[str, AdapterFiles]
    variants: dict[str, tuple[AdapterFiles, AdapterFiles]]
    broken: dict[str, AdapterFiles]


def extra_configs(tokenizer_dir: str) -> list[tuple[str, object]]:
    """The variants bench/workload.py does not make: LoRA rank and alpha patterns with rsLoRA on every Linear,
    TEXT-initialised prompt tuning, P-tuning with an LSTM encoder, prefix tuning with a projection."""
    from peft import (
        LoraConfig,
        PrefixTuningConfig,
        PromptEncoderConfig,
        PromptEncoderReparameterizationType,
        PromptTuningConfig,
        PromptTuningInit,
    )

    return [
        (
            "lora-patterns",
            LoraConfig(
                task_type="CAUSAL_LM",
                r=4,
                lora_alpha=16,
                use_rslora=True,
                target_modules=ALL_LINEAR,
                rank_pattern={"down_proj": 8, "layers.1.self_attn.q_proj": 2},
                alpha_pattern={"o_proj": 4},
                init_lora_weights=False,
            ),
        ),
        (
            "prompt-text",
            PromptTuningConfig(
                task_type="CAUSAL_LM",
                prompt_tuning_init=PromptTuningInit.TEXT,
                prompt_tuning_init_text="Answer in one short sentence:",
                num_virtual_tokens=8,
                tokenizer_name_or_path=tokenizer_dir,
            ),
        ),
        (
            "ptuning-lstm",
            PromptEncoderConfig(
                task_type="CAUSAL_LM",
                num_virtual_tokens=6,
                encoder_hidden_size=64,
                encoder_reparameterization_type=PromptEncoderReparameterizationType.LSTM,
            ),
        ),
        (
            "prefix-projection",
            PrefixTuningConfig(
                task_type="CAUSAL_LM", num_virtual_tokens=6, prefix_projection=True, encoder_hidden_size=64
            ),
        ),
    ]


def load_model_for_shapes(base_model: str | None):
    """The served model itself (the embedded default when `base_model` is None), on the CPU in float32:
    peft needs real modules to make adapters of the right shapes."""
    from service.config import Settings
    from service.engine.base_model import load_base_model

    return load_base_model(Settings(base_model=base_model, device="cpu", dtype="float32")).model


def build_adapters(base_model: str | None, root: Path, seed: int) -> SoakAdapters:
    """Make every adapter the soak uploads under `root`, random-initialised from `seed`."""
    import torch

    from bench.workload import adapter_configs, save_adapters

    torch.manual_seed(seed)
    model = load_model_for_shapes(base_model)
    # bench/workload.py's mix (LoRA r8/r16/r64, IA3, prompt tuning, P-tuning, prefix, BitFit, bottleneck Pfeiffer and
    # Houlsby) plus the variants above.
    configs = [*adapter_configs(10), *extra_configs(model.name_or_path)]
    folders = save_adapters(model, [(name, copy.deepcopy(config)) for name, config in configs], root)
    served = {name: AdapterFiles.read(folder) for name, folder in folders.items()}
    swapped = {"swap-lora": served["lora-r8-0"], "swap-prefix": served["prefix-6"], "swap-prompt": served["prompt-4"]}
    return SoakAdapters(
        served=served,
        variants={name: (files, scaled(files, 0.5)) for name, files in swapped.items()},
        broken={
            "nan": scaled(served["lora-r8-0"], float("nan")),
            "huge": scaled(served["lora-r16-1"], 1e30),  # finite weights whose output overflows
            "truncated": AdapterFiles(served["lora-r8-0"].config, served["lora-r8-0"].weights[:4096]),
        },
    )


def scaled(files: AdapterFiles, factor: float) -> AdapterFiles:
    """The same adapter with every tensor multiplied by `factor` (NaN poisons every weight)."""
    from safetensors.torch import load, save

    tensors = {name: tensor * factor for name, tensor in load(files.weights).items()}
    return AdapterFiles(files.config, save(tensors))
