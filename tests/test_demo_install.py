"""Demo adapters and pipelines are installed into the store at start-up, never over a user's own entries."""

from __future__ import annotations

import json
import logging
import shutil

import httpx

from service.config import Settings
from service.main import create_app
from tests.http_server import serve
from tests.test_api import multipart


def make_demo_dir(root, adapter_dirs):
    demo = root / "demo"
    for name, kind in (("spelling", "lora"), ("topic", "prompt_tuning")):
        shutil.copytree(adapter_dirs[kind], demo / name)
    (demo / "topic" / "deltaserve.json").write_text(
        json.dumps({"prompt_template": "Topic: {text}", "description": "d"})
    )
    (demo / "pipelines").mkdir()
    (demo / "pipelines" / "two-step.json").write_text(
        json.dumps(
            {
                "steps": [
                    {"name": "spelling", "adapter": "spelling"},
                    {"name": "topic", "adapter": "topic", "input": "{spelling}"},
                ]
            }
        )
    )
    return demo


def test_demo_entries_installed_once_and_never_over_user_entries(tmp_path, tiny_base, adapter_dirs):
    demo = make_demo_dir(tmp_path, adapter_dirs)
    settings = Settings(adapters_dir=tmp_path / "store", demo_adapters_dir=demo)
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        records = {a["name"]: a for a in client.get("/adapters").json()["adapters"]}
        assert set(records) == {"spelling", "topic"}
        assert records["topic"]["prompt_template"] == "Topic: {text}" and records["topic"]["kind"] == "prompt_tuning"
        assert client.post("/pipelines/two-step", json={"text": "Paris"}).status_code == 200
        # The user replaces one demo adapter with their own.
        assert client.put("/adapters/spelling", **multipart(adapter_dirs["ia3"])).status_code == 200
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        spelling = client.get("/adapters/spelling").json()
        assert spelling["kind"] == "ia3" and spelling["version"] == 2


def test_demo_adapters_for_another_base_model_are_skipped(tmp_path, tiny_base, caplog):
    demo = tmp_path / "demo" / "wrong"
    demo.mkdir(parents=True)
    (demo / "adapter_config.json").write_text(
        json.dumps({"peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 2})
    )
    import torch
    from safetensors.torch import save_file

    save_file({"prompt_embeddings": torch.ones(2, 7)}, str(demo / "adapter_model.safetensors"))
    settings = Settings(adapters_dir=tmp_path / "store", demo_adapters_dir=tmp_path / "demo")
    with caplog.at_level(logging.WARNING), serve(create_app(settings, base=tiny_base)) as url:
        assert httpx.get(f"{url}/adapters").json() == {"adapters": []}
    assert "Demo adapter wrong not installed" in caplog.text
