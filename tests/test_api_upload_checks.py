"""Hostile or inconsistent adapter uploads, through real HTTP: each is a 4xx naming the problem, answered
quickly, and leaves the store as it was. Every bad adapter is a real PEFT-saved one with its config or
tensors edited."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load, save

from service.config import Settings
from service.main import create_app
from tests.http_server import serve
from tests.test_api import multipart
from tests.test_api_refusals import GOOD, good_members, refuse, zip_of

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
Edit = Callable[[dict], object]
TensorEdit = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_base, adapter_dirs):
    # Room for uploads past adapter_config.json's own 1 MiB limit.
    store = tmp_path_factory.mktemp("upload-checks") / "store"
    settings = Settings(adapters_dir=store, max_upload_bytes=4 << 20, load_demo_adapters=False)
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.put(f"/adapters/{GOOD}", **multipart(adapter_dirs["lora"])).status_code == 201
        yield client, store


def edited(adapter_dirs: dict[str, Path], kind: str, config: Edit | None = None, tensors: TensorEdit | None = None) -> bytes:
    """A zip of the real `kind` adapter with its config (edited in place) and/or tensors replaced."""
    members = good_members(adapter_dirs, kind)
    if config is not None:
        data = json.loads(members[CONFIG])
        config(data)
        members[CONFIG] = json.dumps(data).encode()
    if tensors is not None:
        members[WEIGHTS] = save(tensors(load(members[WEIGHTS])))
    return zip_of(members)


def with_raw_config(adapter_dirs: dict[str, Path], kind: str, raw: bytes) -> bytes:
    return zip_of({**good_members(adapter_dirs, kind), CONFIG: raw})


def put(body: bytes) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.put("/adapters/p", content=body)


# -- 3. JSON bounds ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b'{"peft_type": "LORA", "a": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
    b'{"peft_type": "LORA", "target_modules": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
], ids=["deep-object", "deep-list"])
def test_a_deeply_nested_config_is_a_400_not_a_500(setup, adapter_dirs, raw):
    refuse(setup, put(with_raw_config(adapter_dirs, "lora", raw)), 400, "invalid_upload", "more than 64 levels deep")


def test_a_config_over_its_size_limit_is_a_413(setup, adapter_dirs):
    body = edited(adapter_dirs, "lora", config=lambda c: c.update(padding="x" * (1 << 20)))
    refuse(setup, put(body), 413, "payload_too_large", "adapter_config.json is larger than the limit of 1048576 bytes")


@pytest.mark.parametrize("raw, says", [
    (b'{"peft_type": "LORA", "r": 4, "lora_alpha": NaN}', "NaN is not a JSON value"),
    (b'{"peft_type": "LORA", "r": ' + b"1" * 5000 + b"}", "not valid JSON"),
], ids=["nan", "5000-digit-int"])
def test_python_only_json_is_a_400(setup, adapter_dirs, raw, says):
    refuse(setup, put(with_raw_config(adapter_dirs, "lora", raw)), 400, "invalid_upload", says)


# -- 1. weight values ----------------------------------------------------------------------------------------


def poison(value: float, dtype: torch.dtype | None = None) -> TensorEdit:
    """Set one element of the first tensor (by name) to `value`, optionally casting that tensor first."""
    def edit(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        first = min(tensors)
        tensor = tensors[first].to(dtype or tensors[first].dtype).clone()
        tensor.view(-1)[0] = value
        return {**tensors, first: tensor}
    return edit


@pytest.mark.parametrize("kind, edit, says", [
    ("lora", poison(float("nan")), "'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' holds NaN or infinite"),
    ("lora", poison(float("inf")), "q_proj.lora_A.weight' holds NaN or infinite"),
    ("lora", poison(1e39, torch.float64), "q_proj.lora_A.weight' holds values up to 1e+39, which overflow float32"),
    ("ia3", poison(float("-inf")), "ia3_l' holds NaN or infinite"),
    ("prompt_tuning", poison(float("nan")), "'prompt_embeddings' holds NaN or infinite"),
    ("prefix_tuning", poison(-1e39, torch.float64), "'prompt_embeddings' holds values up to 1e+39, which overflow float32"),
], ids=["lora-nan", "lora-inf", "lora-f64-1e39", "ia3-inf", "prompt-nan", "prefix-f64-1e39"])
def test_non_finite_or_overflowing_weights_are_refused_by_tensor(setup, adapter_dirs, kind, edit, says):
    refuse(setup, put(edited(adapter_dirs, kind, tensors=edit)), 422, "invalid_adapter_weights", says)
