"""Pipeline definitions persisted next to the adapters, one JSON file each: `<dir>/<name>.json`.

The store only keeps the documents; what a definition means is the engine's business, so any
JSON object is accepted here.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import AbstractContextManager
from pathlib import Path

from service.errors import InvalidRequest, PipelineNotFound
from service.store.durable import fsync_dir, write_json_atomic
from service.store.names import is_valid_name, validate_name

log = logging.getLogger(__name__)


class PipelineDocuments:
    """Pipeline documents in one folder, read from disk on every call: another process sharing the store (a
    replica) may have written one since. Writers hold the store's lock. Call load() once (AdapterStore does)."""

    def __init__(self, directory: Path, lock: AbstractContextManager):
        self.directory = directory
        self._lock = lock
        self._warned: set[str] = set()  # broken files already logged

    def load(self) -> None:
        """Clear writes that crashed before their rename and warn about broken documents (hold the store's lock)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    os.unlink(entry.path)  # a write that crashed before its rename
        self.list()

    def _read(self, path: Path, name: str) -> dict | None:
        """One document, or None (with a warning, once) when it is unreadable or not an object."""
        try:
            with open(path, "rb") as handle:
                definition = json.loads(handle.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._warn(path, f"Skipping pipeline {name!r}: {path} is unreadable: {exc}")
            return None
        if not isinstance(definition, dict):
            self._warn(path, f"Skipping pipeline {name!r}: {path} does not hold a JSON object.")
            return None
        return definition

    def _warn(self, path: Path, message: str) -> None:
        if str(path) not in self._warned:
            self._warned.add(str(path))
            log.warning("%s", message)

    def put(self, name: str, definition: dict) -> bool:
        """Create or replace a pipeline; return True when it is new."""
        validate_name(name)
        if not isinstance(definition, dict):
            raise InvalidRequest("a pipeline definition must be a JSON object")
        try:
            # A private copy that is known to round-trip as UTF-8, so later reads match what is on disk.
            definition = json.loads(json.dumps(definition, ensure_ascii=False).encode("utf-8"))
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError (a lone surrogate) is a ValueError
            raise InvalidRequest(f"the pipeline definition cannot be stored as JSON: {exc}") from exc
        with self._lock:
            created = not self.exists(name)
            write_json_atomic(self._path(name), definition)
        return created

    def get(self, name: str) -> dict:
        definition = self._read(self._path(name), name) if is_valid_name(name) else None
        if definition is None:
            raise PipelineNotFound(f"no pipeline named '{name}'")
        return definition

    def list(self) -> dict[str, dict]:
        """Every pipeline, name -> definition, sorted by name (a scan of the folder)."""
        documents: dict[str, dict] = {}
        with os.scandir(self.directory) as entries:
            found = sorted(entries, key=lambda entry: entry.name)
        for entry in found:
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                continue  # being written
            name, suffix = os.path.splitext(entry.name)
            if suffix != ".json" or not entry.is_file(follow_symlinks=False):
                self._warn(Path(entry.path), f"Skipping {entry.path} in the pipeline folder: not a <name>.json file.")
                continue
            if not is_valid_name(name):
                self._warn(Path(entry.path), f"Skipping pipeline file {entry.path}: {name!r} is not a valid name.")
                continue
            definition = self._read(Path(entry.path), name)
            if definition is not None:
                documents[name] = definition
        return documents

    def exists(self, name: str) -> bool:
        return is_valid_name(name) and self._read(self._path(name), name) is not None

    def delete(self, name: str) -> None:
        with self._lock:
            if not self.exists(name):
                raise PipelineNotFound(f"no pipeline named '{name}'")
            os.unlink(self._path(name))
            fsync_dir(self.directory)

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.json"
