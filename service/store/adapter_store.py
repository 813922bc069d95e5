"""AdapterStore: adapters on disk, each switched to a new version by one atomic record write.

Layout under `root`:

    <name>/record.json                  the current AdapterRecord; names the current version
    <name>/versions/<N>/adapter_config.json
    <name>/versions/<N>/adapter_model.safetensors
    .staging/<tmp>/                     uploads being checked; never visible
    .trash/<tmp>/                       deleted entries on their way out
    .pipelines/<name>.json              pipeline definitions
    .lock                               writers of every process take it (locks.py)

An upload is staged and checked once (`stage_*` returns a `StagedAdapter`, which only they make);
`put` lets the caller's `inspect` reject it, renames the staged folder to `versions/<N>`, and only
then replaces record.json. A crash before that replace leaves the old record (and a stray version
folder no record names); after it, the new one.

Several processes may share a root (replicas, on one machine or a shared filesystem). Writers take
the root's `.lock`, so versions are numbered from the record on disk, never from a stale copy in
memory. Readers take no lock and keep nothing: `current(name)` reads the record from disk each time
(one small file and a few stats), so a write by any process is seen by every other at its next read.
Start-up clears only the uploads no live process is staging (locks.StagingClaim) and `.trash`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Generic, Protocol, TypeVar

from service.errors import AdapterNotFound, InvalidRequest, check_encodable
from service.store import uploads
from service.store.durable import fsync_dir, write_json_atomic
from service.store.locks import StagingClaim, StoreLock, clear_abandoned
from service.store.names import is_valid_name, validate_name
from service.store.pipeline_documents import PipelineDocuments
from service.store.records import RECORD_FORMAT, AdapterRecord, utc_now
from service.store.versions import LocalVersionStorage, VersionStorage

log = logging.getLogger(__name__)

RECORD_FILE = "record.json"
STAGING_DIR = ".staging"
TRASH_DIR = ".trash"
PIPELINES_DIR = ".pipelines"
LOCK_FILE = ".lock"
TEMPLATE_FIELD = "{text}"


class Inspection(Protocol):
    """What `inspect` returns: the caller's verdict on a staged adapter (the engine's compiled form)."""

    @property
    def kind(self) -> str: ...


InspectionT = TypeVar("InspectionT", bound=Inspection)


@dataclass(frozen=True)
class StagedAdapter:
    """An upload in a private staging folder that passed every file check; only `stage_*` make one."""

    directory: Path
    config: dict  # adapter_config.json, parsed once
    parameters: int  # elements over all tensors, from the safetensors header
    bytes: int  # size of the two adapter files
    head: Path | None = None  # an AdapterHub head for `inspect` to check; dropped before the version is stored
    claim: StagingClaim | None = field(default=None, compare=False, repr=False)  # keeps other processes off it

    def release(self) -> None:
        if self.claim is not None:
            self.claim.release()

    @property
    def weights(self) -> Path:
        return self.directory / uploads.WEIGHTS_FILE


Inspector = Callable[[StagedAdapter], InspectionT]
# Called under the store's write lock right after the record switch, so that what a caller keeps beside
# the store (the engine's compiled adapters) changes in the same order as the store itself.
OnPublish = Callable[[AdapterRecord, Path, InspectionT], None]


@dataclass(frozen=True)
class PutResult(Generic[InspectionT]):
    record: AdapterRecord
    created: bool  # True for a new adapter, False when it replaced one
    inspection: InspectionT  # what `inspect` returned


class AdapterStore:
    def __init__(self, root: Path, max_upload_bytes: int, *, versions: VersionStorage | None = None):
        self.root = Path(root)
        self.max_upload_bytes = max_upload_bytes
        self._staging = self.root / STAGING_DIR
        self._trash = self.root / TRASH_DIR
        self._versions: VersionStorage = versions or LocalVersionStorage(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = StoreLock(self.root / LOCK_FILE)  # serializes writers, in this process and every other
        self._warned: set[tuple[str, str]] = set()  # broken entries already logged (each once per process)
        self._warned_lock = threading.Lock()
        self.pipelines = PipelineDocuments(self.root / PIPELINES_DIR, self._lock)
        self.load()

    # -- start-up ------------------------------------------------------------------------------

    def load(self) -> None:
        """Clear leftovers of interrupted work and check every entry (start-up).

        Uploads that a live process (another replica) is staging are left alone. A broken entry is
        skipped with a warning giving the reason, never raised, so one bad folder cannot keep the
        service from starting. Only record.json is read and the weight files are only stat'ed, so
        thousands of entries load quickly.
        """
        with self._lock:
            self._staging.mkdir(parents=True, exist_ok=True)
            clear_abandoned(self._staging)
            shutil.rmtree(self._trash, ignore_errors=True)  # deletes finish outside the lock; theirs ignore errors
            self._trash.mkdir(parents=True, exist_ok=True)
            self.pipelines.load()
        self.list()

    def _read_entry(self, entry: os.DirEntry) -> AdapterRecord | None:
        if not entry.is_dir(follow_symlinks=False):
            self._warn(entry.name, f"Skipping {entry.path} in the adapter store: not a folder.")
            return None
        if not is_valid_name(entry.name):
            self._warn(entry.name, f"Skipping adapter folder {entry.path}: {entry.name!r} is not a valid adapter name.")
            return None
        record, reason = self._read_record(entry.name)
        if reason is not None:
            self._warn(entry.name, f"Skipping adapter {entry.name!r}: {reason}.")
        return record

    def _read_record(self, name: str) -> tuple[AdapterRecord | None, str | None]:
        """The record on disk and, when it cannot be served, why not."""
        record_path = self.root / name / RECORD_FILE
        for _attempt in range(2):
            try:
                record = AdapterRecord.from_dict(json.loads(record_path.read_bytes().decode("utf-8")))
            except FileNotFoundError:
                return None, f"{record_path} is missing"
            except NotADirectoryError:
                return None, f"{self.root / name} is not a folder"
            except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
                return None, f"{record_path} is unreadable: {exc}"
            if record.name != name:
                return None, f"{record_path} names another adapter ({record.name!r})"
            reason = self._versions.problem(record.name, record.version, record.bytes)
            if reason is None:
                return record, None
            # A writer may have switched the record and pruned this version since it was read: read it once more.
        return None, reason

    def _warn(self, name: str, message: str) -> None:
        with self._warned_lock:
            if (name, message) in self._warned:
                return
            self._warned.add((name, message))
        log.warning("%s", message)

    # -- reading -------------------------------------------------------------------------------

    def current(self, name: str) -> AdapterRecord | None:
        """The record on disk now, whoever wrote it; None for no (servable) adapter of that name."""
        if not is_valid_name(name):
            return None
        record, reason = self._read_record(name)
        if reason is not None and (self.root / name).exists():
            self._warn(name, f"Skipping adapter {name!r}: {reason}.")
        return record

    def get(self, name: str) -> AdapterRecord:
        record = self.current(name)
        if record is None:
            raise AdapterNotFound(f"no adapter named '{name}'")
        return record

    def list(self) -> list[AdapterRecord]:
        """Every servable record on disk, sorted by name (a scan: one record.json per entry)."""
        records = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.name in (STAGING_DIR, TRASH_DIR, PIPELINES_DIR, LOCK_FILE):
                    continue
                record = self._read_entry(entry)
                if record is not None:
                    records.append(record)
        return sorted(records, key=lambda record: record.name)

    def exists(self, name: str) -> bool:
        return self.current(name) is not None

    def files(self, name: str) -> Path:
        """The folder holding the current version's adapter_config.json and adapter_model.safetensors.

        A later put or delete of the same name (by any process) removes it; load from it promptly.
        """
        return self.version_files(self.get(name))

    def version_files(self, record: AdapterRecord) -> Path:
        """The folder of the version `record` names (gone once a later version replaced it)."""
        return self._versions.path(record.name, record.version)

    # -- staging -------------------------------------------------------------------------------

    def stage_files(self, files: Mapping[str, bytes]) -> StagedAdapter:
        """Stage form files (file name -> content), checked, for put()."""
        return self._stage(lambda dest: uploads.stage_files(files, dest, self.max_upload_bytes))

    def stage_archive(self, data: bytes | BinaryIO) -> StagedAdapter:
        """Stage a zip or tar.gz body (bytes or a binary file object), checked, for put()."""
        return self._stage(lambda dest: uploads.stage_archive(data, dest, self.max_upload_bytes))

    def stage_directory(self, source: Path) -> StagedAdapter:
        """Stage a copy of the adapter files in a local save_pretrained folder (demo adapters), checked."""
        return self._stage(lambda dest: uploads.stage_directory(source, dest, self.max_upload_bytes))

    def _stage(self, fill: Callable[[Path], uploads.StagedSummary]) -> StagedAdapter:
        with self._lock:  # so that no process clearing abandoned uploads sees the folder before its claim
            self._staging.mkdir(parents=True, exist_ok=True)
            claim = StagingClaim(self._staging)
        dest = claim.folder
        try:
            summary = fill(dest)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            claim.release()
            raise
        return StagedAdapter(directory=dest, config=summary.config, parameters=summary.parameters, bytes=summary.bytes,
                             head=summary.head, claim=claim)

    def discard(self, staged: StagedAdapter) -> None:
        """Drop a staged upload that will not be put."""
        shutil.rmtree(staged.directory, ignore_errors=True)
        staged.release()

    # -- writing -------------------------------------------------------------------------------

    def put(
        self,
        name: str,
        staged: StagedAdapter,
        inspect: Inspector[InspectionT],
        *,
        description: str | None = None,
        prompt_template: str | None = None,
        on_publish: OnPublish[InspectionT] | None = None,
    ) -> PutResult[InspectionT]:
        """Create or replace adapter `name` from an upload made by one of the stage_* methods.

        The staging folder is consumed: moved into the store on success, removed on failure,
        in which case the store is unchanged. On a replacement, a description or prompt template
        left as None keeps the previous one.
        """
        staged_dir = staged.directory
        if staged_dir.parent.resolve() != self._staging.resolve():
            raise ValueError(f"{staged_dir} was not made by this store's stage_* methods")
        try:
            validate_name(name)
            if description is not None and not isinstance(description, str):
                raise InvalidRequest("the description must be a string")
            if description is not None:
                check_encodable(description, "the description")
            check_prompt_template(prompt_template)
            inspection = inspect(staged)  # the caller's verdict, before anything is visible
            if staged.head is not None:
                shutil.rmtree(staged.head)  # checked by `inspect`; a copy of the base model's head is never kept
            kind = inspection.kind
            if not isinstance(kind, str) or not kind:
                raise TypeError(f"inspect returned kind {kind!r}; expected a non-empty string")
            sha256 = _sha256(staged.weights)
            base_model = staged.config.get("base_model_name_or_path")
            base_model = base_model if isinstance(base_model, str) else None

            with self._lock:
                previous = self.current(name)  # from disk: another process may have written it
                now = utc_now()
                if previous is None:
                    record = AdapterRecord(
                        name=name,
                        kind=kind,
                        base_model=base_model,
                        parameters=staged.parameters,
                        bytes=staged.bytes,
                        sha256=sha256,
                        version=1,
                        created_at=now,
                        updated_at=now,
                        description=description,
                        prompt_template=prompt_template,
                    )
                else:
                    record = replace(
                        previous,
                        kind=kind,
                        base_model=base_model,
                        parameters=staged.parameters,
                        bytes=staged.bytes,
                        sha256=sha256,
                        version=previous.version + 1,
                        updated_at=now,
                        description=description if description is not None else previous.description,
                        prompt_template=prompt_template if prompt_template is not None else previous.prompt_template,
                    )
                folder = self._versions.publish(name, record.version, staged_dir)
                # The switch: before this line the old record is live, after it the new one.
                write_json_atomic(self.root / name / RECORD_FILE, {"format": RECORD_FORMAT, **record.to_dict()})
                if on_publish is not None:
                    on_publish(record, folder, inspection)
                self._versions.prune(name, keep=record.version)
        except BaseException:
            shutil.rmtree(staged_dir, ignore_errors=True)  # gone already if it was published
            raise
        finally:
            staged.release()
        return PutResult(record=record, created=previous is None, inspection=inspection)

    def delete(self, name: str, on_delete: Callable[[str], None] | None = None) -> None:
        """Remove an adapter: one rename hides it (record and files together), then the files go.
        `on_delete` runs under the write lock right after the record is gone (see OnPublish)."""
        with self._lock:
            if not self.exists(name):
                raise AdapterNotFound(f"no adapter named '{name}'")
            self._trash.mkdir(parents=True, exist_ok=True)
            doomed = self._trash / f"{name}-{uuid.uuid4().hex}"
            os.rename(self.root / name, doomed)
            fsync_dir(self.root)
            if on_delete is not None:
                on_delete(name)
        shutil.rmtree(doomed, ignore_errors=True)  # a leftover is cleared at the next start

    # -- pipelines (kept by self.pipelines; these save callers a hop) --------------------------

    def put_pipeline(self, name: str, definition: dict) -> bool:
        return self.pipelines.put(name, definition)

    def get_pipeline(self, name: str) -> dict:
        return self.pipelines.get(name)

    def list_pipelines(self) -> dict[str, dict]:
        return self.pipelines.list()

    def delete_pipeline(self, name: str) -> None:
        self.pipelines.delete(name)


def check_prompt_template(template: str | None) -> None:
    if template is None:
        return
    if not isinstance(template, str) or template.count(TEMPLATE_FIELD) != 1:
        raise InvalidRequest(
            f"a prompt template must contain {TEMPLATE_FIELD} exactly once; it marks where the request text goes"
        )
    check_encodable(template, "the prompt template")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()

