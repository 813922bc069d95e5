"""Everything the routes share, built once by the app's lifespan and kept on `app.state.deltaserve`."""

from __future__ import annotations

from dataclasses import dataclass

from service.admission import Admission
from service.config import Settings
from service.engine import Engine
from service.engine.base_model import FrozenBase, load_base_model
from service.engine.batcher import Batcher, BatchObserver
from service.inference import Inference
from service.registry import AdapterRegistry
from service.store import AdapterStore


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    batcher: Batcher
    store: AdapterStore
    registry: AdapterRegistry
    inference: Inference
    admission: Admission


def build_state(settings: Settings, admission: Admission, base: FrozenBase | None = None,
                observer: BatchObserver | None = None) -> ServiceState:
    """Load the base model (unless one is given, as tests do), open the store, serve every stored adapter."""
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
    registry = AdapterRegistry(store, engine)
    if settings.load_demo_adapters:
        registry.install_demo(settings.demo_adapters_dir)
    registry.load_stored(compile_now=settings.max_resident_adapters, pinned=settings.pinned_adapters)
    engine.warm_up()
    batcher = Batcher(
        engine,
        max_batch_size=settings.max_batch_size,
        max_batch_wait_ms=settings.max_batch_wait_ms,
        mixed_batches=settings.mixed_batches,
        observer=observer,
    )
    inference = Inference(settings, registry, engine, batcher, admission)
    return ServiceState(settings=settings, engine=engine, batcher=batcher, store=store, registry=registry,
                        inference=inference, admission=admission)
