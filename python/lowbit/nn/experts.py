"""Mixture-of-experts layers as ordinary Linear layers, so that lowbit quantizes them. Public torch
layer (lowbit.nn).

transformers (5.x) stores the experts of Mixtral, Qwen2/3-MoE, OLMoE, DeepSeek and about 70 other
families as one module with two 3-D Parameters, ``gate_up_proj`` (experts, 2 * intermediate,
hidden) and ``down_proj`` (experts, hidden, intermediate), and an eager loop over the routed
experts. Those are most of an MoE model's weights, and no Linear layer: quantization left them
float. :func:`unfuse_experts_` replaces each such module by :class:`Experts`, one ``nn.Linear``
pair per expert over the same storage (views, no copy) and the same loop, so every lowbit scheme,
algorithm (GPTQ's Hessians see each expert's own tokens), report and file format covers them;
``quantize_model`` and ``load`` apply it. Modules with another layout (biases, transposed or
interleaved gate / up, as GPT-OSS) are left as they are and stay float (``summary`` says so).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

__all__ = ["Experts", "is_fused_experts", "unfuse_experts_"]


def is_fused_experts(m: nn.Module) -> bool:
    """True for a transformers experts module of the Mixtral layout (see the module docstring)."""
    gu, down = m._parameters.get("gate_up_proj"), m._parameters.get("down_proj")
    if gu is None or down is None or gu.dim() != 3 or down.dim() != 3 or not callable(getattr(m, "act_fn", None)):
        return False
    e, two_i, h = gu.shape
    if set(m._parameters) != {"gate_up_proj", "down_proj"} or two_i % 2 or tuple(down.shape) != (e, h, two_i // 2):
        return False
    try:
        params = list(inspect.signature(type(m).forward).parameters)
    except (TypeError, ValueError):
        return False
    return params[1:4] == ["hidden_states", "top_k_index", "top_k_weights"]


class Experts(nn.Module):
    """The experts of one MoE layer as ``gate_up[e]`` (hidden -> 2 * intermediate) and ``down[e]``
    (intermediate -> hidden) ``nn.Linear`` layers, with transformers' eager expert loop: each routed
    token goes through its experts, ``act(gate) * up``, down, weighted by its routing weight.

    Example:
        >>> import transformers
        >>> cfg = transformers.MixtralConfig(hidden_size=16, intermediate_size=32, num_local_experts=4,
        ...                                  num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
        >>> model = transformers.MixtralForCausalLM(cfg)
        >>> lowbit.nn.unfuse_experts_(model)
        ['model.layers.0.mlp.experts']
        >>> model.model.layers[0].mlp.experts.gate_up[3]
        Linear(in_features=16, out_features=64, bias=False)
    """

    def __init__(self, fused: nn.Module) -> None:
        super().__init__()
        gu, down = fused.gate_up_proj, fused.down_proj
        self.num_experts, two_i, self.hidden_dim = (int(d) for d in gu.shape)
        self.intermediate_dim = two_i // 2
        self.gate_up = nn.ModuleList(self._linear(w) for w in gu)
        self.down = nn.ModuleList(self._linear(w) for w in down)
        self.act_fn = fused.act_fn

    @staticmethod
    def _linear(w: torch.Tensor) -> nn.Linear:
        lin = nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta")
        lin.weight = nn.Parameter(w.detach(), requires_grad=w.requires_grad)  # a view of the fused Parameter
        return lin

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor) -> Any:
        out = torch.zeros_like(hidden_states)
        with torch.no_grad():
            hit = torch.nn.functional.one_hot(top_k_index, num_classes=self.num_experts + 1).permute(2, 1, 0)
            experts = torch.greater(hit.sum(dim=(-1, -2)), 0).nonzero()
        for e in experts[:, 0].tolist():
            if e == self.num_experts:  # transformers' slot for tokens routed nowhere
                continue
            pos, tokens = torch.where(hit[e])
            gate, up = self.gate_up[e](hidden_states[tokens]).chunk(2, dim=-1)
            y = self.down[e](self.act_fn(gate) * up) * top_k_weights[tokens, pos, None]
            out.index_add_(0, tokens, y.to(out.dtype))
        return out

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, hidden={self.hidden_dim}, intermediate={self.intermediate_dim}"


def unfuse_experts_(model: nn.Module) -> list[str]:
    """Replaces every fused experts module of ``model`` (:func:`is_fused_experts`) by
    :class:`Experts` over the same weights, in place; returns their names."""
    from .decompose import decompose_

    return decompose_(model, (Experts,))
