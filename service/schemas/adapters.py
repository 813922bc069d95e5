from __future__ import annotations

from pydantic import BaseModel, Field


class AdapterRecordOut(BaseModel):
    name: str
    kind: str = Field(description="lora, ia3, prompt_tuning, p_tuning, prefix_tuning or bitfit")
    base_model: str | None = Field(description="base_model_name_or_path from the adapter's config")
    parameters: int
    bytes: int
    sha256: str
    version: int
    created_at: str
    updated_at: str
    description: str | None = None
    prompt_template: str | None = None


class AdapterList(BaseModel):
    adapters: list[AdapterRecordOut]
