"""What goes over the wire: generation parameters and pipeline steps sent, and the results read back.

Every result keeps the JSON it was read from in `raw`, so fields the server adds later are not lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+

__all__ = [
    "AdapterRecord",
    "GenerateResult",
    "GenerationParams",
    "PipelineRecord",
    "PipelineResult",
    "PipelineStep",
    "Result",
    "StepLike",
    "StepResult",
]


class GenerationParams(TypedDict, total=False):
    """Generation parameters; any left out take the server's defaults."""

    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    stop: str | Sequence[str]


# --- sent ------------------------------------------------------------------------------------------------------


@dataclass
class PipelineStep:
    """One step of a pipeline: the adapter to run (None: the base model), an optional `input` template over the
    pipeline's text and earlier steps' outputs such as "{spelling}", and generation parameters (None: defaults)."""

    name: str
    adapter: str | None = None
    input: str | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {key: value for key, value in asdict(self).items() if value is not None}
        data["adapter"] = self.adapter  # null means the base model; always sent
        return data


StepLike = PipelineStep | Mapping[str, Any]  # a plain mapping is sent as it is


# --- read back ---------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """A response object: the documented fields, plus the JSON it came from in `raw`."""

    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        names = [f.name for f in fields(cls) if f.name != "raw"]
        return cls(**{name: data.get(name) for name in names}, raw=dict(data))


@dataclass
class GenerateResult(Result):
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int
    adapter: str | None = None


@dataclass
class AdapterRecord(Result):
    name: str
    kind: str
    base_model: str
    parameters: int
    bytes: int
    sha256: str
    version: int
    created_at: str
    updated_at: str
    description: str | None = None
    prompt_template: str | None = None


@dataclass
class StepResult(Result):
    name: str
    adapter: str | None
    input: str
    output: str
    finish_reason: str
    ms: float


@dataclass
class PipelineResult(Result):
    outputs: dict[str, str]
    steps: list[StepResult]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PipelineResult:
        steps = [StepResult.from_json(step) for step in data.get("steps") or []]
        return cls(outputs=dict(data.get("outputs") or {}), steps=steps, raw=dict(data))

    @property
    def output(self) -> str:
        """The last step's output: the pipeline's answer."""
        return self.steps[-1].output if self.steps else ""


@dataclass
class PipelineRecord(Result):
    name: str
    steps: list[dict[str, Any]]
    description: str | None = None
