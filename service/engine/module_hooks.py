"""Forward hooks that apply the running batch's module deltas (LoRA, IA3, BitFit, bottleneck adapters) inside the
frozen base model.

A module gets its hooks once, the first time some batch has a table for it, and keeps them: switching
adapters only swaps which tables and row numbers are active, pointers set for one forward pass. No
module is replaced and no weight is copied or merged, so the base weights stay bit-identical. A module whose
input some table reads (the residual stream before a layer norm) gets a hook that records that input for the
rest of the forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from service.engine.row_tables import RowTables


class ModuleHooks:
    def __init__(self, model: nn.Module):
        self._modules = dict(model.named_modules())
        self._hooked: set[str] = set()
        self._recorded: set[str] = set()  # modules whose input is recorded
        self._tables: RowTables | None = None
        self._numbers: torch.Tensor | None = None  # [rows] long: each row's adapter number
        self._inputs: dict[str, torch.Tensor] = {}  # this forward pass's recorded inputs

    def _ensure(self, module_names: set[str]) -> None:
        for name in module_names - self._hooked:
            module = self._modules[name]
            module.register_forward_pre_hook(self._make_pre_hook(name))
            module.register_forward_hook(self._make_post_hook(name))
            self._hooked.add(name)

    def _ensure_recorded(self, module_names: set[str]) -> None:
        for name in module_names - self._recorded:
            self._modules[name].register_forward_pre_hook(self._make_recorder(name))
            self._recorded.add(name)

    @contextmanager
    def active(self, tables: RowTables | None, numbers: torch.Tensor | None) -> Iterator[None]:
        """Apply `tables` to rows whose adapter numbers are `numbers` during the forward pass inside; None
        (or empty tables) runs the base model alone."""
        if tables is None or tables.empty:
            tables = None
        else:
            self._ensure(tables.modules())
            self._ensure_recorded(tables.sources())
        self._tables, self._numbers = tables, numbers
        try:
            yield
        finally:
            self._tables = self._numbers = None
            self._inputs = {}

    def _make_recorder(self, name: str):
        def record(module: nn.Module, args: tuple):
            tables = self._tables
            if tables is not None and args:
                self._inputs[name] = args[0]
            return None

        return record

    def _make_pre_hook(self, name: str):
        def pre_hook(module: nn.Module, args: tuple):
            tables = self._tables
            if tables is None or name not in tables.inputs:
                return None
            x = args[0]
            assert self._numbers is not None  # set together with the tables
            numbers = self._numbers[: x.shape[0]]  # the static path passes its whole slot map
            for table in tables.inputs[name]:
                x = table.apply_input(x, numbers)
            return (x, *args[1:])

        return pre_hook

    def _make_post_hook(self, name: str):
        def post_hook(module: nn.Module, args: tuple, output: torch.Tensor):
            tables = self._tables
            if tables is None or name not in tables.outputs:
                return None
            x = args[0]
            assert self._numbers is not None
            numbers = self._numbers[: x.shape[0]]
            source = tables.reads.get(name)
            stream = None if source is None else self._inputs.get(source)
            for table in tables.outputs[name]:
                output = table.apply_output(x, output, numbers, stream)
            return output

        return post_hook
