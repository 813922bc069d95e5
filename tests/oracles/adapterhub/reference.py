"""AdapterHub bottleneck adapters on a transformers Llama, written out: the arithmetic the serving engine must
reproduce, checked against the library's own outputs (tests/test_adapterhub_oracle.py).

Read from `adapters` 1.3 (methods/modeling.py `Adapter`, `ParallelAdapter`, `PHMLayer`; methods/bottleneck.py
`bottleneck_layer_forward`; models/llama/modeling_llama.py). On Llama the library calls its adapter layers with
no layer norm, in place of the decoder layer's two residual additions:
    h_mid = attention_adapters(attn_out, residual=x_in)    # instead of x_in + attn_out
    out   = output_adapters(mlp_out, residual=h_mid)       # instead of h_mid + mlp_out
With A(v) = scaling * (W_up f(W_down v + b_down) + b_up), and the configs' defaults for the rest (no ln_before,
ln_after, gating), one adapter location computes, for a sub-layer output y with residual r:
- sequential, original_ln_before=False (Houlsby, Compacter):  r + y + A(y)
- sequential, original_ln_before=True  (Pfeiffer, Compacter++): (r + y) + A(r + y)
- parallel (par_bn, scaled_par_bn):                            r + y + A(r)
A PHM layer (Compacter) is a dense map x @ H + b with H = sum_i kron(rule_i, W_i), W_i = W_left_i @ W_right_i when
factorized, the rule shared by the model (`model.shared_parameters.<name>.phm_rule`) or per layer
(`phm_rule`, or `phm_rule_left @ phm_rule_right`): computed once, it is a plain down/up projection.

This module applies that with forward hooks, one adapter for the whole batch; it is a reference, not the
engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "gelu": F.gelu,
    "swish": F.silu,
    "silu": F.silu,
    "tanh": torch.tanh,
}
LOCATIONS = {"attention_adapters": "self_attn", "output_adapters": "mlp"}


def kronecker_sum(rule: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_i kron(rule[i], weights[i]): [n, a, b] x [n, c, d] -> [a*c, b*d]."""
    n, a, b = rule.shape
    _, c, d = weights.shape
    return (rule[:, :, None, :, None] * weights[:, None, :, None, :]).reshape(n, a * c, b * d).sum(0)


def dense_projection(tensors: dict[str, torch.Tensor], prefix: str, shared: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [out, in], bias [out]) of a Linear or a PHM layer saved under `prefix`."""
    if prefix + "weight" in tensors:
        return tensors[prefix + "weight"], tensors[prefix + "bias"]
    if prefix + "W_left" in tensors:
        weights = torch.bmm(tensors[prefix + "W_left"], tensors[prefix + "W_right"])
    else:
        weights = tensors[prefix + "W"]
    if shared + "phm_rule" in tensors:
        rule = tensors[shared + "phm_rule"]
    elif prefix + "phm_rule" in tensors:
        rule = tensors[prefix + "phm_rule"]
    else:
        rule = torch.bmm(tensors[prefix + "phm_rule_left"], tensors[prefix + "phm_rule_right"])
    return kronecker_sum(rule, weights).T, tensors[prefix + "b"]


def _replace_first(output, value: torch.Tensor):
    return (value, *output[1:]) if isinstance(output, tuple) else value


def _first(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def bottleneck_adapter(model: nn.Module, directory: Path) -> Iterator[None]:
    """Apply the adapter saved in `directory` (adapter_config.json + adapter.safetensors) to every row."""
    saved = json.loads((directory / "adapter_config.json").read_text())
    config, name = saved["config"], saved["name"]
    if config.get("ln_before") or config.get("ln_after") or config.get("use_gating"):
        raise NotImplementedError("ln_before, ln_after and use_gating are not in this reference")
    tensors = load_file(directory / "adapter.safetensors")
    activation = ACTIVATIONS[config["non_linearity"].lower()]
    handles = []
    for index, layer in enumerate(model.model.layers):
        for location, sublayer_name in LOCATIONS.items():
            prefix = f"model.layers.{index}.{location}.adapters.{name}."
            if not any(key.startswith(prefix) for key in tensors):
                continue
            shared = f"model.shared_parameters.{name}."
            down_w, down_b = dense_projection(tensors, prefix + "adapter_down.0.", shared)
            up_w, up_b = dense_projection(tensors, prefix + "adapter_up.", shared)
            # A float in the config, or "learned" / "channel": then a tensor beside the weights.
            scaling = tensors[prefix + "scaling"] if prefix + "scaling" in tensors else float(config["scaling"])

            def adapter(v, down_w=down_w, down_b=down_b, up_w=up_w, up_b=up_b, scaling=scaling):
                return (activation(v @ down_w.T + down_b) @ up_w.T + up_b) * scaling

            handles += _hooks(layer, location, sublayer_name, adapter, config)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _hooks(layer: nn.Module, location: str, sublayer_name: str, adapter, config: dict) -> list:
    if not config["is_parallel"] and not config["original_ln_before"]:
        # r + y + A(y): the sub-layer's own output grows by A of itself.
        def on_sublayer(module, args, output):
            return _replace_first(output, _first(output) + adapter(_first(output)))

        return [getattr(layer, sublayer_name).register_forward_hook(on_sublayer)]
    # A of (r + y) or of r: both are in the residual stream, which no module returns, so the adapter's output
    # is added where the stream next goes: the MLP's input norm and the layer's output (the attention
    # location), or the layer's output alone (the output location).
    state: dict[str, torch.Tensor] = {}
    handles = []
    if location == "attention_adapters":

        def on_layer_input(module, args, kwargs):
            state["x_in"] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

        def on_mlp_norm_input(module, args):
            h_mid = args[0]
            state["added"] = adapter(state["x_in"] if config["is_parallel"] else h_mid)
            return (h_mid + state["added"], *args[1:])

        handles.append(layer.register_forward_pre_hook(on_layer_input, with_kwargs=True))
        handles.append(layer.post_attention_layernorm.register_forward_pre_hook(on_mlp_norm_input))
    else:

        def on_mlp_norm_input(module, args):
            state["h_mid"] = args[0]

        handles.append(layer.post_attention_layernorm.register_forward_pre_hook(on_mlp_norm_input))

    def on_layer_output(module, args, output):
        hidden = _first(output)
        if location == "attention_adapters":
            return _replace_first(output, hidden + state["added"])
        return _replace_first(output, hidden + adapter(state["h_mid"] if config["is_parallel"] else hidden))

    handles.append(layer.register_forward_hook(on_layer_output))
    return handles
