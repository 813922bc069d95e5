"""An AdapterHub folder saved from a model with a head also holds `head_config.json` and `model_head.safetensors`:
for a causal LM that is a copy of the base model's own output layer (113 MB for SmolLM2). Such an upload is
accepted when the copy equals the base model's output layer, exactly, and the copy is then dropped; any other head
(a classification head, a retrained LM head) is refused: DeltaServe serves the base model's own head.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from service.engine.base_model import FrozenBase
from service.errors import InvalidAdapterWeights, InvalidJson, UnsupportedAdapter
from service.json_limits import read_json_file
from service.peft_format import CONFIG_MAX_BYTES, CONFIG_MAX_DEPTH, HEAD_CONFIG_FILE, HEAD_WEIGHTS_FILE

_NOT_SERVED = (
    "prediction heads are not served: DeltaServe runs every adapter with the base model's own output layer; save "
    "the adapter without it (save_adapter(..., with_head=False)) or upload only adapter_config.json and "
    "adapter.safetensors"
)


def check_head(directory: Path, base: FrozenBase) -> None:
    """Refuse the head in `directory` unless it is the base model's own output layer, unchanged."""
    try:
        config = read_json_file(directory / HEAD_CONFIG_FILE, max_bytes=CONFIG_MAX_BYTES, max_depth=CONFIG_MAX_DEPTH)
    except InvalidJson as exc:
        raise InvalidAdapterWeights(f"{HEAD_CONFIG_FILE}: {exc.message}") from None
    head = config.get("config") if isinstance(config, dict) else None
    if head is not None and not (isinstance(head, dict) and head.get("head_type") == "causal_lm"):
        kind = head.get("head_type") if isinstance(head, dict) else head
        raise UnsupportedAdapter(f"the upload holds a {kind!r} head; {_NOT_SERVED}")
    try:
        tensors = load_file(str(directory / HEAD_WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InvalidAdapterWeights(f"{HEAD_WEIGHTS_FILE} could not be read as safetensors: {exc}") from None
    output = base.model.get_output_embeddings()
    own = None if output is None else output.weight.detach()
    if own is None or len(tensors) != 1:
        raise UnsupportedAdapter(f"the upload's head holds {', '.join(sorted(tensors)[:4])}; {_NOT_SERVED}")
    (key, tensor), = tensors.items()
    same = tuple(tensor.shape) == tuple(own.shape) and torch.equal(tensor.to(own.dtype), own.to("cpu"))
    if not same:
        raise UnsupportedAdapter(
            f"the upload's head ('{key}' {tuple(tensor.shape)}) differs from the base model's output layer; "
            f"{_NOT_SERVED}"
        )
