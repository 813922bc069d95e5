"""The inference engine: a frozen base model plus compiled deltas applied per row of a batch."""

from service.engine.base_model import FrozenBase, load_base_model, prepare_base_model
from service.engine.deltas import CompiledDelta, compile_adapter
from service.engine.engine import Engine
from service.engine.rows import GenerationResult
from service.engine.sampling import SamplingParams

__all__ = [
    "CompiledDelta",
    "Engine",
    "FrozenBase",
    "GenerationResult",
    "SamplingParams",
    "compile_adapter",
    "load_base_model",
    "prepare_base_model",
]
