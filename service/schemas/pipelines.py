from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.generate import GenerationParams

STEP_NAME = r"^[a-z][a-z0-9_]{0,31}$"


class PipelineStep(GenerationParams):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=STEP_NAME, description="Other steps refer to this step's output as {name}")
    adapter: str | None = Field(None, description="Adapter for this step; null for the base model")
    input: str | None = Field(
        None,
        description=(
            "Template over {text} (the pipeline's input) and {step} outputs; default: the previous step's output"
        ),
    )


class PipelineDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[PipelineStep] = Field(min_length=1, max_length=32)
    description: str | None = None


EXAMPLE: dict[str, Any] = {
    "text": "When was Beiiing olymp#ic heldd ?",
    "steps": [
        {"name": "spelling", "adapter": None, "max_new_tokens": 16},
        {"name": "answer", "adapter": None, "input": "Question: {spelling}\nAnswer:", "max_new_tokens": 8},
    ],
}


STREAM_FIELD = Field(
    False, strict=True, description="Answer with Server-Sent Events: each step as it completes, the last step's text"
)


class RunPipelineRequest(PipelineDefinition):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    text: str
    stream: bool = STREAM_FIELD


class RunNamedPipelineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    stream: bool = STREAM_FIELD


class StepResult(BaseModel):
    name: str
    adapter: str | None
    input: str
    output: str
    finish_reason: str
    ms: float


class PipelineResult(BaseModel):
    outputs: dict[str, str]
    steps: list[StepResult]


class StoredPipeline(PipelineDefinition):
    name: str


class PipelineList(BaseModel):
    pipelines: list[StoredPipeline]
