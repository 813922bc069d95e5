"""Python client for DeltaServe: `DeltaServeClient` (sync) and `AsyncDeltaServeClient` (async), on httpx.

    types.py   what goes over the wire: generation parameters, pipeline steps, results
    errors.py  DeltaServeClientError, read from any non-2xx answer
    calls.py   every API operation once: its request and how to read its answer
    client.py  the two clients, each a list of those operations
    cli.py     the client half of the `deltaserve` command (not imported here)

Nothing here imports the server package or torch.
"""

from clients.client import DEFAULT_URL, AsyncDeltaServeClient, DeltaServeClient
from clients.errors import DeltaServeClientError
from clients.types import (
    AdapterRecord,
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
