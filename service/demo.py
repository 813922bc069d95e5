"""Install the bundled demo adapters and pipelines into the store at start-up (DELTASERVE_LOAD_DEMO_ADAPTERS).

A demo entry is installed only when the store has nothing of that name, so a user's own adapter or pipeline
called `spelling` is never overwritten. Demo adapters made for another base model are skipped with a warning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from service.engine import Engine
from service.errors import DeltaServeError
from service.peft_format import CONFIG_FILE, METADATA_FILE
from service.store import AdapterStore

log = logging.getLogger(__name__)

PIPELINES_DIR = "pipelines"


def install_demo(demo_dir: Path, store: AdapterStore, engine: Engine) -> list[str]:
    """Returns the names installed now."""
    demo_dir = Path(demo_dir)
    if not demo_dir.is_dir():
        log.info("No demo adapters at %s", demo_dir)
        return []
    installed = []
    for folder in sorted(p for p in demo_dir.iterdir() if (p / CONFIG_FILE).is_file()):
        if store.exists(folder.name):
            continue
        metadata_path = folder / METADATA_FILE
        metadata = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
        try:
            staged = store.stage_directory(folder)
            store.put(folder.name, staged, engine.compile, description=metadata.get("description"),
                      prompt_template=metadata.get("prompt_template"))
        except DeltaServeError as exc:
            log.warning("Demo adapter %s not installed: %s", folder.name, exc.message)
            continue
        installed.append(folder.name)
    for path in sorted((demo_dir / PIPELINES_DIR).glob("*.json")):
        name = path.stem
        if name not in store.list_pipelines():
            store.put_pipeline(name, json.loads(path.read_text()))
            installed.append(name)
    if installed:
        log.info("Installed demo entries: %s", ", ".join(installed))
    return installed
