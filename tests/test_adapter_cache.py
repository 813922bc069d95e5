"""The adapter tiers: bounded residency with LRU eviction, pinning, cold loads from disk, counters."""

from __future__ import annotations

import httpx
import torch

from service.config import Settings
from service.engine import Engine, SamplingParams
from service.engine.adapter_cache import AdapterCache
from service.engine.deltas import compile_directory
from service.main import create_app
from tests.http_server import serve
from tests.test_api import multipart

PARAMS = SamplingParams(max_new_tokens=5)


def test_lru_eviction_pinning_and_reload(tiny_base, adapter_dirs):
    engine = Engine(tiny_base, max_resident_adapters=2)
    names = ["lora", "ia3", "prefix_tuning", "p_tuning_mlp"]
    expected = {}
    for name in names:
        engine.know(name, adapter_dirs[name])
    engine.adapters.pin("lora")
    for name in names:
        expected[name] = engine.generate(["Paris"], name, PARAMS)[0].token_ids
    snapshot = engine.adapters.snapshot()
    assert snapshot["loads"] == 4 and len(snapshot["resident"]) == 2 and "lora" in snapshot["resident"]
    assert snapshot["evictions"] == 2 and snapshot["pinned"] == ["lora"]
    # An evicted adapter is compiled again from disk on its next use and gives the same tokens.
    assert engine.generate(["Paris"], "ia3", PARAMS)[0].token_ids == expected["ia3"]
    assert engine.adapters.snapshot()["loads"] == 5
    assert engine.generate(["Paris"], "lora", PARAMS)[0].token_ids == expected["lora"]
    assert engine.adapters.snapshot()["hits"] >= 1 and engine.adapters.snapshot()["load_ms_last"] > 0


def test_cpu_tier_keeps_evicted_adapters_compiled(tiny_base, adapter_dirs):
    # On a GPU the CPU tier is on by default; here it is asked for, with the CPU standing in for the device.
    cache = AdapterCache(lambda d: compile_directory(d, tiny_base), torch.device("cpu"), torch.float32,
                         max_device=1, max_cpu=1, cpu_tier=True)
    for name in ("lora", "ia3", "prompt_tuning"):
        cache.add(name, adapter_dirs[name])
        assert cache.get(name).kind in ("lora", "ia3", "prompt_tuning")
    snapshot = cache.snapshot()
    assert snapshot["resident"] == ["prompt_tuning"] and snapshot["cpu"] == ["ia3"]
    assert snapshot["evictions"] == 2 and snapshot["cpu_evictions"] == 1
    cache.get("ia3")  # promoted from the CPU tier, not loaded from disk
    assert cache.snapshot()["promotions"] == 1 and cache.snapshot()["loads"] == 3


def test_a_thousand_adapters_on_disk(tmp_path, tiny_base, adapter_dirs):
    """A store far larger than the device tier starts quickly and serves any adapter on demand."""
    settings = Settings(adapters_dir=tmp_path / "store", load_demo_adapters=False, max_resident_adapters=4,
                        pinned_adapters=["a0"])
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=120) as client:
        upload = multipart(adapter_dirs["ia3"])
        for i in range(1000):
            assert client.put(f"/adapters/a{i}", **upload).status_code == 201
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=120) as client:
        assert client.get("/stats").json()["decode"] == {"path": "eager"}  # decode="auto" on CPU
        stats = client.get("/stats").json()["adapters"]
        assert stats["known"] == 1000 and len(stats["resident"]) <= 4 and stats["loads"] == 0
        texts = {
            client.post("/generate", json={"adapter": f"a{i}", "text": "Paris", "max_new_tokens": 4}).json()["text"]
            for i in (0, 500, 999)
        }
        assert len(texts) == 1  # the same adapter under three names
        stats = client.get("/stats").json()["adapters"]
        assert len(stats["resident"]) <= 4 and stats["pinned"] == ["a0"]
