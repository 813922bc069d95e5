"""Every refused upload gets its status and error code, and leaves the store exactly as it was."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import httpx
import pytest
from peft import LoraConfig

from service.config import Settings
from service.main import create_app
from tests.factory import save_adapter, tiny_config
from tests.http_server import serve
from tests.test_api import FILES, multipart

GOOD = "good"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_base, adapter_dirs):
    store = tmp_path_factory.mktemp("refusals") / "store"
    settings = Settings(adapters_dir=store, max_upload_bytes=200_000, load_demo_adapters=False)
    with serve(create_app(settings, base=tiny_base)) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.put(f"/adapters/{GOOD}", **multipart(adapter_dirs["lora"])).status_code == 201
        yield client, store


def snapshot(client, store):
    files = sorted(str(p.relative_to(store)) for p in store.rglob("*") if ".staging" not in p.parts)
    return client.get("/adapters").json(), files


def zip_of(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16  # a symbolic link
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def tar_with_link(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("adapter_model.safetensors.link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    return buffer.getvalue()


def good_members(adapter_dirs, kind="lora") -> dict[str, bytes]:
    return {name: (adapter_dirs[kind] / name).read_bytes() for name in FILES}


def refuse(setup, request, status: int, code: str, says: str):
    client, store = setup
    before = snapshot(client, store)
    response = request(client)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert says in error["message"]
    assert snapshot(client, store) == before
    assert client.post("/generate", json={"adapter": GOOD, "text": "Paris", "max_new_tokens": 2}).status_code == 200


def test_invalid_name(setup, adapter_dirs):
    refuse(
        setup,
        lambda c: c.put("/adapters/Bad Name!", **multipart(adapter_dirs["lora"])),
        422,
        "invalid_name",
        "lower-case letters",
    )


def test_pickle_in_form(setup, adapter_dirs):
    files = [
        ("files", ("adapter_config.json", (adapter_dirs["lora"] / "adapter_config.json").read_bytes())),
        ("files", ("adapter_model.bin", b"\x80\x04not really a pickle")),
    ]
    refuse(setup, lambda c: c.put("/adapters/p", files=files), 415, "pickle_refused", "safetensors")


def test_pickle_in_archive(setup, adapter_dirs):
    members = {**good_members(adapter_dirs), "adapter_model.pt": b"\x80\x04"}
    refuse(setup, lambda c: c.put("/adapters/p", content=zip_of(members)), 415, "pickle_refused", "safetensors")


@pytest.mark.parametrize("bad_name", ["/etc/adapter_config.json", "../adapter_model.safetensors", "a/../../x"])
def test_archive_paths_escaping(setup, adapter_dirs, bad_name):
    members = {**good_members(adapter_dirs), bad_name: b"{}"}
    refuse(setup, lambda c: c.put("/adapters/p", content=zip_of(members)), 400, "unsafe_archive", "")


def test_archive_links(setup, adapter_dirs):
    refuse(
        setup,
        lambda c: c.put("/adapters/p", content=zip_of(good_members(adapter_dirs), symlink="link")),
        400,
        "unsafe_archive",
        "link",
    )
    refuse(
        setup,
        lambda c: c.put("/adapters/p", content=tar_with_link(good_members(adapter_dirs))),
        400,
        "unsafe_archive",
        "link",
    )


def test_archive_with_too_many_files(setup, adapter_dirs):
    members = {**good_members(adapter_dirs), **{f"extra{i}.txt": b"x" for i in range(12)}}
    refuse(setup, lambda c: c.put("/adapters/p", content=zip_of(members)), 400, "unsafe_archive", "")


def test_too_large(setup, adapter_dirs):
    members = {**good_members(adapter_dirs), "README.md": b"x" * 300_000}
    refuse(
        setup,
        lambda c: c.put("/adapters/p", content=zip_of(members)),
        413,
        "payload_too_large",
        "DELTASERVE_MAX_UPLOAD_BYTES",
    )
    big = [("files", ("adapter_model.safetensors", b"0" * 300_000))]
    refuse(setup, lambda c: c.put("/adapters/p", files=big), 413, "payload_too_large", "")


def test_missing_file(setup, adapter_dirs):
    files = [("files", ("adapter_config.json", (adapter_dirs["lora"] / "adapter_config.json").read_bytes()))]
    refuse(setup, lambda c: c.put("/adapters/p", files=files), 400, "invalid_upload", "adapter_model.safetensors")


def test_config_peft_cannot_parse(setup, adapter_dirs):
    members = good_members(adapter_dirs)
    config = json.loads(members["adapter_config.json"])
    config["task_type"] = "NOT_A_TASK"
    members["adapter_config.json"] = json.dumps(config).encode()
    refuse(
        setup,
        lambda c: c.put("/adapters/p", content=zip_of(members)),
        422,
        "invalid_adapter_config",
        "peft could not parse",
    )


def test_unsupported_kind(setup, adapter_dirs):
    members = good_members(adapter_dirs)
    config = json.loads(members["adapter_config.json"])
    config["peft_type"] = "LOHA"
    members["adapter_config.json"] = json.dumps(config).encode()
    refuse(setup, lambda c: c.put("/adapters/p", content=zip_of(members)), 422, "unsupported_adapter", "LOHA")


def test_adapter_for_another_base_model(setup, tokenizer, tmp_path):
    from transformers import LlamaForCausalLM

    config = tiny_config(len(tokenizer))
    config.hidden_size, config.intermediate_size, config.head_dim = 32, 64, 8
    other = LlamaForCausalLM(config)
    directory = save_adapter(other, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False), tmp_path / "o")
    refuse(
        setup,
        lambda c: c.put("/adapters/p", **multipart(directory)),
        422,
        "incompatible_adapter",
        "trained for another base model",
    )


def test_replacement_refused_keeps_the_old_version(setup, adapter_dirs):
    client, _ = setup
    members = good_members(adapter_dirs)
    members["adapter_model.safetensors"] = b"\x00" * 32
    refuse(setup, lambda c: c.put(f"/adapters/{GOOD}", content=zip_of(members)), 422, "invalid_adapter_weights", "")
    assert client.get(f"/adapters/{GOOD}").json()["version"] == 1
