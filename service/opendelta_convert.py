"""Convert an OpenDelta checkpoint (what `delta_model.save_finetuned(dir)` writes) into a format DeltaServe serves.

OpenDelta saves `config.json` (with `delta_type`) and `pytorch_model.bin`, a pickled state dict holding only the
delta's parameters under the backbone's module names. Converted here, exactly:

    lora     `<m>.lora.lora_A` [r, in], `<m>.lora.lora_B` [out, r]; OpenDelta adds `(x A^T B^T) * lora_alpha / r`
             to the Linear `<m>`'s output, which is PEFT's LoRA with the same r and lora_alpha (PEFT's scaling is
             also lora_alpha / r), so it becomes a PEFT LoRA folder. `<m>.lora.lin.*` is a Linear that
             OpenDelta's LowRankLinear builds but never calls in forward; it is dropped.
    bitfit   `<m>.bias` [out] for a Linear `<m>`: the trained bias, which becomes DeltaServe's BitFit format.

Everything else is refused with the problem named: other delta types (adapter, compacter, low-rank adapter,
prefix, soft prompt, ...), BitFit's biases after non-Linear modules (`<m>.bitfit.bias`), any key that does not
map, module paths the base model lacks, shapes that differ from the base. The pickle is read only with
`torch.load(weights_only=True)`, so a pickle that would run code is refused, never executed. The output folder
is written next to its destination and renamed into place, so it is whole or absent.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from service.config import Settings

__all__ = ["ConversionError", "convert_opendelta", "module_skeleton", "read_checkpoint"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "pytorch_model.bin"
CONVERTED = ("lora", "bitfit")


class ConversionError(Exception):
    """The checkpoint cannot be converted exactly; the message names why."""


def read_checkpoint(source: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The checkpoint's config and state dict, the pickle read without running any code it holds."""
    config_path, weights_path = source / CONFIG_FILE, source / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ConversionError(f"{path} is missing: an OpenDelta checkpoint holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{config_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ConversionError(f"{config_path} must hold a JSON object")
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses any global it does not allow, e.g. a __reduce__ payload
        raise ConversionError(
            f"{weights_path} refused: it is not a plain tensor state dict that loads with weights_only=True, so "
            f"it was not unpickled ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in state.items()):
        raise ConversionError(f"{weights_path} must hold a state dict of tensors by name")
    if not state:
        raise ConversionError(f"{weights_path} holds no tensors")
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise ConversionError(f"{key}: dtype {tensor.dtype} is not a floating-point type")
        if not torch.isfinite(tensor).all():
            raise ConversionError(f"{key}: holds values that are not finite")
    return config, state


def _linear(model: nn.Module, name: str, key: str) -> nn.Linear:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ConversionError(f"{key}: the base model has no module {name!r}") from None
    if not isinstance(module, nn.Linear):
        raise ConversionError(f"{key}: {name!r} is a {type(module).__name__} in the base model, not a Linear layer")
    return module


def _shape(key: str, tensor: torch.Tensor, expected: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != expected:
        raise ConversionError(f"{key}: shape {list(tensor.shape)}, the base model needs {list(expected)}")


def _number(config: dict[str, Any], field: str) -> float:
    value = config.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConversionError(f"config.json: {field} must be a number, not {value!r}")
    return value


def _lora(config: dict[str, Any], state: dict[str, torch.Tensor], model: nn.Module, base_name: str
          ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    rank, alpha = _number(config, "lora_r"), _number(config, "lora_alpha")
    if rank != int(rank) or rank < 1:
        raise ConversionError(f"config.json: lora_r must be a positive whole number, not {rank!r}")
    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        head, _, leaf = key.rpartition(".lora.")
        if not head or leaf in ("lin.weight", "lin.bias"):
            if head:
                continue  # LowRankLinear's unused `lin`: never called in its forward
            raise ConversionError(f"{key}: not a LoRA parameter (expected <module>.lora.lora_A / lora_B)")
        if leaf not in ("lora_A", "lora_B"):
            raise ConversionError(f"{key}: unknown LoRA parameter {leaf!r} (expected lora_A or lora_B)")
        factors.setdefault(head, {})[leaf] = tensor
    if not factors:
        raise ConversionError("pytorch_model.bin holds no LoRA factors")
    weights: dict[str, torch.Tensor] = {}
    for name, pair in sorted(factors.items()):
        for leaf in ("lora_A", "lora_B"):
            if leaf not in pair:
                raise ConversionError(f"{name}.lora.{leaf} is missing")
        linear = _linear(model, name, f"{name}.lora.lora_A")
        _shape(f"{name}.lora.lora_A", pair["lora_A"], (int(rank), linear.in_features))
        _shape(f"{name}.lora.lora_B", pair["lora_B"], (linear.out_features, int(rank)))
        weights[f"base_model.model.{name}.lora_A.weight"] = pair["lora_A"].contiguous()
        weights[f"base_model.model.{name}.lora_B.weight"] = pair["lora_B"].contiguous()
    peft_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_name,
        "r": int(rank), "lora_alpha": alpha,  # both libraries scale by lora_alpha / r
        "lora_dropout": float(config.get("lora_dropout") or 0.0), "target_modules": sorted(factors),
        "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "inference_mode": True,
    }
    return peft_config, weights


def _bitfit(state: dict[str, torch.Tensor], model: nn.Module, base_name: str
            ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    weights: dict[str, torch.Tensor] = {}
    for key, tensor in sorted(state.items()):
        if key.endswith(".bitfit.bias"):
            raise ConversionError(f"{key}: a bias added after a non-Linear module (e.g. a layer norm); DeltaServe's "
                                  "BitFit serves biases of Linear layers only")
        name, _, leaf = key.rpartition(".")
        if leaf != "bias" or not name:
            raise ConversionError(f"{key}: not a bias (BitFit trains only <module>.bias)")
        _shape(key, tensor, (_linear(model, name, key).out_features,))
        weights[key] = tensor.contiguous()
    names = [key[: -len(".bias")] for key in weights]
    return {"peft_type": "BITFIT", "base_model_name_or_path": base_name, "target_modules": names}, weights


def convert_opendelta(source: Path, destination: Path, model: nn.Module, base_name: str) -> str:
    """Write `source`'s delta to `destination` (which must not exist) in DeltaServe's format; say what was written.

    `model` is the base model (its module names and shapes are all that is read; meta tensors will do)."""
    config, state = read_checkpoint(source)
    delta_type = config.get("delta_type")
    if delta_type not in CONVERTED:
        raise ConversionError(
            f"config.json: delta_type {delta_type!r} is not converted (converted: {', '.join(CONVERTED)}); "
            "adapter, compacter and low_rank_adapter are not converted yet, and prefix and soft_prompt have no "
            "exact counterpart in a format DeltaServe serves")
    if destination.exists():
        raise ConversionError(f"{destination} already exists; give a new folder")
    if delta_type == "lora":
        out_config, weights = _lora(config, state, model, base_name)
        what = f"PEFT LoRA, r={out_config['r']}, lora_alpha={out_config['lora_alpha']}"
    else:
        out_config, weights = _bitfit(state, model, base_name)
        what = "DeltaServe BitFit"
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=destination.parent))
    try:
        (staging / "adapter_config.json").write_text(json.dumps(out_config, indent=2) + "\n", encoding="utf-8")
        save_file(weights, str(staging / "adapter_model.safetensors"))
        os.replace(staging, destination)  # whole or absent
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    modules = len(out_config["target_modules"])
    return f"{delta_type} -> {what}: {modules} module{'s' if modules != 1 else ''}, {len(weights)} tensors"


def module_skeleton(settings: Settings) -> tuple[nn.Module, str]:
    """The base model's modules on the meta device (names and shapes, no weights), and its name."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from service.engine.base_model import EMBEDDED_NAME, prepare_base_model

    config = AutoConfig.from_pretrained(prepare_base_model(settings))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return model, settings.base_model or EMBEDDED_NAME
