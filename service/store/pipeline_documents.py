"""Pipeline definitions persisted next to the adapters, one JSON file each: `<dir>/<name>.json`.

The store only keeps the documents; what a definition means is the engine's business, so any
JSON object is accepted here.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from pathlib import Path

from service.errors import InvalidRequest, PipelineNotFound
from service.store.durable import fsync_dir, write_json_atomic
from service.store.names import is_valid_name, validate_name

log = logging.getLogger(__name__)


class PipelineDocuments:
    """Pipeline documents in one folder, cached in memory. Call load() before use (AdapterStore does)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._lock = threading.Lock()
        self._documents: dict[str, dict] = {}  # swapped, never changed in place: readers take no lock

    def load(self) -> None:
        """(Re)read every document; a corrupt one is skipped with a warning, never raised."""
        self.directory.mkdir(parents=True, exist_ok=True)
        documents: dict[str, dict] = {}
        with self._lock, os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    os.unlink(entry.path)  # a write that crashed before its rename
                    continue
                name, suffix = os.path.splitext(entry.name)
                if suffix != ".json" or not entry.is_file(follow_symlinks=False):
                    log.warning("Skipping %s in the pipeline folder: not a <name>.json file.", entry.path)
                    continue
                if not is_valid_name(name):
                    log.warning("Skipping pipeline file %s: %r is not a valid name.", entry.path, name)
                    continue
                try:
                    with open(entry.path, "rb") as handle:
                        definition = json.loads(handle.read().decode("utf-8"))
                except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                    log.warning("Skipping pipeline %r: %s is unreadable: %s", name, entry.path, exc)
                    continue
                if not isinstance(definition, dict):
                    log.warning("Skipping pipeline %r: %s does not hold a JSON object.", name, entry.path)
                    continue
                documents[name] = definition
            self._documents = documents

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
            created = name not in self._documents
            write_json_atomic(self._path(name), definition)
            self._documents = {**self._documents, name: definition}
        return created

    def get(self, name: str) -> dict:
        try:
            return copy.deepcopy(self._documents[name])
        except KeyError:
            raise PipelineNotFound(f"no pipeline named '{name}'") from None

    def list(self) -> dict[str, dict]:
        """Every pipeline, name -> definition, sorted by name."""
        documents = self._documents
        return {name: copy.deepcopy(documents[name]) for name in sorted(documents)}

    def exists(self, name: str) -> bool:
        return name in self._documents

    def delete(self, name: str) -> None:
        with self._lock:
            if name not in self._documents:
                raise PipelineNotFound(f"no pipeline named '{name}'")
            os.unlink(self._path(name))
            fsync_dir(self.directory)
            self._documents = {key: value for key, value in self._documents.items() if key != name}

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.json"
