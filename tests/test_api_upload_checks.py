"""Hostile or inconsistent adapter uploads, through real HTTP: each is a 4xx naming the problem, answered
quickly, and leaves the store as it was. Every bad adapter is a real PEFT-saved one with its config or
tensors edited."""

from __future__ import annotations

import json
import time
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


def edited(
    adapter_dirs: dict[str, Path], kind: str, config: Edit | None = None, tensors: TensorEdit | None = None
) -> bytes:
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


@pytest.mark.parametrize(
    "raw",
    [
        b'{"peft_type": "LORA", "a": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
        b'{"peft_type": "LORA", "target_modules": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
    ids=["deep-object", "deep-list"],
)
def test_a_deeply_nested_config_is_a_400_not_a_500(setup, adapter_dirs, raw):
    refuse(setup, put(with_raw_config(adapter_dirs, "lora", raw)), 400, "invalid_upload", "more than 64 levels deep")


def test_a_config_over_its_size_limit_is_a_413(setup, adapter_dirs):
    body = edited(adapter_dirs, "lora", config=lambda c: c.update(padding="x" * (1 << 20)))
    refuse(setup, put(body), 413, "payload_too_large", "adapter_config.json is larger than the limit of 1048576 bytes")


@pytest.mark.parametrize(
    "raw, says",
    [
        (b'{"peft_type": "LORA", "r": 4, "lora_alpha": NaN}', "NaN is not a JSON value"),
        (b'{"peft_type": "LORA", "r": ' + b"1" * 5000 + b"}", "not valid JSON"),
    ],
    ids=["nan", "5000-digit-int"],
)
def test_python_only_json_is_a_400(setup, adapter_dirs, raw, says):
    refuse(setup, put(with_raw_config(adapter_dirs, "lora", raw)), 400, "invalid_upload", says)


# -- 4. config fields of the wrong type or range -------------------------------------------------------------


WRONG_FIELDS = {
    "target_modules-nested": (
        "lora",
        {"target_modules": {"a": [[[1]]]}},
        "'target_modules' must be a regular expression",
    ),
    "target_modules-bad-regex": (
        "lora",
        {"target_modules": "(("},
        "'target_modules' is not a valid regular expression",
    ),
    "rank_pattern-string": ("lora", {"rank_pattern": "x"}, "'rank_pattern' must be an object"),
    "rank_pattern-value": (
        "lora",
        {"rank_pattern": {"q_proj": "4"}},
        "'rank_pattern['q_proj']' must be a positive integer",
    ),
    "alpha_pattern-list": ("lora", {"alpha_pattern": [1]}, "'alpha_pattern' must be an object"),
    "r-huge-float": ("lora", {"r": 1e308}, "'r' must be a positive integer"),
    "r-negative": ("lora", {"r": -1}, "'r' must be a positive integer"),
    "r-true": ("lora", {"r": True}, "'r' must be a positive integer"),
    "lora_alpha-string": ("lora", {"lora_alpha": "x"}, "'lora_alpha' must be a finite number"),
    "lora_alpha-overflowing-scale": ("lora", {"lora_alpha": 1e308}, "lora_alpha / r = 2.5e+307 overflows"),
    "use_rslora-string": ("lora", {"use_rslora": "yes"}, "'use_rslora' must be true or false"),
    "layers_to_transform-string": ("lora", {"layers_to_transform": "x"}, "'layers_to_transform' must be a layer index"),
    "layers_pattern-int": (
        "lora",
        {"layers_to_transform": [0], "layers_pattern": 3},
        "'layers_pattern' must be a name",
    ),
    "exclude_modules-int": ("lora", {"exclude_modules": 3}, "'exclude_modules' must be a regular expression"),
    "feedforward_modules-int": (
        "ia3",
        {"feedforward_modules": 3},
        "'feedforward_modules' must be a regular expression",
    ),
    "num_virtual_tokens-1e9": ("prompt_tuning", {"num_virtual_tokens": 10**9}, "num_virtual_tokens=1000000000, but"),
    "num_virtual_tokens-string": (
        "prompt_tuning",
        {"num_virtual_tokens": "5"},
        "'num_virtual_tokens' must be a positive",
    ),
    "num_virtual_tokens-float": (
        "p_tuning_mlp",
        {"num_virtual_tokens": 2.5},
        "'num_virtual_tokens' must be a positive",
    ),
    "num_transformer_submodules-string": (
        "prompt_tuning",
        {"num_transformer_submodules": "x"},
        "'num_transformer_submodules'",
    ),
    "prefix-num_virtual_tokens-1e9": (
        "prefix_tuning",
        {"num_virtual_tokens": 10**9},
        "num_virtual_tokens=1000000000, but",
    ),
    "prefix-num_layers-string": ("prefix_tuning", {"num_layers": "2"}, "'num_layers' must be a positive integer"),
}


@pytest.mark.parametrize("case", list(WRONG_FIELDS))
def test_config_fields_of_the_wrong_type_or_range_are_named(setup, adapter_dirs, case):
    kind, fields, says = WRONG_FIELDS[case]
    body = edited(adapter_dirs, kind, config=lambda c: c.update(fields))
    refuse(setup, put(body), 422, "invalid_adapter_config", says)


def test_a_giant_prompt_that_its_tensor_agrees_with_is_refused(setup, adapter_dirs):
    # Consistent with its tensor, but no request could ever fit in the tiny model's 256 positions.
    body = edited(
        adapter_dirs,
        "prompt_tuning",
        config=lambda c: c.update(num_virtual_tokens=300),
        tensors=lambda t: {"prompt_embeddings": torch.randn(300, t["prompt_embeddings"].shape[1])},
    )
    refuse(setup, put(body), 422, "incompatible_adapter", "300 virtual tokens fill the base model's 256 positions")


# -- 1. weight values ----------------------------------------------------------------------------------------


def poison(value: float, dtype: torch.dtype | None = None) -> TensorEdit:
    """Set one element of the first tensor (by name) to `value`, optionally casting that tensor first."""

    def edit(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        first = min(tensors)
        tensor = tensors[first].to(dtype or tensors[first].dtype).clone()
        tensor.view(-1)[0] = value
        return {**tensors, first: tensor}

    return edit


@pytest.mark.parametrize(
    "kind, edit, says",
    [
        (
            "lora",
            poison(float("nan")),
            "'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' holds NaN or infinite",
        ),
        ("lora", poison(float("inf")), "q_proj.lora_A.weight' holds NaN or infinite"),
        ("lora", poison(1e39, torch.float64), "q_proj.lora_A.weight' holds values up to 1e+39, which overflow float32"),
        ("ia3", poison(float("-inf")), "ia3_l' holds NaN or infinite"),
        ("prompt_tuning", poison(float("nan")), "'prompt_embeddings' holds NaN or infinite"),
        (
            "prefix_tuning",
            poison(-1e39, torch.float64),
            "'prompt_embeddings' holds values up to 1e+39, which overflow float32",
        ),
    ],
    ids=["lora-nan", "lora-inf", "lora-f64-1e39", "ia3-inf", "prompt-nan", "prefix-f64-1e39"],
)
def test_non_finite_or_overflowing_weights_are_refused_by_tensor(setup, adapter_dirs, kind, edit, says):
    refuse(setup, put(edited(adapter_dirs, kind, tensors=edit)), 422, "invalid_adapter_weights", says)


# -- 2. config against weights against base model ------------------------------------------------------------


def drop(marker: str) -> TensorEdit:
    return lambda tensors: {key: value for key, value in tensors.items() if marker not in key}


DISAGREEMENTS = {
    "lora-targets-lm_head": (
        "lora",
        {"target_modules": ["lm_head"]},
        None,
        "invalid_adapter_config",
        "LoRA tensors for module 'model.layers.0.self_attn.q_proj' (and 3 more), but the config does not target it",
    ),
    "lora-targeted-without-tensors": (
        "lora",
        None,
        drop("v_proj"),
        "invalid_adapter_config",
        "targets module 'model.layers.0.self_attn.v_proj' (and 1 more)",
    ),
    "lora-excluded-with-tensors": (
        "lora",
        {"exclude_modules": ["model.layers.1.self_attn.v_proj"]},
        None,
        "invalid_adapter_config",
        "module 'model.layers.1.self_attn.v_proj', but exclude_modules excludes it",
    ),
    "lora-other-layer-with-tensors": (
        "lora",
        {"layers_to_transform": [0]},
        None,
        "invalid_adapter_config",
        "module 'model.layers.1.self_attn.q_proj' (and 1 more), but the config does not target it",
    ),
    "lora-rank-differs": (
        "lora",
        {"r": 8},
        None,
        "invalid_adapter_config",
        "has rank 4 in its weights but rank 8 in adapter_config.json",
    ),
    "lora-targets-a-container": (
        "lora",
        {"target_modules": ["q_proj", "v_proj", "mlp"]},
        None,
        "incompatible_adapter",
        "targets module 'model.layers.0.mlp'",
    ),
    "lora-targets-embeddings": (
        "lora",
        {"target_modules": ["q_proj", "v_proj", "embed_tokens"]},
        None,
        "incompatible_adapter",
        "'model.embed_tokens' (target_modules=['embed_tokens', 'q_proj', 'v_proj']), which is not a Linear layer",
    ),
    "ia3-targeted-without-vector": (
        "ia3",
        None,
        drop("k_proj"),
        "invalid_adapter_config",
        "targets module 'model.layers.0.self_attn.k_proj' (and 1 more)",
    ),
    "ia3-feedforward-disagrees-with-shape": (
        "ia3",
        {"feedforward_modules": ["v_proj"]},
        None,
        "invalid_adapter_config",
        "'model.layers.0.mlp.down_proj' is not in feedforward_modules, "
        "but its IA3 vector (1, 128) is the shape of an input",
    ),
    "ia3-feedforward-outside-targets": (
        "ia3",
        {"feedforward_modules": r".*\.(down|up)_proj"},
        None,
        "invalid_adapter_config",
        "feedforward_modules names module 'model.layers.0.mlp.up_proj', which target_modules does not target",
    ),
}


@pytest.mark.parametrize("case", list(DISAGREEMENTS))
def test_config_weights_and_base_model_must_agree(setup, adapter_dirs, case):
    kind, fields, tensors, code, says = DISAGREEMENTS[case]
    config = (lambda c: c.update(fields)) if fields else None
    refuse(setup, put(edited(adapter_dirs, kind, config=config, tensors=tensors)), 422, code, says)


@pytest.mark.parametrize(
    "kind, fields, says",
    [
        ("ia3", {"feedforward_modules": "(.+)+X"}, "down_proj' is not in feedforward_modules"),
        ("lora", {"target_modules": "(.+)+X"}, "the config does not target it (target_modules='(.+)+X')"),
        ("lora", {"rank_pattern": {"(.+)+X": 4}, "target_modules": ["lm_head"]}, "does not target"),
    ],
    ids=["ia3-feedforward", "lora-target_modules", "lora-rank_pattern"],
)
def test_a_catastrophically_backtracking_regex_is_answered_at_once(setup, adapter_dirs, kind, fields, says):
    # With Python's re, "(.+)+X" against one 30-character module name takes about 2**30 steps.
    started = time.monotonic()
    refuse(
        setup, put(edited(adapter_dirs, kind, config=lambda c: c.update(fields))), 422, "invalid_adapter_config", says
    )
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "kind, fields",
    [
        ("lora", {"target_modules": None}),  # PEFT's default for llama: q_proj, v_proj
        ("lora", {"target_modules": r".*\.(q|v)_proj"}),
        ("lora_patterns", {"target_modules": "all-linear"}),  # every Linear but lm_head
        (
            "lora_patterns",
            {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "x"]},
        ),
        ("ia3", {"target_modules": None, "feedforward_modules": None}),  # PEFT's defaults for llama
    ],
    ids=["lora-default", "lora-regex", "all-linear", "an-unused-extra-target", "ia3-defaults"],
)
def test_every_form_peft_writes_selections_in_still_uploads(setup, adapter_dirs, kind, fields):
    client, _ = setup
    response = client.put("/adapters/forms", content=edited(adapter_dirs, kind, config=lambda c: c.update(fields)))
    assert response.status_code in (200, 201), response.text
    assert client.post("/generate", json={"adapter": "forms", "text": "Paris", "max_new_tokens": 2}).status_code == 200
    assert client.delete("/adapters/forms").status_code == 204
