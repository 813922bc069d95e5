"""Where adapter version folders live.

AdapterStore talks to version folders only through `VersionStorage`, so a backend that keeps
them elsewhere (an object store, with a local cache the engine can read) can replace
`LocalVersionStorage` later. Records stay local either way: they are the switch that makes a
version visible.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Protocol

from service.store.durable import fsync_dir, fsync_file
from service.store.file_set import ADAPTER_FILES

log = logging.getLogger(__name__)


class VersionStorage(Protocol):
    def publish(self, name: str, version: int, staged_dir: Path) -> Path:
        """Make the files in `staged_dir` (consumed) durable as `version` of `name`; return its folder."""
        ...

    def path(self, name: str, version: int) -> Path:
        """The local folder holding the files of `version` of `name`."""
        ...

    def problem(self, name: str, version: int, expected_bytes: int) -> str | None:
        """Why that version cannot be served (missing folder or files, wrong size), or None. No reads of data."""
        ...

    def prune(self, name: str, keep: int) -> None:
        """Remove every version of `name` except `keep`."""
        ...


class LocalVersionStorage:
    """Version folders at `<root>/<name>/versions/<N>/`, on the same filesystem as staging."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, name: str, version: int) -> Path:
        return self.root / name / "versions" / str(version)

    def publish(self, name: str, version: int, staged_dir: Path) -> Path:
        # Sync the data before the rename, so the rename can never expose unwritten files.
        for file_name in ADAPTER_FILES:
            fsync_file(staged_dir / file_name)
        fsync_dir(staged_dir)

        entry = self.root / name
        versions = entry / "versions"
        if not entry.exists():
            entry.mkdir()
            fsync_dir(self.root)
        if not versions.exists():
            versions.mkdir()
            fsync_dir(entry)
        target = versions / str(version)
        if target.exists():
            # Left by a put that crashed before its record switch: no record names it.
            shutil.rmtree(target)
        os.rename(staged_dir, target)
        fsync_dir(versions)
        fsync_dir(staged_dir.parent)
        return target

    def problem(self, name: str, version: int, expected_bytes: int) -> str | None:
        folder = self.path(name, version)
        if not folder.is_dir():
            return f"its version folder {folder} is missing"
        total = 0
        for file_name in ADAPTER_FILES:
            try:
                total += (folder / file_name).stat().st_size
            except FileNotFoundError:
                return f"{folder / file_name} is missing"
        if total != expected_bytes:
            return f"its files hold {total} bytes but the record says {expected_bytes}"
        return None

    def prune(self, name: str, keep: int) -> None:
        versions = self.root / name / "versions"
        try:
            children = list(os.scandir(versions))
        except FileNotFoundError:
            return
        for child in children:
            if child.name != str(keep):
                try:
                    shutil.rmtree(child.path) if child.is_dir(follow_symlinks=False) else os.unlink(child.path)
                except OSError as exc:  # the new version is live already; a leftover only wastes space
                    log.warning("Could not remove old adapter version %s: %s", child.path, exc)
