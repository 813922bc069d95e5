"""Settings: every field can be set by a `DELTASERVE_<FIELD>` environment variable (and most by a CLI flag).

Each field's description is its documentation: the CLI's help is built from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DELTASERVE_", extra="ignore")

    # -- base model --------------------------------------------------------------------------------
    base_model: str | None = Field(
        None, description="hub id or local directory; unset: the embedded SmolLM2-135M-Instruct"
    )
    device: str = Field("auto", description="'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:1', ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bf16 on cuda, fp32 on cpu"
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "deltaserve",
        description="where the converted default model is cached",
    )

    # -- adapter store -------------------------------------------------------------------------------
    adapters_dir: Path = Field(Path("adapters/store"), description="the adapter store (persistent; pipelines too)")
    max_upload_bytes: int = Field(256 * MiB, ge=1, description="upload size limit in bytes (413 above it)")
    max_resident_adapters: int = Field(
        64, ge=1, description="compiled adapters kept on the model's device (LRU beyond that)"
    )
    max_cpu_adapters: int = Field(512, ge=0, description="more kept compiled in CPU memory when the model is on a GPU")
    pinned_adapters: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="adapter names never evicted (comma-separated)"
    )
    load_demo_adapters: bool = Field(
        True, description="install adapters/demo (and its pipelines) into the store at start-up"
    )
    demo_adapters_dir: Path = Field(Path("adapters/demo"), description="where the demo adapters are")

    # -- batching -----------------------------------------------------------------------------------
    max_batch_size: int = Field(16, ge=1, description="rows decoding together in the running batch")
    max_batch_wait_ms: float = Field(5.0, ge=0, description="how long an idle server waits for a batch to fill")
    mixed_batches: bool = Field(
        True, description="rows of one batch may use different adapters (false: one adapter per batch)"
    )
    max_new_tokens_limit: int = Field(
        1024, ge=1, description="the most new tokens one request (or pipeline step) may ask for"
    )

    # -- decoding -----------------------------------------------------------------------------------
    decode: Literal["auto", "eager", "static"] = Field(
        "auto",
        description="static (preallocated KV cache, CUDA graphs on a GPU), eager (growing cache), auto: static on CUDA",
    )
    kv_cache_tokens: int = Field(
        2048, ge=16, description="static path: tokens per row (prompt + virtual + new), capped by the model"
    )
    cuda_graphs: bool = Field(
        True, description="static path on CUDA: replay captured decode steps (false: run them eagerly)"
    )

    # -- admission control: every queue and input is bounded -------------------------------------------
    max_concurrent_requests: int = Field(
        128, ge=1, description="requests (generate, pipeline) queued or running at once; more get 429 with Retry-After"
    )
    max_queued_tokens: int = Field(
        262144,
        ge=1,
        description="tokens (prompt + max new) of all queued and running rows; past it 429 with Retry-After",
    )
    max_request_bytes: int = Field(
        1 * MiB, ge=1024, description="body limit of generate and pipeline requests (413 above it)"
    )
    max_input_chars: int = Field(
        65536, ge=1, description="characters of one input text, checked before tokenizing (422 above it)"
    )
    max_pipeline_new_tokens: int = Field(
        4096, ge=1, description="new tokens of all steps of one pipeline together (422 above it)"
    )
    request_timeout_s: float = Field(
        300.0,
        gt=0,
        description="per-request deadline: queued rows past it get 503, running rows end with finish_reason 'timeout'",
    )

    # -- HTTP server (used by `deltaserve serve`) ------------------------------------------------------
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    max_connections: int = Field(
        1024, ge=1, description="open connections at once; more get 503 (uvicorn's limit_concurrency)"
    )
    header_timeout_s: float = Field(10.0, gt=0, description="a client must send a request's headers within this")
    body_timeout_s: float = Field(
        30.0, gt=0, description="the longest pause allowed between two parts of a request body"
    )
    keep_alive_s: float = Field(5.0, gt=0, description="an idle keep-alive connection is closed after this")
    shutdown_grace_s: float = Field(
        30.0, ge=0, description="on SIGTERM: new requests get 503, running ones get this long to finish"
    )

    # -- observability ------------------------------------------------------------------------------
    metrics_adapter_labels: int = Field(
        64, ge=0, description="adapters named in /metrics labels (the first seen); the rest share the label _other"
    )

    # -- access -------------------------------------------------------------------------------------
    admin_key: str | None = Field(None, description="bearer key every write needs (env only)")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="bearer keys inference and reads need (comma-separated; env only)"
    )
    public_metadata: bool = Field(
        False, description="with keys set, let anyone list adapters and pipelines and read /stats without a key"
    )

    @field_validator("api_keys", "pinned_adapters", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value
