"""The on-disk adapter store: uploads, versions, refusals, restarts, pipelines. No model needed."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import logging
import math
import os
import stat
import tarfile
import threading
import time
import zipfile
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors

from service import errors
from service.store import AdapterRecord, AdapterStore, StagedAdapter, validate_name
from service.store import adapter_store as adapter_store_module
from service.store.records import utc_now

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
LIMIT = 1024 * 1024  # far above the tiny adapters, small enough to test the limit cheaply


# ---------------------------------------------------------------------------------------------
# Real adapter files, written by peft itself


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
    )
    config.name_or_path = "tiny-llama"
    model = LlamaForCausalLM(config)
    model.config._name_or_path = "tiny-llama"  # becomes base_model_name_or_path in the adapter config
    return model


def _save(peft_config, folder: Path) -> dict[str, bytes]:
    from peft import get_peft_model

    model = get_peft_model(_tiny_llama(), peft_config)
    model.save_pretrained(folder, save_embedding_layers=False)  # False: no hub lookup for the base
    return {name: (folder / name).read_bytes() for name in (CONFIG, WEIGHTS)}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    from peft import IA3Config, LoraConfig

    root = tmp_path_factory.mktemp("peft")
    return {
        "lora": _save(
            LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"),
            root / "lora",
        ),
        "ia3": _save(
            IA3Config(target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"], task_type="CAUSAL_LM"),
            root / "ia3",
        ),
    }


def inspect_adapter(staged) -> SimpleNamespace:
    """Stand-in for the engine's check: the kind from the config, parameters from the header."""
    folder = staged.directory
    config = json.loads((folder / CONFIG).read_text())
    parameters = 0
    with safe_open(str(folder / WEIGHTS), framework="pt") as weights:
        for key in weights.keys():  # noqa: SIM118  (safe_open has keys() but is not iterable)
            parameters += math.prod(weights.get_slice(key).get_shape())
    return SimpleNamespace(kind=config["peft_type"], parameters=parameters)


@pytest.fixture
def store(tmp_path) -> AdapterStore:
    return AdapterStore(tmp_path / "store", LIMIT)


# ---------------------------------------------------------------------------------------------
# Archive builders


def make_zip(members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def make_tar_gz(members: list[tuple[str | tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members:
            info = name if isinstance(name, tarfile.TarInfo) else tarfile.TarInfo(name)
            if info.isreg():
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def tar_info(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def zip_symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


class NonSeekable(io.RawIOBase):
    """A request body that can only be read forward, like a socket."""

    def __init__(self, data: bytes):
        self._buffer = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._buffer.read(size)


def snapshot(store: AdapterStore) -> tuple[list[dict], list[str]]:
    """Everything visible about a store: its records and every path under its root."""
    return (
        [record.to_dict() for record in store.list()],
        sorted(str(path.relative_to(store.root)) for path in store.root.rglob("*")),
    )


def assert_staging_empty(store: AdapterStore) -> None:
    assert list((store.root / ".staging").iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize("name", ["a", "demo", "my-adapter_v1.2", "0", "x" * 64])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "Upper", ".hidden", "-dash", "_x", "a/b", "..", "a b", "x" * 65, None, 3])
def test_invalid_names(name):
    with pytest.raises(errors.InvalidName) as caught:
        validate_name(name)
    assert caught.value.status == 422 and caught.value.code == "invalid_name"
    assert "lower-case" in caught.value.message


# ---------------------------------------------------------------------------------------------
# Create and replace


def test_create_then_replace(store, adapters):
    lora = adapters["lora"]
    result = store.put("writer", store.stage_files(lora), inspect_adapter, description="first")
    assert result.created is True
    record = result.record
    assert record.version == 1 and record.name == "writer" and record.kind == "LORA"
    assert record.base_model == json.loads(lora[CONFIG])["base_model_name_or_path"]
    # 2 layers x (q_proj A,B + v_proj A,B)
    assert record.parameters == result.inspection.parameters == 2 * (4 * 32 + 32 * 4 + 4 * 32 + 16 * 4)
    assert record.bytes == len(lora[CONFIG]) + len(lora[WEIGHTS])
    assert record.sha256 == hashlib.sha256(lora[WEIGHTS]).hexdigest()
    assert record.description == "first" and record.prompt_template is None
    assert record.created_at == record.updated_at
    assert datetime.fromisoformat(record.created_at.replace("Z", "+00:00")).tzinfo is not None
    assert store.get("writer") == record and store.exists("writer")
    assert store.files("writer") == store.root / "writer" / "versions" / "1"
    assert sorted(p.name for p in store.files("writer").iterdir()) == [CONFIG, WEIGHTS]
    assert (store.files("writer") / WEIGHTS).read_bytes() == lora[WEIGHTS]
    assert record.to_dict()["sha256"] == record.sha256
    assert_staging_empty(store)

    while utc_now() <= record.updated_at:  # timestamps count milliseconds: let the clock pass the first one
        time.sleep(0.001)
    ia3 = adapters["ia3"]
    result = store.put("writer", store.stage_files(ia3), inspect_adapter, prompt_template="Q: {text}\nA:")
    assert result.created is False
    replaced = result.record
    assert replaced.version == 2 and replaced.kind == "IA3"
    assert replaced.sha256 == hashlib.sha256(ia3[WEIGHTS]).hexdigest()
    assert replaced.created_at == record.created_at and replaced.updated_at > record.updated_at
    assert replaced.description == "first"  # None keeps the previous one on a replacement
    assert replaced.prompt_template == "Q: {text}\nA:"
    assert not (store.root / "writer" / "versions" / "1").exists()
    assert sorted(p.name for p in (store.root / "writer" / "versions").iterdir()) == ["2"]
    on_disk = json.loads((store.root / "writer" / "record.json").read_text())
    assert on_disk["version"] == 2 and AdapterRecord.from_dict(on_disk) == replaced
    assert_staging_empty(store)


def test_list_is_sorted(store, adapters):
    for name in ["zeta", "alpha", "mid"]:
        store.put(name, store.stage_files(adapters["lora"]), inspect_adapter)
    assert [record.name for record in store.list()] == ["alpha", "mid", "zeta"]


def test_concurrent_replacements_get_distinct_versions(store, adapters):
    store.put("busy", store.stage_files(adapters["lora"]), inspect_adapter)
    staged = [store.stage_files(adapters["ia3"]) for _ in range(4)]
    versions: list[int] = []
    threads = [
        threading.Thread(target=lambda d=d: versions.append(store.put("busy", d, inspect_adapter).record.version))
        for d in staged
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == [2, 3, 4, 5]
    assert store.get("busy").version == 5
    assert [p.name for p in (store.root / "busy" / "versions").iterdir()] == ["5"]


# ---------------------------------------------------------------------------------------------
# Upload forms


def _archive_cases(files: dict[str, bytes]) -> dict[str, bytes]:
    flat = list(files.items())
    nested = [(f"my-adapter/{name}", data) for name, data in flat]
    return {
        "zip": make_zip(flat),
        "zip-folder": make_zip([("my-adapter/", b""), *nested, ("my-adapter/README.md", b"# hi")]),
        "zip-macos": make_zip([*nested, ("__MACOSX/my-adapter/._adapter_config.json", b"junk")]),
        "tar.gz": make_tar_gz(flat),
        "tar.gz-folder": make_tar_gz([(tar_info("my-adapter", tarfile.DIRTYPE), b""), *nested]),
        "tar.gz-dot": make_tar_gz([(f"./{name}", data) for name, data in flat]),
    }


@pytest.mark.parametrize("case", ["zip", "zip-folder", "zip-macos", "tar.gz", "tar.gz-folder", "tar.gz-dot"])
@pytest.mark.parametrize("as_stream", ["bytes", "file", "non-seekable"])
def test_archive_upload(store, adapters, case, as_stream):
    lora = adapters["lora"]
    body = _archive_cases(lora)[case]
    data = {"bytes": body, "file": io.BytesIO(body), "non-seekable": NonSeekable(body)}[as_stream]
    staged = store.stage_archive(data)
    assert sorted(p.name for p in staged.directory.iterdir()) == [CONFIG, WEIGHTS]
    record = store.put("packed", staged, inspect_adapter).record
    assert record.sha256 == hashlib.sha256(lora[WEIGHTS]).hexdigest()
    assert (store.files("packed") / CONFIG).read_bytes() == lora[CONFIG]
    assert sorted(p.name for p in store.files("packed").iterdir()) == [CONFIG, WEIGHTS]
    assert_staging_empty(store)


def test_form_upload_drops_readme_and_takes_base_names(store, adapters):
    lora = adapters["lora"]
    staged = store.stage_files({f"folder/{CONFIG}": lora[CONFIG], WEIGHTS: lora[WEIGHTS], "README.md": b"# card"})
    assert sorted(p.name for p in staged.directory.iterdir()) == [CONFIG, WEIGHTS]
    store.put("carded", staged, inspect_adapter)
    assert sorted(p.name for p in store.files("carded").iterdir()) == [CONFIG, WEIGHTS]


def test_stage_directory_copies_only_adapter_files(store, adapters, tmp_path):
    folder = tmp_path / "saved"
    folder.mkdir()
    for name, data in adapters["lora"].items():
        (folder / name).write_bytes(data)
    (folder / "training_args.bin").write_bytes(b"\x80\x04not really a pickle")
    record = store.put("demo", store.stage_directory(folder), inspect_adapter).record
    assert record.version == 1
    assert (folder / "training_args.bin").exists()  # the source folder is left alone
    assert sorted(p.name for p in store.files("demo").iterdir()) == [CONFIG, WEIGHTS]


# ---------------------------------------------------------------------------------------------
# Refusals: each one a typed error, and the store exactly as it was


def _broken_weights(files):
    return {**files, WEIGHTS: b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage"}


def _truncated_weights(files):
    return {**files, WEIGHTS: files[WEIGHTS][:-4]}


def _empty_weights(files):
    return {**files, WEIGHTS: save_tensors({})}


REFUSALS = {
    # name: (how to fail, error class, status, code)
    "pickle-in-form": (
        lambda s, f: s.stage_files({CONFIG: f[CONFIG], "adapter_model.bin": b"\x80\x04."}),
        errors.PickleRefused,
        415,
        "pickle_refused",
    ),
    "pickle-next-to-safetensors": (
        lambda s, f: s.stage_files({**f, "optimizer.PT": b"\x80\x04."}),
        errors.PickleRefused,
        415,
        "pickle_refused",
    ),
    "pickle-in-zip": (
        lambda s, f: s.stage_archive(make_zip([(CONFIG, f[CONFIG]), ("x/adapter_model.bin", b"\x80")])),
        errors.PickleRefused,
        415,
        "pickle_refused",
    ),
    "pickle-in-tar": (
        lambda s, f: s.stage_archive(make_tar_gz([*f.items(), ("training_args.pkl", b"\x80")])),
        errors.PickleRefused,
        415,
        "pickle_refused",
    ),
    "dotdot-zip": (
        lambda s, f: s.stage_archive(make_zip([(CONFIG, f[CONFIG]), (f"../{WEIGHTS}", f[WEIGHTS])])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "dotdot-tar": (
        lambda s, f: s.stage_archive(make_tar_gz([(f"a/../../{CONFIG}", f[CONFIG]), (WEIGHTS, f[WEIGHTS])])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "absolute-zip": (
        lambda s, f: s.stage_archive(make_zip([(zipfile.ZipInfo(f"/tmp/{CONFIG}"), f[CONFIG]), (WEIGHTS, f[WEIGHTS])])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "absolute-tar": (
        lambda s, f: s.stage_archive(make_tar_gz([(f"/tmp/{CONFIG}", f[CONFIG]), (WEIGHTS, f[WEIGHTS])])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "windows-absolute-zip": (
        lambda s, f: s.stage_archive(make_zip([(f"C:\\x\\{CONFIG}", f[CONFIG]), (WEIGHTS, f[WEIGHTS])])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "symlink-tar": (
        lambda s, f: s.stage_archive(
            make_tar_gz([*f.items(), (tar_info("README.md", tarfile.SYMTYPE, "/etc/passwd"), b"")])
        ),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "hardlink-tar": (
        lambda s, f: s.stage_archive(
            make_tar_gz([(WEIGHTS, f[WEIGHTS]), (tar_info(CONFIG, tarfile.LNKTYPE, "/etc/passwd"), b"")])
        ),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "device-tar": (
        lambda s, f: s.stage_archive(make_tar_gz([*f.items(), (tar_info("README.md", tarfile.CHRTYPE), b"")])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "symlink-zip": (
        lambda s, f: s.stage_archive(make_zip([(CONFIG, f[CONFIG]), (zip_symlink(WEIGHTS), b"/etc/passwd")])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "too-many-members-zip": (
        lambda s, f: s.stage_archive(make_zip([*f.items(), *[(f"README{i}.md", b"") for i in range(7)]])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "too-many-members-tar": (
        lambda s, f: s.stage_archive(make_tar_gz([*f.items(), *[(f"d{i}", b"") for i in range(7)]])),
        errors.UnsafeArchive,
        400,
        "unsafe_archive",
    ),
    "too-large-form": (
        lambda s, f: s.stage_files({**f, WEIGHTS: f[WEIGHTS] + b"\0" * LIMIT}),
        errors.PayloadTooLarge,
        413,
        "payload_too_large",
    ),
    "zip-bomb": (  # compresses to a few KiB, unpacks past the limit
        lambda s, f: s.stage_archive(make_zip([(CONFIG, f[CONFIG]), (WEIGHTS, b"\0" * (LIMIT + 1))])),
        errors.PayloadTooLarge,
        413,
        "payload_too_large",
    ),
    "tar-bomb": (
        lambda s, f: s.stage_archive(make_tar_gz([(CONFIG, f[CONFIG]), (WEIGHTS, b"\0" * (LIMIT + 1))])),
        errors.PayloadTooLarge,
        413,
        "payload_too_large",
    ),
    "too-large-body": (
        lambda s, f: s.stage_archive(NonSeekable(b"PK\x03\x04" + bytes(2 * LIMIT))),
        errors.PayloadTooLarge,
        413,
        "payload_too_large",
    ),
    "missing-weights": (
        lambda s, f: s.stage_files({CONFIG: f[CONFIG]}),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "missing-config-in-archive": (
        lambda s, f: s.stage_archive(make_zip([("folder/", b""), (f"folder/{WEIGHTS}", f[WEIGHTS])])),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "unknown-extra-file": (
        lambda s, f: s.stage_files({**f, "tokenizer.json": b"{}"}),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "two-top-folders": (
        lambda s, f: s.stage_archive(make_zip([(f"a/{CONFIG}", f[CONFIG]), (f"b/{WEIGHTS}", f[WEIGHTS])])),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "config-not-object": (
        lambda s, f: s.stage_files({**f, CONFIG: b"[1, 2]"}),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "config-not-json": (
        lambda s, f: s.stage_files({**f, CONFIG: b"{nope"}),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "not-an-archive": (
        lambda s, f: s.stage_archive(b"just some text"),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "corrupt-zip": (
        lambda s, f: s.stage_archive(make_zip(list(f.items()))[:200]),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "corrupt-tar.gz": (
        lambda s, f: s.stage_archive(make_tar_gz(list(f.items()))[:300]),
        errors.UploadError,
        400,
        "invalid_upload",
    ),
    "broken-safetensors": (
        lambda s, f: s.stage_files(_broken_weights(f)),
        errors.InvalidAdapterWeights,
        422,
        "invalid_adapter_weights",
    ),
    "truncated-safetensors": (
        lambda s, f: s.stage_archive(make_tar_gz(list(_truncated_weights(f).items()))),
        errors.InvalidAdapterWeights,
        422,
        "invalid_adapter_weights",
    ),
    "empty-safetensors": (
        lambda s, f: s.stage_files(_empty_weights(f)),
        errors.InvalidAdapterWeights,
        422,
        "invalid_adapter_weights",
    ),
    "bad-name": (
        lambda s, f: s.put("Bad Name", s.stage_files(f), inspect_adapter),
        errors.InvalidName,
        422,
        "invalid_name",
    ),
    "bad-prompt-template": (
        lambda s, f: s.put("existing", s.stage_files(f), inspect_adapter, prompt_template="{text} and {text}"),
        errors.InvalidRequest,
        422,
        "invalid_request",
    ),
    "inspect-raises-on-create": (
        lambda s, f: s.put("newcomer", s.stage_files(f), _refusing_inspect),
        errors.IncompatibleAdapter,
        422,
        "incompatible_adapter",
    ),
    "inspect-raises-on-replace": (
        lambda s, f: s.put("existing", s.stage_files(f), _refusing_inspect),
        errors.IncompatibleAdapter,
        422,
        "incompatible_adapter",
    ),
}


def _refusing_inspect(staged):
    assert staged.weights.is_file()  # it sees the staged files
    raise errors.IncompatibleAdapter("This adapter was made for another base model.")


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_leave_store_unchanged(store, adapters, case):
    attempt, error_class, status, code = REFUSALS[case]
    store.put("existing", store.stage_files(adapters["lora"]), inspect_adapter)
    before = snapshot(store)

    with pytest.raises(error_class) as caught:
        attempt(store, adapters["ia3"])

    assert type(caught.value) is error_class
    assert caught.value.status == status and caught.value.code == code
    assert caught.value.message
    assert snapshot(store) == before
    assert_staging_empty(store)
    assert store.get("existing").version == 1
    # ...and a restart agrees.
    assert [r.to_dict() for r in AdapterStore(store.root, LIMIT).list()] == before[0]


def test_pickle_refusal_says_how_to_convert(store, adapters):
    with pytest.raises(errors.PickleRefused) as caught:
        store.stage_files({CONFIG: adapters["lora"][CONFIG], "adapter_model.bin": b"\x80"})
    assert "safe_serialization=True" in caught.value.message
    assert WEIGHTS in caught.value.message


def test_put_refuses_folders_not_staged_by_the_store(store, adapters, tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    for name, data in adapters["lora"].items():
        (folder / name).write_bytes(data)
    forged = StagedAdapter(directory=folder, config={}, parameters=1, bytes=1)
    with pytest.raises(ValueError):
        store.put("outsider", forged, inspect_adapter)
    assert folder.exists() and not store.exists("outsider")


# ---------------------------------------------------------------------------------------------
# Crashes, restarts, corrupt entries


def test_restart_sees_the_same_records(store, adapters):
    store.put("one", store.stage_files(adapters["lora"]), inspect_adapter, description="d")
    store.put("two", store.stage_files(adapters["ia3"]), inspect_adapter, prompt_template="{text}")
    store.put("two", store.stage_files(adapters["lora"]), inspect_adapter)
    restarted = AdapterStore(store.root, LIMIT)
    assert restarted.list() == store.list()
    assert restarted.get("two").version == 2
    assert restarted.files("two") == store.files("two")


def test_crash_before_the_record_switch_keeps_the_old_version(store, adapters, monkeypatch):
    store.put("steady", store.stage_files(adapters["lora"]), inspect_adapter)
    old = store.get("steady")

    def crash(*args, **kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(adapter_store_module, "write_json_atomic", crash)
    with pytest.raises(OSError):
        store.put("steady", store.stage_files(adapters["ia3"]), inspect_adapter)
    monkeypatch.undo()

    assert store.get("steady") == old
    restarted = AdapterStore(store.root, LIMIT)
    assert restarted.get("steady") == old
    assert (restarted.files("steady") / WEIGHTS).read_bytes() == adapters["lora"][WEIGHTS]
    # The stray version folder from the crash is replaced by the next put, then pruned.
    record = restarted.put("steady", restarted.stage_files(adapters["ia3"]), inspect_adapter).record
    assert record.version == 2
    assert [p.name for p in (store.root / "steady" / "versions").iterdir()] == ["2"]


def test_corrupt_entries_are_skipped_with_a_warning(store, adapters, caplog):
    for name in ["broken-record", "lost-version", "lost-file", "healthy"]:
        store.put(name, store.stage_files(adapters["lora"]), inspect_adapter)
    (store.root / "broken-record" / "record.json").write_text("{not json")
    store.files("lost-version").rename(store.root / "lost-version" / "versions" / "99")
    (store.files("lost-file") / WEIGHTS).unlink()
    (store.root / "demo").mkdir()  # a folder with no record
    (store.root / "Not_A_Name").mkdir()  # a folder whose name is not valid
    (store.root / "stray.txt").write_text("hi")
    (store.root / ".staging" / "upload-left").mkdir()
    (store.root / ".trash" / "gone-123").mkdir()

    with caplog.at_level(logging.WARNING, logger="service.store"):
        restarted = AdapterStore(store.root, LIMIT)

    assert [record.name for record in restarted.list()] == ["healthy"]
    warned = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for name in ["broken-record", "lost-version", "lost-file", "demo", "Not_A_Name", "stray.txt"]:
        assert name in warned
    assert "unreadable" in warned and "missing" in warned
    assert list((store.root / ".staging").iterdir()) == []
    assert list((store.root / ".trash").iterdir()) == []
    with pytest.raises(errors.AdapterNotFound):
        restarted.get("broken-record")
    # A skipped name can be uploaded again; it starts over at version 1.
    assert restarted.put("broken-record", restarted.stage_files(adapters["ia3"]), inspect_adapter).record.version == 1


def test_scan_of_many_entries_reads_only_their_records(tmp_path, adapters, monkeypatch):
    """What keeps start-up quick with thousands of adapters, checked without a clock: the scan opens each
    entry's record.json once and no other file (weights are only stat'ed)."""
    root = tmp_path / "many"
    store = AdapterStore(root, LIMIT)
    store.put("template", store.stage_files(adapters["lora"]), inspect_adapter)
    record = json.loads((root / "template" / "record.json").read_text())
    for i in range(500):  # written directly: building them through put would only test fsync speed
        name = f"adapter-{i:04d}"
        version = root / name / "versions" / "1"
        version.mkdir(parents=True)
        for file_name in (CONFIG, WEIGHTS):
            (version / file_name).hardlink_to(root / "template" / "versions" / "1" / file_name)
        (root / name / "record.json").write_text(json.dumps({**record, "name": name}))

    opened: list[Path] = []
    real_open, real_os_open = io.open, os.open

    def recording_open(file, *args, **kwargs):
        opened.append(Path(file))
        return real_open(file, *args, **kwargs)

    def recording_os_open(path, *args, **kwargs):
        opened.append(Path(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(io, "open", recording_open)  # pathlib's read_bytes/read_text open files through io.open
    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(os, "open", recording_os_open)
    restarted = AdapterStore(root, LIMIT)
    monkeypatch.undo()
    assert len(restarted.list()) == 501
    files = [path for path in opened if not path.is_dir()]
    assert sorted(path.name for path in files) == ["record.json"] * 501, sorted({path.name for path in files})
    assert len(set(files)) == 501  # each record once


# ---------------------------------------------------------------------------------------------
# Delete


def test_delete(store, adapters):
    store.put("doomed", store.stage_files(adapters["lora"]), inspect_adapter)
    store.put("kept", store.stage_files(adapters["lora"]), inspect_adapter)
    store.delete("doomed")
    assert not store.exists("doomed") and not (store.root / "doomed").exists()
    assert list((store.root / ".trash").iterdir()) == []
    for call in (store.get, store.files, store.delete):
        with pytest.raises(errors.AdapterNotFound) as caught:
            call("doomed")
        assert caught.value.status == 404 and "doomed" in caught.value.message
    assert [r.name for r in AdapterStore(store.root, LIMIT).list()] == ["kept"]
    # The name is free again.
    assert store.put("doomed", store.stage_files(adapters["ia3"]), inspect_adapter).created is True


# ---------------------------------------------------------------------------------------------
# Pipelines


def test_pipeline_documents_round_trip_and_survive_restart(store, caplog):
    definition = {"steps": [{"adapter": "a"}, {"adapter": "b", "max_new_tokens": 8}], "note": "ü"}
    assert store.put_pipeline("chain", definition) is True
    assert store.put_pipeline("chain", {**definition, "note": "v2"}) is False
    assert store.put_pipeline("other", {"steps": []}) is True
    assert store.get_pipeline("chain")["note"] == "v2"
    assert list(store.list_pipelines()) == ["chain", "other"]
    store.get_pipeline("chain")["note"] = "mutated"  # callers get copies
    assert store.get_pipeline("chain")["note"] == "v2"

    (store.root / ".pipelines" / "corrupt.json").write_text("{oops")
    (store.root / ".pipelines" / ".chain.json.tmp").write_text("{half")
    with caplog.at_level(logging.WARNING, logger="service.store"):
        restarted = AdapterStore(store.root, LIMIT)
    assert restarted.list_pipelines() == {"chain": {**definition, "note": "v2"}, "other": {"steps": []}}
    assert "corrupt" in caplog.text
    assert not (store.root / ".pipelines" / ".chain.json.tmp").exists()

    restarted.delete_pipeline("chain")
    with pytest.raises(errors.PipelineNotFound) as caught:
        restarted.get_pipeline("chain")
    assert caught.value.status == 404 and caught.value.code == "pipeline_not_found"
    with pytest.raises(errors.PipelineNotFound):
        restarted.delete_pipeline("chain")
    assert list(AdapterStore(store.root, LIMIT).list_pipelines()) == ["other"]


def test_pipeline_refusals(store):
    with pytest.raises(errors.InvalidName):
        store.put_pipeline("../escape", {"steps": []})
    with pytest.raises(errors.InvalidRequest):
        store.put_pipeline("listy", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidRequest):
        store.put_pipeline("unjsonable", {"x": object()})
    assert store.list_pipelines() == {}
    assert sorted(p.name for p in (store.root / ".pipelines").iterdir()) == []
