"""Forward hooks that apply the current batch's Linear deltas (LoRA, IA3) inside the frozen base model.

Hooks are installed once per base module, the first time some adapter targets it, and never removed:
switching adapters between batches only swaps `LinearDeltaRuntime.plan`, a pointer. No module is replaced
and no weight is copied or merged, so the base weights stay bit-identical.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from service.engine.batch import LinearPlan


def _apply_rows(tensor: torch.Tensor, rows: torch.Tensor | None, fn) -> torch.Tensor:
    if rows is None:
        return fn(tensor)
    out = tensor.clone()
    out[rows] = fn(tensor[rows])
    return out


class LinearDeltaRuntime:
    def __init__(self, model: nn.Module):
        self._modules = dict(model.named_modules())
        self._hooked: set[str] = set()
        self.plan: LinearPlan | None = None

    def ensure_hooks(self, module_names: set[str]) -> None:
        for name in module_names - self._hooked:
            module = self._modules[name]
            module.register_forward_pre_hook(self._make_pre_hook(name))
            module.register_forward_hook(self._make_post_hook(name))
            self._hooked.add(name)

    @contextmanager
    def active(self, plan: LinearPlan):
        self.ensure_hooks(plan.modules)
        self.plan = plan
        try:
            yield
        finally:
            self.plan = None

    def _make_pre_hook(self, name: str):
        def pre_hook(module: nn.Module, args: tuple):
            plan = self.plan
            if plan is None or name not in plan.inputs:
                return None
            x = args[0]
            for delta, rows in plan.inputs[name]:
                x = _apply_rows(x, rows, delta.apply_input)
            return (x, *args[1:])

        return pre_hook

    def _make_post_hook(self, name: str):
        def post_hook(module: nn.Module, args: tuple, output: torch.Tensor):
            plan = self.plan
            if plan is None or name not in plan.outputs:
                return None
            x = args[0]
            for delta, rows in plan.outputs[name]:
                if rows is None:
                    output = delta.apply_output(x, output)
                else:
                    output = output.clone()
                    output[rows] = delta.apply_output(x[rows], output[rows])
            return output

        return post_hook
