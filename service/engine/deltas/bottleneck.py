"""Bottleneck adapters (AdapterHub's Adapter, Houlsby and Pfeiffer, parallel and scaled adapters, AdapterPlus,
Compacter, Compacter++, the low-rank adapter): their runtime form, their table in a batch, and the compiler.

On a Llama-style decoder layer the `adapters` library replaces the two residual additions with its adapter
layers: `h_mid = attention_adapters(attn_out, x_in)`, `h_out = output_adapters(mlp_out, h_mid)`. For a sub-layer
output y, the stream r entering the sub-layer, and A(v) = scaling * (W_up f(W_down v + b_down) + b_up), one
location computes (adapters 1.3, methods/modeling.py `Adapter`, `ParallelAdapter`, with no layer norm passed):

    input  v   = y + r  if original_ln_before  else y          (parallel: v = r)
    residual s = y      if residual_before_ln  else v          (parallel: s = y)
    out        = LN(A(v) + s)  if adapter_residual_before_ln  else  LN(A(v)) + s   (LN: ln_after's norm, or none)
    stream     = out + r  if original_ln_after  else out

The base model itself adds r to what its attention (o_proj) and feed-forward (down_proj) return, so this kind is
a delta on those two Linear outputs: y -> out (or out - r without original_ln_after), reading r as the input of
the layer norm before the sub-layer. Compacter's PHM layers (a sum of Kronecker products) and the low-rank
adapter's factors are multiplied out at compile time: at serve time every variant is one dense down and one
dense up projection, laid side by side with the batch's other bottleneck adapters like LoRA's ranks.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from transformers.activations import ACT2FN

from service.engine.base_model import FrozenBase
from service.engine.deltas.adapterhub_format import BottleneckConfig, check_base, is_adapterhub_config, parse_bottleneck
from service.engine.deltas.adapterhub_weights import LOCATIONS, AdapterHubTensors, Location
from service.engine.deltas.columns import ColumnBlocks
from service.engine.deltas.compiled import CompiledDelta, ModuleDelta, ModuleTable, adapter_dtype
from service.engine.deltas.registry import register
from service.engine.deltas.weight_values import check_weight_values
from service.errors import UnsupportedAdapter

LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which the library's ln_after norm uses

# What the adapter's input v is made of, per row (see the module docstring).
INPUT_OUTPUT, INPUT_OUTPUT_AND_STREAM, INPUT_STREAM = 0, 1, 2


class BottleneckPiece(ModuleDelta):
    """One location's adapter, dense: down [b, hidden] + bias [b], up [hidden, b] + bias [hidden], scale [hidden],
    the optional ln_after norm, and how it is wired (the docstring's v, s, LN and stream)."""

    def __init__(self, down: torch.Tensor, down_bias: torch.Tensor, up: torch.Tensor, up_bias: torch.Tensor,
                 scale: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor] | None, *, activation: str,
                 input_kind: int, residual_is_input: bool, residual_before_norm: bool, keeps_stream: bool,
                 reads_input_of: str):
        self.down, self.down_bias, self.up, self.up_bias, self.scale, self.norm = (
            down, down_bias, up, up_bias, scale, norm)
        self.activation = activation
        self.input_kind = input_kind
        self.residual_is_input = residual_is_input
        self.residual_before_norm = residual_before_norm
        self.keeps_stream = keeps_stream  # original_ln_after: the base model's residual addition stays
        self.stream_norm = reads_input_of  # the norm whose input is the stream r
        self.reads_input_of = reads_input_of

    @property
    def width(self) -> int:
        return self.down.shape[0]

    @property
    def reads_stream(self) -> bool:
        return self.input_kind != INPUT_OUTPUT or not self.keeps_stream

    @property
    def table_type(self) -> type[ModuleTable]:  # type: ignore[override]
        return table_for(self.activation)

    def to(self, device: torch.device, dtype: torch.dtype) -> BottleneckPiece:
        def move(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(device, dtype)

        return BottleneckPiece(
            move(self.down), move(self.down_bias), move(self.up), move(self.up_bias), move(self.scale),
            None if self.norm is None else (move(self.norm[0]), move(self.norm[1])),
            activation=self.activation, input_kind=self.input_kind, residual_is_input=self.residual_is_input,
            residual_before_norm=self.residual_before_norm, keeps_stream=self.keeps_stream,
            reads_input_of=self.stream_norm,
        )

    def numel(self) -> int:
        norm = 0 if self.norm is None else 2 * self.norm[0].numel()
        return sum(t.numel() for t in (self.down, self.down_bias, self.up, self.up_bias, self.scale)) + norm


class BottleneckTable(ModuleTable):
    """The batch's bottleneck adapters of one non-linearity on one sub-layer output, side by side along the
    bottleneck axis (columns.py): downs stacked [R, hidden], ups [hidden, R], and per adapter number which columns
    are its own, its up bias, scale, norm and wiring. Rows whose number holds nothing here pass through unchanged,
    bit for bit; other rows' columns are excluded by selection, never by multiplying by zero (an infinity there
    must not turn into NaN for this row)."""

    activation_name: ClassVar[str] = "relu"

    def __init__(self, shape: tuple[int, int], numbers: int, device: torch.device, dtype: torch.dtype):
        super().__init__(shape, numbers, device, dtype)
        self.hidden = shape[1]
        self._blocks = ColumnBlocks()
        self._reads_stream = False  # some adapter here reads r: a Python branch, so graphs must know (set -> True)
        self._norms = False  # some adapter here has an ln_after norm
        name = self.activation_name
        self._activation = F.leaky_relu if name == "leakyrelu" else ACT2FN[name]
        self._allocate_columns()
        self._allocate_numbers(numbers)

    def _zeros(self, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.zeros(shape, device=self.device, dtype=dtype or self.dtype)

    def _allocate_columns(self) -> None:
        columns = self._blocks.columns
        self.down = self._zeros(columns, self.hidden)
        self.down_bias = self._zeros(columns)
        self.up = self._zeros(self.hidden, columns)

    def _allocate_numbers(self, numbers: int) -> None:
        self.owns = self._zeros(numbers, self._blocks.columns, dtype=torch.bool)
        self.up_bias = self._zeros(numbers, self.hidden)
        self.scale = self._zeros(numbers, self.hidden) + 1
        self.norm_weight = self._zeros(numbers, self.hidden) + 1
        self.norm_bias = self._zeros(numbers, self.hidden)
        self.input_kind = self._zeros(numbers, dtype=torch.long)
        self.residual_is_input, self.residual_before_norm, self.has_norm, self.drops_stream, self.active = (
            self._zeros(numbers, dtype=torch.bool) for _ in range(5))

    def _per_number(self) -> list[str]:
        return ["owns", "up_bias", "scale", "norm_weight", "norm_bias", "input_kind", "residual_is_input",
                "residual_before_norm", "has_norm", "drops_stream", "active"]

    def set(self, number: int, delta: ModuleDelta) -> bool:
        assert isinstance(delta, BottleneckPiece)
        grew = False
        start = self._blocks.find(delta.width)
        if start is None:
            start, grew = self._repack(delta.width), True
        columns = slice(start, start + delta.width)
        self._blocks.hold(number, start, delta.width)
        self.down[columns], self.down_bias[columns], self.up[:, columns] = delta.down, delta.down_bias, delta.up
        self.owns[number] = False
        self.owns[number, columns] = True
        self.up_bias[number], self.scale[number] = delta.up_bias, delta.scale
        if delta.norm is not None:
            self.norm_weight[number], self.norm_bias[number] = delta.norm
        self.input_kind[number] = delta.input_kind
        self.residual_is_input[number] = delta.residual_is_input
        self.residual_before_norm[number] = delta.residual_before_norm
        self.has_norm[number] = delta.norm is not None
        self.drops_stream[number] = not delta.keeps_stream
        self.active[number] = True
        if delta.reads_stream and not self._reads_stream:
            self._reads_stream = grew = True
        if delta.norm is not None and not self._norms:
            self._norms = grew = True
        return grew

    def reset(self, number: int) -> None:
        if self._blocks.release(number):
            self.owns[number] = False
            self.active[number] = False

    def resize(self, numbers: int) -> None:
        old = {name: getattr(self, name) for name in self._per_number()}
        self._allocate_numbers(numbers)
        kept = min(numbers, old["active"].shape[0])
        for name, tensor in old.items():
            getattr(self, name)[:kept] = tensor[:kept]

    def _repack(self, room_for: int) -> int:
        old_down, old_bias, old_up, old_owns = self.down, self.down_bias, self.up, self.owns
        start, moves = self._blocks.repack(room_for)
        self._allocate_columns()
        self.owns = self._zeros(old_owns.shape[0], self._blocks.columns, dtype=torch.bool)
        for move in moves:
            old, new = slice(move.old, move.old + move.width), slice(move.new, move.new + move.width)
            self.down[new], self.down_bias[new], self.up[:, new] = old_down[old], old_bias[old], old_up[:, old]
            self.owns[move.number, new] = True
        return start

    def apply_output(self, x: torch.Tensor, y: torch.Tensor, numbers: torch.Tensor,
                     stream: torch.Tensor | None = None) -> torch.Tensor:
        def per_row(table: torch.Tensor) -> torch.Tensor:  # [numbers, ...] -> [rows, 1, ...] for these rows
            return table[numbers].unsqueeze(1)

        out = y.to(self.dtype)
        r = None
        if self._reads_stream:
            assert stream is not None  # the hooks record the stream for every table that reads it
            r = stream.to(self.dtype)
            kind = per_row(self.input_kind)[..., None]
            v = torch.where(kind == INPUT_OUTPUT, out, torch.where(kind == INPUT_OUTPUT_AND_STREAM, out + r, r))
        else:
            v = out
        hidden = torch.where(per_row(self.owns), self._activation(F.linear(v, self.down, self.down_bias)), 0.0)
        added = (F.linear(hidden, self.up) + per_row(self.up_bias)) * per_row(self.scale)
        residual = torch.where(per_row(self.residual_is_input)[..., None], v, out)
        before_norm = per_row(self.residual_before_norm)[..., None]
        z = torch.where(before_norm, added + residual, added)
        if self._norms:
            normed = F.layer_norm(z, (self.hidden,), eps=LAYER_NORM_EPS) * per_row(self.norm_weight)
            z = torch.where(per_row(self.has_norm)[..., None], normed + per_row(self.norm_bias), z)
        z = torch.where(before_norm, z, z + residual)
        if r is not None:
            z = torch.where(per_row(self.drops_stream)[..., None], z - r, z)
        return torch.where(per_row(self.active)[..., None], z, out).to(y.dtype)


_TABLES: dict[str, type[BottleneckTable]] = {}


def table_for(activation: str) -> type[BottleneckTable]:
    """One table type per non-linearity (a table applies one; rows of others pass through it unchanged)."""
    if activation not in _TABLES:
        _TABLES[activation] = type(f"BottleneckTable_{activation}", (BottleneckTable,), {"activation_name": activation})
    return _TABLES[activation]


def _piece(config: BottleneckConfig, location: Location, layer: int, weights: AdapterHubTensors,
           hidden: int) -> BottleneckPiece:
    width = config.bottleneck_size(layer)
    down, down_bias = weights.projection(layer, location, "down", hidden, width)
    up, up_bias = weights.projection(layer, location, "up", width, hidden)
    if config.is_parallel:
        input_kind, residual_is_input, residual_before_norm = INPUT_STREAM, False, False
    else:
        input_kind = INPUT_OUTPUT_AND_STREAM if config.original_ln_before else INPUT_OUTPUT
        residual_is_input = not config.residual_before_ln
        residual_before_norm = config.adapter_residual_before_ln
    return BottleneckPiece(
        down, down_bias, up, up_bias, weights.scale(layer, location, hidden),
        weights.norm(layer, location, hidden) if config.ln_after else None,
        activation=config.non_linearity, input_kind=input_kind, residual_is_input=residual_is_input,
        residual_before_norm=residual_before_norm, keeps_stream=config.original_ln_after,
        reads_input_of=location.stream_source(layer),
    )


@register("bottleneck", "BOTTLENECK", parse=parse_bottleneck, recognise=is_adapterhub_config)
def compile_bottleneck(config: BottleneckConfig, tensors: dict[str, torch.Tensor], base: FrozenBase) -> CompiledDelta:
    check_base(config, base.config.model_type, base.hidden_size, base.num_layers)
    served_dtype = adapter_dtype(base.dtype)
    check_weight_values(tensors, served_dtype)
    weights = AdapterHubTensors(config, tensors, base.num_layers)
    modules: dict[str, ModuleDelta] = {}
    for layer in range(base.num_layers):
        for location in LOCATIONS:
            if not weights.has(layer, location):
                continue
            for module in (location.module(layer), location.stream_source(layer)):
                if module not in base.module_types:
                    raise UnsupportedAdapter(
                        f"the base model has no module '{module}', where bottleneck adapters attach on a "
                        f"{config.model_type} model"
                    )
            modules[location.module(layer)] = _piece(config, location, layer, weights, base.hidden_size)
    weights.check_all_used()
    dense = {f"{name}.{part}": tensor for name, piece in modules.items() if isinstance(piece, BottleneckPiece)
             for part, tensor in (("down", piece.down), ("up", piece.up))}
    check_weight_values(dense, served_dtype)  # Kronecker sums of finite factors can still overflow
    return CompiledDelta(
        kind="bottleneck",
        config=config,
        parameters=sum(t.numel() for t in tensors.values()),
        base_model=config.base_model_name_or_path,
        modules=modules,
    )
