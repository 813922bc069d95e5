"""AdapterRecord: what the store knows about one adapter, kept in `<root>/<name>/record.json`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone

# Written into record.json so a later layout change can tell old records apart.
RECORD_FORMAT = 1


@dataclass(frozen=True)
class AdapterRecord:
    name: str
    kind: str  # the delta kind as the engine names it, e.g. "lora", "prefix_tuning"
    base_model: str | None  # base_model_name_or_path from adapter_config.json
    parameters: int  # total elements over all tensors in adapter_model.safetensors
    bytes: int  # size of adapter_config.json + adapter_model.safetensors
    sha256: str  # hex digest of adapter_model.safetensors
    version: int  # 1 for a new adapter, +1 on each replacement
    created_at: str  # ISO-8601 UTC
    updated_at: str  # ISO-8601 UTC
    description: str | None = None
    prompt_template: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> AdapterRecord:
        """Parse a record read from disk; raise ValueError saying what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("the record is not a JSON object")
        values = {}
        for field in dataclasses.fields(cls):
            if field.name not in data:
                if field.default is dataclasses.MISSING:
                    raise ValueError(f"the record has no {field.name!r}")
                continue
            values[field.name] = data[field.name]
        record = cls(**values)
        record._check_types()
        return record

    def _check_types(self) -> None:
        expected: dict[str, tuple[type, ...]] = {
            "name": (str,),
            "kind": (str,),
            "base_model": (str, type(None)),
            "parameters": (int,),
            "bytes": (int,),
            "sha256": (str,),
            "version": (int,),
            "created_at": (str,),
            "updated_at": (str,),
            "description": (str, type(None)),
            "prompt_template": (str, type(None)),
        }
        for name, types in expected.items():
            value = getattr(self, name)
            # bool is an int subclass; a JSON true is never a valid count.
            if not isinstance(value, types) or isinstance(value, bool):
                raise ValueError(f"the record's {name!r} has the wrong type ({type(value).__name__})")
        if self.version < 1:
            raise ValueError(f"the record's version {self.version} is not positive")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
