"""Compile an adapter (its parsed adapter_config.json and its adapter_model.safetensors) into its runtime form.
PEFT parses the configs of its kinds; a kind PEFT lacks (BitFit, AdapterHub's bottleneck adapters) parses its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import PeftConfig
from safetensors import SafetensorError
from safetensors.torch import load_file

# Importing the kind modules registers them.
from service.engine.deltas import bitfit, bottleneck, ia3, lora, prefix, prompt  # noqa: F401
from service.engine.deltas.compiled import CompiledDelta, ModuleDelta, ModuleTable, PromptDelta
from service.engine.deltas.registry import kind_for, kind_recognising, supported_peft_types
from service.errors import InvalidAdapterConfig, InvalidAdapterWeights, InvalidJson, UnsupportedAdapter
from service.json_limits import read_json_file
from service.peft_format import CONFIG_FILE, CONFIG_MAX_BYTES, CONFIG_MAX_DEPTH, WEIGHTS_FILE

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "CompiledDelta",
    "ModuleDelta",
    "ModuleTable",
    "PromptDelta",
    "compile_adapter",
    "compile_directory",
    "parse_config",
]


def parse_config(data: object) -> Any:
    """The config object of a parsed adapter_config.json: PEFT's own (as `PeftConfig.from_pretrained` builds it),
    or the kind's own for a kind PEFT lacks."""
    if not isinstance(data, dict):
        raise InvalidAdapterConfig(f"{CONFIG_FILE} must hold a JSON object")
    if "peft_type" not in data:
        own_format = kind_recognising(data)
        if own_format is None:
            raise InvalidAdapterConfig(
                f"{CONFIG_FILE} has no 'peft_type' and is not an AdapterHub adapter config; "
                "is it a PEFT adapter config?"
            )
        assert own_format.parse is not None  # a kind with its own format parses it
        return own_format.parse(data)
    peft_type = str(data["peft_type"])
    kind = kind_for(peft_type)
    if kind is None:
        raise UnsupportedAdapter(
            f"adapter kind {peft_type} is not served; supported kinds: {', '.join(supported_peft_types())}"
        )
    if kind.parse is not None:
        return kind.parse(data)
    attributes = {key: value for key, value in data.items() if key != "runtime_config"}  # as peft drops it
    try:
        return PeftConfig.from_peft_type(**PeftConfig.check_kwargs(**attributes))
    except Exception as exc:  # peft raises TypeError/ValueError/KeyError for malformed configs
        raise InvalidAdapterConfig(f"peft could not parse {CONFIG_FILE}: {exc}") from None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InvalidAdapterWeights(f"{WEIGHTS_FILE} is missing")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InvalidAdapterWeights(f"{WEIGHTS_FILE} could not be read as safetensors: {exc}") from None


def compile_adapter(config: dict, weights: Path, base, device: torch.device | None = None) -> CompiledDelta:
    """Check the adapter against `base` (a FrozenBase) and compile it onto `device` (default: the base model's),
    in the base model's dtype; raises an AdapterError naming any mismatch."""
    peft_config = parse_config(config)
    tensors = _read_weights(Path(weights))
    kind = kind_for(str(getattr(peft_config.peft_type, "value", peft_config.peft_type)))
    assert kind is not None  # parse_config refused unserved kinds
    compiled = kind.compile(peft_config, tensors, base)
    return compiled.to(device or base.device, base.dtype)


def compile_directory(directory: Path, base, device: torch.device | None = None) -> CompiledDelta:
    """Compile an adapter folder already in the store (start-up, or a cold load after eviction)."""
    path = Path(directory) / CONFIG_FILE
    try:
        config = read_json_file(path, max_bytes=CONFIG_MAX_BYTES, max_depth=CONFIG_MAX_DEPTH)
    except FileNotFoundError:
        raise InvalidAdapterConfig(f"{CONFIG_FILE} is missing") from None
    except InvalidJson as exc:  # not JSON, too large or too deep: bounded before PEFT sees it
        raise InvalidAdapterConfig(exc.message) from None
    return compile_adapter(config, Path(directory) / WEIGHTS_FILE, base, device)
