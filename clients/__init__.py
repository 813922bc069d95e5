"""Python client for DeltaServe: `DeltaServeClient` (sync) and `AsyncDeltaServeClient` (async), on httpx."""

from clients.client import (
    DEFAULT_URL,
    AdapterRecord,
    AsyncDeltaServeClient,
    DeltaServeClient,
    DeltaServeClientError,
    GenerateResult,
    GenerationParams,
    PipelineRecord,
    PipelineResult,
    PipelineStep,
    StepResult,
)

__all__ = [
    "DEFAULT_URL",
    "AdapterRecord",
    "AsyncDeltaServeClient",
    "DeltaServeClient",
    "DeltaServeClientError",
    "GenerateResult",
    "GenerationParams",
    "PipelineRecord",
    "PipelineResult",
    "PipelineStep",
    "StepResult",
]
