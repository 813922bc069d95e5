"""The one owner of "an adapter by name": the store's records and the engine's compiled deltas, kept in step.

An upload is checked once: the store stages and checks the files (archive safety, sizes, JSON, the
safetensors header), the engine compiles the parsed config and weights against the base model and runs
one probe pass, and only then does the store publish it. The engine's entry switches under the store's
write lock, right after the record, so the two never disagree about which version is live. `resolve`
returns a version's delta, prompt template and number together, from one entry.

Other processes may write the same store (replicas sharing one adapter folder). So `resolve` reads the
record on disk first (one small file) and, when it is not the version the engine holds, has the engine
follow it: a replacement is compiled on this first request for it, a deleted adapter forgotten. No
replica serves a stale version once the writer has answered.

Every method here may touch the disk or compile: call them off the event loop.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from service.engine import CompiledDelta, Engine
from service.errors import AdapterNotFound, DeltaServeError
from service.peft_format import CONFIG_FILE, METADATA_FILE
from service.store import AdapterRecord, AdapterStore, PutResult, StagedAdapter

log = logging.getLogger(__name__)

DEMO_PIPELINES_DIR = "pipelines"


@dataclass(frozen=True)
class ResolvedAdapter:
    """What a request runs with: one version's compiled delta, prompt template and number, taken together.
    The base model alone is `ResolvedAdapter(None, None, None, None)`."""

    name: str | None
    delta: CompiledDelta | None
    prompt_template: str | None
    version: int | None

    def apply_template(self, text: str) -> str:
        # The store guarantees exactly one "{text}"; replace() leaves any other braces alone.
        return text if self.prompt_template is None else self.prompt_template.replace("{text}", text)


BASE_MODEL_ALONE = ResolvedAdapter(None, None, None, None)
# A replacement by another process may prune the version being compiled here; then its record has changed
# and resolving again finds the new one. More rounds than this mean writers faster than compiling.
RESOLVE_ATTEMPTS = 4


class _EngineOnly(Exception):
    pass


class AdapterRegistry:
    def __init__(self, store: AdapterStore, engine: Engine):
        self.store = store
        self.engine = engine
        self._follow_lock = threading.Lock()  # one re-registration per change, whichever request sees it first
        # Stored versions that failed to compile here (skipped, as at start-up) until their record changes.
        self._broken: dict[str, AdapterRecord] = {}

    # -- start-up ---------------------------------------------------------------------------------
    def load_stored(self, *, compile_now: int, pinned: list[str]) -> None:
        """Serve every stored adapter: the pinned and the `compile_now` most recently updated are compiled
        now, the rest of a large store on first use. An entry that no longer fits (e.g. stored for another
        base model) is skipped with a warning; the rest are served."""
        records = self.store.list()
        recent = sorted(records, key=lambda r: r.updated_at, reverse=True)[:compile_now]
        eager = {r.name for r in recent} | set(pinned)
        for record in records:
            if record.name in self.engine.names():  # just installed (demo): compiled and served already
                continue
            try:
                if record.name in eager:
                    self.engine.load(record.name, self.store.version_files(record), meta=record)
                else:
                    self.engine.know(record.name, self.store.version_files(record), meta=record)
            except DeltaServeError as exc:
                log.warning("Skipping stored adapter %s: %s", record.name, exc.message)
                self._broken[record.name] = record
        for name in pinned:
            if name in self.engine.names():
                self.engine.adapters.pin(name)
            else:
                log.warning("Pinned adapter %s is not in the store", name)

    def install_demo(self, demo_dir: Path) -> list[str]:
        """Install the bundled demo adapters and pipelines that the store has no entry of that name for (a
        user's own `spelling` is never overwritten); returns the names installed."""
        demo_dir = Path(demo_dir)
        if not demo_dir.is_dir():
            log.info("No demo adapters at %s", demo_dir)
            return []
        installed = []
        for folder in sorted(p for p in demo_dir.iterdir() if (p / CONFIG_FILE).is_file()):
            if self.store.exists(folder.name):
                continue
            metadata_path = folder / METADATA_FILE
            metadata = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
            try:
                self.put(folder.name, self.store.stage_directory(folder), description=metadata.get("description"),
                         prompt_template=metadata.get("prompt_template"))
            except DeltaServeError as exc:
                log.warning("Demo adapter %s not installed: %s", folder.name, exc.message)
                continue
            installed.append(folder.name)
        for path in sorted((demo_dir / DEMO_PIPELINES_DIR).glob("*.json")):
            if not self.store.pipelines.exists(path.stem):
                self.store.put_pipeline(path.stem, json.loads(path.read_text()))
                installed.append(path.stem)
        if installed:
            log.info("Installed demo entries: %s", ", ".join(installed))
        return installed

    # -- writes -----------------------------------------------------------------------------------
    def upload_files(self, name: str, files: Mapping[str, bytes], **metadata: str | None) -> PutResult[CompiledDelta]:
        return self.put(name, self.store.stage_files(files), **metadata)

    def upload_archive(self, name: str, body: bytes | BinaryIO, **metadata: str | None) -> PutResult[CompiledDelta]:
        return self.put(name, self.store.stage_archive(body), **metadata)

    def put(self, name: str, staged: StagedAdapter, *, description: str | None = None,
            prompt_template: str | None = None) -> PutResult[CompiledDelta]:
        """Create or replace `name`; nothing becomes visible unless the engine would serve it."""
        return self.store.put(name, staged, self._check, description=description, prompt_template=prompt_template,
                              on_publish=self._serve)

    def _check(self, staged: StagedAdapter) -> CompiledDelta:
        delta = self.engine.compile_parsed(staged.config, staged.weights)
        if staged.head is not None:
            self.engine.check_head(staged.head)
        self.engine.check_output(delta)
        return delta

    def _serve(self, record: AdapterRecord, folder: Path, delta: CompiledDelta) -> None:
        self.engine.register(record.name, delta, folder, meta=record)

    def delete(self, name: str) -> None:
        """Requests already holding the adapter finish on it."""
        self.store.delete(name, on_delete=self.engine.unregister)

    # -- reads ------------------------------------------------------------------------------------
    def resolve(self, name: str | None) -> ResolvedAdapter:
        """One version's delta, template and number together: the version on disk now (may compile it)."""
        if name is None:
            return BASE_MODEL_ALONE
        for _ in range(RESOLVE_ATTEMPTS):
            try:
                record = self._current(name)
            except _EngineOnly:
                return ResolvedAdapter(name, self.engine.lookup(name)[0], None, None)
            self._follow(record)
            try:
                delta, meta = self.engine.lookup(name)
            except AdapterNotFound:  # deleted by a request of this process in between
                continue
            except DeltaServeError:
                if self.store.current(name) != record:
                    continue  # replaced (its files pruned) or deleted while this compiled: look again
                raise
            if meta == record:
                return ResolvedAdapter(name, delta, record.prompt_template, record.version)
        raise AdapterNotFound(f"no adapter named '{name}'")

    def _current(self, name: str) -> AdapterRecord:
        """The servable record on disk; forgets an adapter that is gone (deleted by any process)."""
        record = self.store.current(name)
        if record is None and name in self.engine.names() and self.engine.meta(name) is None:
            raise _EngineOnly  # registered in the engine alone, with no store record (never by the store)
        if record is None or self._broken.get(name) == record:
            if record is None and self.engine.meta(name) is not None:
                self.engine.unregister(name)
            raise AdapterNotFound(f"no adapter named '{name}'")
        return record

    def _follow(self, record: AdapterRecord) -> None:
        """Make the engine serve exactly `record` (compiled on first use), if it holds another version or none."""
        with self._follow_lock:
            if self.engine.meta(record.name) != record:
                self.engine.know(record.name, self.store.version_files(record), meta=record)

    def exists(self, name: str) -> bool:
        record = self.store.current(name)
        return record is not None and self._broken.get(name) != record

    def records(self) -> list[AdapterRecord]:
        return self.store.list()

    def record(self, name: str) -> AdapterRecord:
        return self.store.get(name)
