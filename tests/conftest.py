"""Shared fixtures: a tiny random Llama and real PEFT adapters of every kind, built once per session."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch

from service.engine import Engine, static_decode
from service.engine.base_model import wrap_base_model
from tests.factory import SOFT_PROMPT_STD, adapter_configs, build_tiny_model, build_tokenizer, save_adapter
from tests.peft_reference import PeftOracle

warnings.filterwarnings("ignore", message=".*[Pp]osition ids.*")

# PEFT's generate warns for every prompt-learning call; the tests compare against it on purpose.
KINDS = list(adapter_configs("unused"))


def pytest_collection_modifyitems(config, items):
    # GPU-only tests are marked `cuda`: here they skip, on a GPU machine `make gpu-check` runs them.
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    """The reference copy of the tiny base model; tests must not modify it (PEFT copies it)."""
    return build_tiny_model(len(tokenizer))


@pytest.fixture(scope="session")
def vocab_size(tiny_model) -> int:
    """Ask the engine for this many log-probabilities per step to get the whole distribution."""
    return tiny_model.config.vocab_size


@pytest.fixture(scope="session")
def adapter_dirs(tmp_path_factory, tokenizer, tiny_model) -> dict[str, Path]:
    # Each in a directory named after its kind: tests/mutation_check.py picks adapters out by that name.
    root = tmp_path_factory.mktemp("adapters")
    tokenizer_dir = root / "tokenizer"
    tokenizer.save_pretrained(tokenizer_dir)
    return {
        kind: save_adapter(tiny_model, config, root / kind, seed=index + 1, soft_prompt_std=SOFT_PROMPT_STD)
        for index, (kind, config) in enumerate(adapter_configs(str(tokenizer_dir)).items())
    }


@pytest.fixture(scope="session")
def tiny_base(tiny_model, tokenizer):
    return wrap_base_model(copy.deepcopy(tiny_model), tokenizer, name="tiny-llama")


@pytest.fixture(scope="session")
def engine(tiny_base, adapter_dirs) -> Engine:
    engine = Engine(tiny_base)
    for kind, directory in adapter_dirs.items():
        engine.load(kind, directory)
    return engine


@pytest.fixture(scope="session")
def peft_oracle(tiny_model, tokenizer, adapter_dirs) -> PeftOracle:
    """PEFT's greedy tokens and log-probabilities for one prompt alone, computed once per session."""
    return PeftOracle(tiny_model, tokenizer, adapter_dirs, eos_token_id=tokenizer.eos_token_id)


STATIC_SLOTS = 4
STATIC_CAPACITY = 56  # small enough that long runs must roll padding off the left of the cache


@pytest.fixture(scope="module")
def static_engine(tiny_model, tokenizer, adapter_dirs) -> Engine:
    """A static-path engine with every test kind loaded, its cache small enough for width buckets and roll-offs."""
    mp = pytest.MonkeyPatch()
    mp.setattr(static_decode, "_SMALLEST_WIDTH", 16)  # several width buckets inside a small cache
    base = wrap_base_model(copy.deepcopy(tiny_model), tokenizer, name="tiny-llama")
    engine = Engine(base, decode="static", max_batch_size=STATIC_SLOTS, kv_cache_tokens=STATIC_CAPACITY)
    mp.undo()
    for kind, directory in adapter_dirs.items():
        engine.load(kind, directory)
    return engine
