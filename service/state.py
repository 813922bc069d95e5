"""Everything the routes share, built once by the app's lifespan and kept on `app.state.deltaserve`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from service.config import Settings
from service.demo import install_demo
from service.engine import Engine
from service.engine.base_model import BaseModel, load_base_model
from service.engine.batcher import Batcher
from service.errors import DeltaServeError
from service.store import AdapterStore

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    batcher: Batcher
    store: AdapterStore

    def prompt_template(self, adapter: str | None) -> str | None:
        if adapter is None or not self.store.exists(adapter):
            return None
        return self.store.get(adapter).prompt_template


def apply_template(template: str | None, text: str) -> str:
    # The store guarantees exactly one "{text}"; replace() leaves any other braces alone.
    return text if template is None else template.replace("{text}", text)


def build_state(settings: Settings, base: BaseModel | None = None) -> ServiceState:
    """Load the base model (unless one is given, as tests do), open the store, compile every stored adapter."""
    base = base or load_base_model(settings)
    engine = Engine(
        base,
        max_resident_adapters=settings.max_resident_adapters,
        max_cpu_adapters=settings.max_cpu_adapters,
        decode=settings.decode,
        max_batch_size=settings.max_batch_size,
        kv_cache_tokens=settings.kv_cache_tokens,
        cuda_graphs=settings.cuda_graphs,
    )
    store = AdapterStore(settings.adapters_dir, settings.max_upload_bytes)
    if settings.load_demo_adapters:
        install_demo(settings.demo_adapters_dir, store, engine)
    # Compile the pinned and the most recently updated adapters now (up to what the device tier holds);
    # the rest of a large store is compiled on first use.
    records = store.list()
    recent = sorted(records, key=lambda r: r.updated_at, reverse=True)[: settings.max_resident_adapters]
    eager = {r.name for r in recent} | set(settings.pinned_adapters)
    for record in records:
        try:
            if record.name in eager:
                engine.load(record.name, store.files(record.name))
            else:
                engine.know(record.name, store.files(record.name))
        except DeltaServeError as exc:  # e.g. stored for another base model: skip it, keep serving the rest
            log.warning("Skipping stored adapter %s: %s", record.name, exc.message)
    for name in settings.pinned_adapters:
        if name in engine.names():
            engine.adapters.pin(name)
        else:
            log.warning("Pinned adapter %s is not in the store", name)
    engine.warm_up()
    batcher = Batcher(
        engine,
        max_batch_size=settings.max_batch_size,
        max_batch_wait_ms=settings.max_batch_wait_ms,
        mixed_batches=settings.mixed_batches,
    )
    return ServiceState(settings=settings, engine=engine, batcher=batcher, store=store)
