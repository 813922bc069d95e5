"""Settings: every field can be set by a `DELTASERVE_<FIELD>` environment variable or a CLI flag."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DELTASERVE_", extra="ignore")

    # Base model: a hub id or local directory; empty means the embedded SmolLM2-135M-Instruct.
    base_model: str | None = None
    device: str = "auto"  # "auto" = cuda when available, else cpu
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto = bf16 on cuda, fp32 on cpu
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "deltaserve")

    # Adapter store.
    adapters_dir: Path = Path("adapters/store")
    max_upload_bytes: int = 256 * 1024 * 1024
    max_resident_adapters: int = 64  # compiled adapters kept on the model's device (LRU beyond that)
    max_cpu_adapters: int = 512  # more kept compiled in CPU memory when the model is on a GPU
    pinned_adapters: Annotated[list[str], NoDecode] = Field(default_factory=list)  # never evicted; env: comma-separated
    load_demo_adapters: bool = True  # install adapters/demo (and its pipelines) into the store at start-up
    demo_adapters_dir: Path = Path("adapters/demo")

    # Batching.
    max_batch_size: int = 16
    max_batch_wait_ms: float = 5.0
    mixed_batches: bool = True  # rows of one batch may use different adapters (False: one adapter per batch)
    max_new_tokens_limit: int = 1024

    # Decoding. "auto": the static path (preallocated KV cache, CUDA graphs) on a GPU, the eager path on CPU.
    decode: Literal["auto", "eager", "static"] = "auto"
    kv_cache_tokens: int = Field(2048, ge=16)  # static path: tokens per row (prompt + virtual + new), capped by the model
    cuda_graphs: bool = True  # static path on CUDA: replay captured decode steps (False: run them eagerly)

    # Access.
    admin_key: str | None = None
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)  # env: comma-separated

    @field_validator("api_keys", "pinned_adapters", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    # HTTP server (used by `deltaserve serve`).
    host: str = "127.0.0.1"
    port: int = 8000
