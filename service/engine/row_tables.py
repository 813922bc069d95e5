"""The module deltas of one batch's adapters, held in per-module tables, and which adapter number each row uses.

Each adapter present in the batch gets a number (1, 2, ...; 0 = no adapter), keyed by its compiled
version's uid. Its module deltas are copied into the tables of their types (the type a delta names, see
deltas/compiled.py) once, when it first appears, and stay while any row uses it; its number is reused once
it has left. So rows joining or leaving with adapters already present change only the row -> number map.

The static decode path keeps one `RowTables` with a fixed count of numbers (its slots), whose tensors CUDA
graphs read; every growth (a new table, more rank columns) bumps `version`, so graphs captured on the old
tensors are dropped. The eager path's tables grow their count of numbers as a batch grows.
"""

from __future__ import annotations

import torch

from service.engine.deltas.compiled import CompiledDelta, ModuleTable, adapter_dtype


class RowTables:
    def __init__(self, module_shapes: dict[str, tuple[int, int]], numbers: int, device: torch.device,
                 model_dtype: torch.dtype, *, growable: bool):
        self._shapes = module_shapes  # base module name -> (in, out) features
        self.device, self.dtype = device, adapter_dtype(model_dtype)
        self.capacity = numbers  # adapter numbers 0..capacity-1
        self._growable = growable
        self.tables: dict[tuple[str, type[ModuleTable]], ModuleTable] = {}
        self.inputs: dict[str, list[ModuleTable]] = {}  # module -> tables applied to its input
        self.outputs: dict[str, list[ModuleTable]] = {}  # module -> tables applied to its output
        # module -> the module whose input its tables also read (the residual stream of a bottleneck adapter)
        self.reads: dict[str, str] = {}
        self.numbers: dict[int, int] = {}  # uid of a present adapter -> its number
        self._deltas: dict[int, CompiledDelta] = {}  # uid -> the adapter, to reset its tables when it leaves
        self.version = 0

    @property
    def empty(self) -> bool:
        """No present adapter has a module delta: a forward can skip the tables altogether."""
        return not any(self._deltas[uid].modules for uid in self.numbers)

    def modules(self) -> set[str]:
        return set(self.inputs) | set(self.outputs)

    def sources(self) -> set[str]:
        """Modules whose input some table reads during the forward pass."""
        return set(self.reads.values())

    def assign(self, deltas: list[CompiledDelta | None]) -> list[int]:
        """Make the adapters of `deltas` (one per row; None = base model) the present ones; returns each row's
        number. Adapters present before and still present keep their numbers."""
        present = {d.uid: d for d in deltas if d is not None and d.modules}
        for uid in [uid for uid in self.numbers if uid not in present]:
            self._forget(uid)
        for uid, delta in present.items():
            if uid not in self.numbers:
                self._attach(delta)
        return [self.numbers.get(d.uid, 0) if d is not None else 0 for d in deltas]

    def _forget(self, uid: int) -> None:
        number = self.numbers.pop(uid)
        delta = self._deltas.pop(uid)
        for module, piece in delta.modules.items():
            self.tables[(module, piece.table_type)].reset(number)

    def _attach(self, delta: CompiledDelta) -> None:
        taken = set(self.numbers.values())
        number = next(n for n in range(1, len(taken) + 2) if n not in taken)
        if number >= self.capacity:
            if not self._growable:
                raise RuntimeError(f"{number} adapters do not fit the {self.capacity - 1} numbers of fixed row tables")
            self._resize(max(2 * self.capacity, number + 1))
        self.numbers[delta.uid], self._deltas[delta.uid] = number, delta
        for module, piece in delta.modules.items():
            if piece.reads_input_of is not None:
                self.reads[module] = piece.reads_input_of
            if self._table(module, piece.table_type).set(number, piece):
                self.version += 1

    def _table(self, module: str, table_type: type[ModuleTable]) -> ModuleTable:
        key = (module, table_type)
        if key not in self.tables:
            self.tables[key] = table = table_type(self._shapes[module], self.capacity, self.device, self.dtype)
            (self.inputs if table.scales_input else self.outputs).setdefault(module, []).append(table)
            self.version += 1
        return self.tables[key]

    def _resize(self, capacity: int) -> None:
        self.capacity = capacity
        for table in self.tables.values():
            table.resize(capacity)
        self.version += 1
