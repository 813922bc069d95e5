"""One store root shared by several processes (replicas): writers exclude each other across processes, every
reader sees every write at its next read, and a start-up never clears another process's upload in progress."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from service import errors
from service.store import AdapterStore
from tests.store.helpers import LIMIT, WEIGHTS, inspect_adapter

WRITES_PER_PROCESS = 4


def _replace_repeatedly(root: str, files: dict[str, bytes], ready, go, out) -> None:
    store = AdapterStore(Path(root), LIMIT)
    staged = [store.stage_files(files) for _ in range(WRITES_PER_PROCESS)]
    ready.set()
    go.wait(30)
    out.put([store.put("busy", upload, inspect_adapter).record.version for upload in staged])


def _stage_and_die(root: str, files: dict[str, bytes], out) -> None:
    staged = AdapterStore(Path(root), LIMIT).stage_files(files)
    out.send(staged.directory.name)  # a pipe: sent before the exit, unlike a queue's feeder thread
    os._exit(0)  # no cleanup, as a killed replica: its claim is released with its file descriptors


def test_writers_in_two_processes_number_versions_from_the_disk(tmp_path, adapters):
    root = tmp_path / "shared"
    AdapterStore(root, LIMIT).put("busy", AdapterStore(root, LIMIT).stage_files(adapters["lora"]), inspect_adapter)
    spawn = multiprocessing.get_context("spawn")
    go, out = spawn.Event(), spawn.Queue()
    readies = [spawn.Event() for _ in range(2)]
    workers = [
        spawn.Process(target=_replace_repeatedly, args=(str(root), adapters["ia3"], ready, go, out))
        for ready in readies
    ]
    for worker in workers:
        worker.start()
    for ready in readies:
        assert ready.wait(120)
    go.set()  # both processes write at once
    versions = sorted(out.get(timeout=120) + out.get(timeout=120))
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert versions == list(range(2, 2 + 2 * WRITES_PER_PROCESS))  # none lost, none numbered twice
    reader = AdapterStore(root, LIMIT)
    assert reader.get("busy").version == 1 + 2 * WRITES_PER_PROCESS
    assert [p.name for p in (root / "busy" / "versions").iterdir()] == [str(1 + 2 * WRITES_PER_PROCESS)]
    assert (reader.files("busy") / WEIGHTS).read_bytes() == adapters["ia3"][WEIGHTS]


def test_every_write_is_read_by_a_store_opened_before_it(tmp_path, adapters):
    writer, reader = AdapterStore(tmp_path / "s", LIMIT), AdapterStore(tmp_path / "s", LIMIT)
    created = writer.put("fresh", writer.stage_files(adapters["lora"]), inspect_adapter, description="one").record
    assert reader.get("fresh") == created and reader.exists("fresh")
    assert [record.name for record in reader.list()] == ["fresh"]
    replaced = writer.put("fresh", writer.stage_files(adapters["ia3"]), inspect_adapter).record
    assert reader.current("fresh") == replaced and replaced.version == 2
    assert (reader.files("fresh") / WEIGHTS).read_bytes() == adapters["ia3"][WEIGHTS]
    # The reader's own write numbers from the disk too.
    assert reader.put("fresh", reader.stage_files(adapters["lora"]), inspect_adapter).record.version == 3
    assert writer.get("fresh").version == 3
    writer.delete("fresh")
    assert reader.current("fresh") is None and reader.list() == []
    with pytest.raises(errors.AdapterNotFound):
        reader.delete("fresh")

    assert writer.put_pipeline("chain", {"steps": [{"adapter": "a"}]}) is True
    assert reader.get_pipeline("chain") == {"steps": [{"adapter": "a"}]}
    assert reader.put_pipeline("chain", {"steps": []}) is False
    assert writer.get_pipeline("chain") == {"steps": []}
    reader.delete_pipeline("chain")
    assert writer.list_pipelines() == {}
    with pytest.raises(errors.PipelineNotFound):
        writer.get_pipeline("chain")


def test_start_up_clears_only_uploads_that_no_live_process_is_staging(tmp_path, adapters):
    root = tmp_path / "s"
    live = AdapterStore(root, LIMIT)
    in_progress = live.stage_files(adapters["lora"])
    spawn = multiprocessing.get_context("spawn")
    receiver, sender = spawn.Pipe(duplex=False)
    dead = spawn.Process(target=_stage_and_die, args=(str(root), adapters["ia3"], sender))
    dead.start()
    assert receiver.poll(120)
    abandoned = receiver.recv()
    dead.join(30)
    assert (root / ".staging" / abandoned).is_dir()

    AdapterStore(root, LIMIT)  # another replica starts on the same root
    assert not (root / ".staging" / abandoned).exists()
    assert not (root / ".staging" / f"{abandoned}.claim").exists()
    assert in_progress.directory.is_dir()  # the live upload is untouched, and goes in
    assert live.put("kept", in_progress, inspect_adapter).record.version == 1
    assert sorted(p.name for p in (root / ".staging").iterdir()) == []
