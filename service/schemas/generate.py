from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.engine import SamplingParams


class GenerationParams(BaseModel):
    """Generation parameters shared by /generate and pipeline steps."""

    max_new_tokens: int = Field(64, ge=1, description="Upper bound on generated tokens")
    temperature: float = Field(0.0, ge=0.0, le=10.0, description="0 = greedy (token-for-token PEFT's greedy output)")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 = no top-k cut")
    seed: int | None = Field(None, description="Makes a sampled request reproducible")
    stop: list[str] | str | None = Field(None, description="Stop strings; the text ends before the first one")

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
            ]
        },
    )

    adapter: str | None = Field(None, description="Adapter name; null for the base model alone")
    text: str | None = None
    texts: list[str] | None = Field(None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_input(self) -> "GenerateRequest":
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' or 'texts'")
        return self


class Completion(BaseModel):
    text: str
    finish_reason: str = Field(description="'stop' (end-of-sequence or a stop string) or 'length'")
    prompt_tokens: int
    completion_tokens: int


class GenerateResponse(Completion):
    adapter: str | None


class GenerateManyResponse(BaseModel):
    adapter: str | None
    outputs: list[Completion]
