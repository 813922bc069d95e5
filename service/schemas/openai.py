"""The OpenAI protocol's request models for /v1/completions and /v1/chat/completions, as the official client
sends them. Unknown fields are ignored (clients send newer fields freely, as vLLM accepts); fields we cannot
honour are refused by name rather than ignored. `model` names an adapter or the base model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.engine.sampling import MAX_SEED, MAX_TOP_LOGPROBS
from service.schemas.generate import MAX_STOP_CHARS, MAX_STOP_STRINGS, MAX_TEXTS, Integer, Number

StopString = Annotated[str, Field(max_length=MAX_STOP_CHARS)]
MAX_CHOICES = 16  # `n`: rows per prompt


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """The error shape on /v1 routes."""

    error: OpenAIErrorBody


class StreamOptions(BaseModel):
    include_usage: bool = Field(False, strict=True)


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=200)
    temperature: Number = Field(1.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: Number = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: Integer = Field(-1, ge=-1, le=1_000_000, description="vLLM's extra: -1 or 0 = no top-k cut")
    n: Integer = Field(1, ge=1, le=MAX_CHOICES)
    seed: Integer | None = Field(None, ge=0, le=MAX_SEED)
    stop: list[StopString] | StopString | None = None
    stream: bool = Field(False, strict=True)
    stream_options: StreamOptions | None = None
    user: str | None = None  # accepted and ignored, as the protocol allows
    presence_penalty: Number = Field(0.0, allow_inf_nan=False)
    frequency_penalty: Number = Field(0.0, allow_inf_nan=False)
    logit_bias: dict[str, float] | None = None

    @model_validator(mode="after")
    def _refuse_what_we_cannot_honour(self) -> _Sampling:
        if self.presence_penalty or self.frequency_penalty:
            raise ValueError("presence_penalty and frequency_penalty are not supported; leave them at 0")
        if self.logit_bias:
            raise ValueError("logit_bias is not supported")
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        if len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"stop may hold at most {MAX_STOP_STRINGS} strings")
        return self

    @property
    def stops(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return tuple(s for s in stops if s)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(_Sampling):
    prompt: Annotated[list[str], Field(min_length=1, max_length=MAX_TEXTS)] | str = Field(
        description="A text or a list of texts (token-id prompts are not accepted)")
    max_tokens: Integer | None = Field(16, ge=1, description="OpenAI's default for completions: 16")
    logprobs: Integer | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = Field(False, strict=True)
    best_of: Integer | None = Field(None, ge=1)
    suffix: str | None = None

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> CompletionRequest:
        if self.echo:
            raise ValueError("echo is not supported")
        if self.best_of not in (None, 1):
            raise ValueError("best_of is not supported; use n")
        if self.suffix:
            raise ValueError("suffix is not supported")
        return self

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    max_tokens: Integer | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(
        None, ge=1, strict=True, description="Default: as many as fit, up to DELTASERVE_MAX_NEW_TOKENS_LIMIT")
    logprobs: bool = Field(False, strict=True)
    top_logprobs: Integer | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> ChatCompletionRequest:
        if self.tools or self.functions or self.tool_choice not in (None, "none"):
            raise ValueError("tools and functions are not supported")
        if self.response_format and self.response_format.get("type") != "text":
            raise ValueError("response_format other than text is not supported")
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    @property
    def new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens
