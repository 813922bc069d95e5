"""The on-disk adapter store: names, versions, restarts and crashes, deletes, pipelines. No model needed."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import logging
import os
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from service import errors
from service.store import AdapterRecord, AdapterStore, validate_name
from service.store import adapter_store as adapter_store_module
from service.store.records import utc_now
from tests.store.helpers import (
    CONFIG,
    LIMIT,
    WEIGHTS,
    assert_staging_empty,
    inspect_adapter,
)

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
    # Besides the records, only the store's lock file is opened (once: writers of every process take it).
    assert [path.name for path in opened if path.name == ".lock"] == [".lock"]
    files = [path for path in opened if not path.is_dir() and path.name != ".lock"]
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
