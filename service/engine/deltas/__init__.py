"""Compile a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) into its runtime form."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftConfig
from safetensors import SafetensorError
from safetensors.torch import load_file

# Importing the kind modules registers them.
from service.engine.deltas import ia3, lora, prefix, prompt  # noqa: F401
from service.engine.deltas.compiled import CompiledDelta, LinearDelta
from service.engine.deltas.registry import kind_for, supported_peft_types
from service.errors import InvalidAdapterConfig, InvalidAdapterWeights, InvalidJson, UnsupportedAdapter
from service.json_limits import read_json_file
from service.peft_format import CONFIG_FILE, CONFIG_MAX_BYTES, CONFIG_MAX_DEPTH, WEIGHTS_FILE

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "CompiledDelta", "LinearDelta", "compile_adapter", "read_adapter_config"]


def read_adapter_config(directory: Path) -> PeftConfig:
    path = Path(directory) / CONFIG_FILE
    try:
        data = read_json_file(path, max_bytes=CONFIG_MAX_BYTES, max_depth=CONFIG_MAX_DEPTH)
    except FileNotFoundError:
        raise InvalidAdapterConfig(f"{CONFIG_FILE} is missing") from None
    except InvalidJson as exc:  # not JSON, too large or too deep: bounded before PEFT parses it again
        raise InvalidAdapterConfig(exc.message) from None
    if not isinstance(data, dict) or "peft_type" not in data:
        raise InvalidAdapterConfig(f"{CONFIG_FILE} has no 'peft_type'; is it a PEFT adapter config?")
    peft_type = str(data["peft_type"])
    if kind_for(peft_type) is None:
        raise UnsupportedAdapter(
            f"adapter kind {peft_type} is not served; supported kinds: {', '.join(supported_peft_types())}"
        )
    try:
        return PeftConfig.from_pretrained(str(directory))
    except Exception as exc:  # peft raises TypeError/ValueError/KeyError for malformed configs
        raise InvalidAdapterConfig(f"peft could not parse {CONFIG_FILE}: {exc}") from None


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise InvalidAdapterWeights(f"{WEIGHTS_FILE} is missing")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InvalidAdapterWeights(f"{WEIGHTS_FILE} could not be read as safetensors: {exc}") from None


def compile_adapter(directory: Path, base, device: torch.device | None = None) -> CompiledDelta:
    """Parse, check against `base` (a BaseModel) and compile onto `device` (default: the base model's), in the
    base model's dtype; raises an AdapterError naming any mismatch."""
    config = read_adapter_config(directory)
    tensors = _read_weights(directory)
    kind = kind_for(str(config.peft_type.value if hasattr(config.peft_type, "value") else config.peft_type))
    compiled = kind.compile(config, tensors, base)
    return compiled.to(device or base.device, base.dtype)
