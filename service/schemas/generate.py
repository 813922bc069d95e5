from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from service.engine import GenerationResult, SamplingParams
from service.engine.sampling import MAX_SEED

# Bounds every request field has whatever the settings; the settings' limits (max_new_tokens, characters of
# a text) are checked by the service layer, which names the setting.
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
MAX_TEXTS = 256


def _a_number(value: object) -> object:
    # JSON's numbers only: `true` is not 1 and "1" is not 1. An integral float (2.0) is an integer, as JSON
    # Schema says, so integer fields accept it (pydantic refuses 2.5).
    if isinstance(value, (bool, str, bytes)):
        raise ValueError("must be a JSON number")
    return value


Integer = Annotated[int, BeforeValidator(_a_number)]
Number = Annotated[float, BeforeValidator(_a_number)]
StopString = Annotated[str, StringConstraints(max_length=MAX_STOP_CHARS)]
StopStrings = Annotated[list[StopString], Field(max_length=MAX_STOP_STRINGS)]


class GenerationParams(BaseModel):
    """Generation parameters shared by /generate and pipeline steps. Numbers are strict: `true` is not 1."""

    max_new_tokens: Integer = Field(64, ge=1, description="Upper bound on generated tokens")
    temperature: Number = Field(0.0, ge=0.0, le=10.0, allow_inf_nan=False,
                                description="0 = greedy (token-for-token PEFT's greedy output)")
    top_p: Number = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: Integer = Field(0, ge=0, le=1_000_000, description="0 = no top-k cut")
    seed: Integer | None = Field(None, ge=0, le=MAX_SEED, description="Makes a sampled request reproducible")
    stop: StopStrings | StopString | None = Field(None, description="Stop strings; the text ends before the first one")

    def sampling(self) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            seed=self.seed,
            stop=tuple(s for s in stop if s),
        )


class GenerateRequest(GenerationParams):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"adapter": None, "text": "The capital of France is", "max_new_tokens": 16},
                {"adapter": None, "texts": ["The capital of France is", "Water boils at"], "max_new_tokens": 8},
            ],
            "oneOf": [{"required": ["text"]}, {"required": ["texts"]}],  # exactly one of the two
        },
    )

    adapter: str | None = Field(None, max_length=64, description="Adapter name; null for the base model alone")
    # Not nullable (null is refused): the schema's oneOf says which one is present.
    text: str | SkipJsonSchema[None] = Field(None, description="One input (give `text` or `texts`)")
    texts: list[str] | SkipJsonSchema[None] = Field(
        None, min_length=1, max_length=MAX_TEXTS, description="Several inputs, one row each")
    stream: bool = Field(False, strict=True, description="Answer with Server-Sent Events as tokens are produced")

    @model_validator(mode="before")
    @classmethod
    def _no_null_input(cls, data: object) -> object:
        if isinstance(data, dict):
            for field in ("text", "texts"):
                if field in data and data[field] is None:
                    raise ValueError(f"'{field}' may not be null; leave it out")
        return data

    @model_validator(mode="after")
    def _one_input(self) -> GenerateRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' or 'texts'")
        return self


class Completion(BaseModel):
    text: str
    finish_reason: str = Field(
        description="'stop' (end-of-sequence or a stop string), 'length', or 'timeout' (the request's deadline passed)")
    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def from_result(cls, result: GenerationResult) -> Completion:
        return cls(text=result.text, finish_reason=result.finish_reason, prompt_tokens=result.prompt_tokens,
                   completion_tokens=result.completion_tokens)


class GenerateResponse(Completion):
    adapter: str | None


class GenerateManyResponse(BaseModel):
    adapter: str | None
    outputs: list[Completion]
