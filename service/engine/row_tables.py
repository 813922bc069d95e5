"""Per-row Linear deltas held in fixed tensors, for the static decode step.

The eager path applies each adapter to its own rows (an index per adapter, rebuilt when rows change). A
captured CUDA graph cannot follow changing indices, so on the static path every hooked module gets tables
whose addresses never change:

- each adapter of the running batch has a number (1..slots; 0 = no adapter), and one shared tensor
  `row_adapter` [slots] says which number each row uses: the only thing that changes when rows with
  adapters already in the tables join or leave (one small copy, not one per module);
- LoRA: the A and B matrices of those adapters side by side along the rank axis, and per number its scale
  over its own rank columns (zero elsewhere). `((x A^T) * scale[row_adapter]) B^T` is then each row's
  own `scale * B A x`: two dense products for any mix of adapters and ranks;
- IA3: one vector per number (ones for number 0 and for adapters without an IA3 on that module).

An adapter's weights are copied in when it first appears in the batch and stay while it is there; its
number and rank columns are reused once it has left. Tables only grow (more modules, more rank columns);
each growth bumps `version`, so graphs captured on the old tensors are dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from service.engine.batch import LinearPlan
from service.engine.deltas.compiled import CompiledDelta, LinearDelta
from service.engine.deltas.ia3 import IA3InputScale, IA3OutputScale
from service.engine.deltas.lora import LoraLinearDelta


class LoraRowTable(LinearDelta):
    def __init__(self, in_features: int, out_features: int, rank_columns: int, row_adapter: torch.Tensor, dtype):
        numbers, device = row_adapter.shape[0] + 1, row_adapter.device
        self.row_adapter = row_adapter  # [slots] long, shared by every table
        self.a = torch.zeros((rank_columns, in_features), device=device, dtype=dtype)  # [R, in]: A's stacked
        self.b = torch.zeros((out_features, rank_columns), device=device, dtype=dtype)  # [out, R]: B's side by side
        self.scales = torch.zeros((numbers, rank_columns), device=device, dtype=dtype)  # [numbers, R]

    @property
    def rank_columns(self) -> int:
        return self.a.shape[0]

    def apply_output(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Like LoraLinearDelta: computed in the adapters' dtype, rounded to the output's once.
        row_scales = self.scales[self.row_adapter[: x.shape[0]]]  # [rows, R]
        hidden = F.linear(x.to(self.a.dtype), self.a) * row_scales[:, None, :]
        return (y + F.linear(hidden, self.b)).to(y.dtype)


class IA3RowTable(LinearDelta):
    def __init__(self, features: int, scales_input: bool, row_adapter: torch.Tensor, dtype):
        self.scales_input = scales_input
        self.row_adapter = row_adapter  # [slots] long, shared by every table
        self.vectors = torch.ones((row_adapter.shape[0] + 1, features), device=row_adapter.device, dtype=dtype)

    def _row_vectors(self, rows: int) -> torch.Tensor:
        return self.vectors[self.row_adapter[:rows]][:, None, :]  # [rows, 1, features]

    def apply_input(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self._row_vectors(x.shape[0])).to(x.dtype)

    def apply_output(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (y * self._row_vectors(y.shape[0])).to(y.dtype)


def _next_power_of_two(n: int, least: int) -> int:
    size = least
    while size < n:
        size *= 2
    return size


def _free_start(taken: list[tuple[int, int]], length: int, limit: int) -> int | None:
    """First start of `length` free columns in [0, limit) around the taken (start, length) intervals."""
    start = 0
    for begin, size in sorted(taken):
        if begin - start >= length:
            return start
        start = max(start, begin + size)
    return start if limit - start >= length else None


class RowDeltaTables:
    def __init__(self, linear_shapes: dict[str, tuple[int, int]], slots: int, device: torch.device, dtype: torch.dtype):
        self._linear_shapes = linear_shapes  # base module name -> (in, out), as BaseModel has them
        # LoRA/IA3 weights are float32 on half-precision models (see CompiledDelta.to).
        self.dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        self.row_adapter = torch.zeros(slots, device=device, dtype=torch.long)  # [slots]: each row's number
        self.lora: dict[str, LoraRowTable] = {}
        self.ia3: dict[str, IA3RowTable] = {}
        self.version = 0
        self.numbers: dict[int, int] = {}  # id(delta) -> its number, for the adapters in the tables
        self._held: dict[int, CompiledDelta] = {}  # keeps those deltas (and so their ids) alive
        self._columns: dict[str, dict[int, tuple[int, int]]] = {}  # module -> number -> (first column, rank)

    def plan(self) -> LinearPlan:
        """One plan over every table, applied to all rows: the same tensors whatever the rows are."""
        inputs: dict[str, list] = {}
        outputs: dict[str, list] = {}
        for name, table in [*self.lora.items(), *self.ia3.items()]:
            (inputs if table.scales_input else outputs).setdefault(name, []).append((table, None))
        return LinearPlan(inputs=inputs, outputs=outputs)

    def assign(self, deltas: list[CompiledDelta | None]) -> None:
        """Rows (slots) 0..len(deltas)-1 use `deltas` (None = base model) from the next step on."""
        present = {id(d): d for d in deltas if d is not None and d.linear}
        for key in [k for k in self.numbers if k not in present]:  # adapters that left: free their places
            self._forget(key)
        for key, delta in present.items():
            if key not in self.numbers:
                self._attach(key, delta)
        numbers = [self.numbers[id(d)] if d is not None and id(d) in self.numbers else 0 for d in deltas]
        self.row_adapter.zero_()
        if numbers:
            self.row_adapter[: len(numbers)] = torch.tensor(numbers, dtype=torch.long)

    def _forget(self, key: int) -> None:
        number = self.numbers.pop(key)
        self._held.pop(key)
        for name, table in self.lora.items():
            if self._columns.get(name, {}).pop(number, None) is not None:
                table.scales[number] = 0
        for table in self.ia3.values():
            table.vectors[number] = 1

    def _attach(self, key: int, delta: CompiledDelta) -> None:
        number = min(set(range(1, self.row_adapter.shape[0] + 1)) - set(self.numbers.values()))
        self.numbers[key], self._held[key] = number, delta
        for name, linear in delta.linear.items():
            if isinstance(linear, LoraLinearDelta):
                self._place_lora(name, number, linear)
            elif isinstance(linear, (IA3InputScale, IA3OutputScale)):
                if name not in self.ia3:
                    self.ia3[name] = IA3RowTable(linear.vector.shape[0], linear.scales_input, self.row_adapter, self.dtype)
                    self.version += 1
                self.ia3[name].vectors[number] = linear.vector
            else:  # a new LinearDelta kind must teach this module how to tabulate it
                raise TypeError(f"no row table for {type(linear).__name__}")

    def _place_lora(self, name: str, number: int, linear: LoraLinearDelta) -> None:
        columns = self._columns.setdefault(name, {})
        table = self.lora.get(name)
        start = None if table is None else _free_start(list(columns.values()), linear.rank, table.rank_columns)
        if start is None:  # no room: a wider table, with the adapters already there laid out again
            needed = sum(rank for _, rank in columns.values()) + linear.rank
            table = self._new_lora_table(name, _next_power_of_two(needed, 16), columns)
            start = sum(rank for _, rank in columns.values())
        table.a[start : start + linear.rank] = linear.lora_a
        table.b[:, start : start + linear.rank] = linear.lora_b
        table.scales[number, start : start + linear.rank] = linear.scale
        columns[number] = (start, linear.rank)

    def _new_lora_table(self, name: str, rank_columns: int, columns: dict[int, tuple[int, int]]) -> LoraRowTable:
        in_features, out_features = self._linear_shapes[name]
        old = self.lora.get(name)
        table = LoraRowTable(in_features, out_features, rank_columns, self.row_adapter, self.dtype)
        start = 0
        for number, (first, rank) in sorted(columns.items()):
            table.a[start : start + rank] = old.a[first : first + rank]
            table.b[:, start : start + rank] = old.b[:, first : first + rank]
            table.scales[number, start : start + rank] = old.scales[number, first : first + rank]
            columns[number] = (start, rank)
            start += rank
        self.lora[name] = table
        self.version += 1
        return table
