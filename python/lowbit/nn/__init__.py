"""lowbit.nn: torch modules running lowbit's kernels (quantized inference and QAT). Imports torch.

QuantLinear / QuantConv2d take every :class:`lowbit.QuantConfig` weight format (int8, int4 per
channel or in groups, uint4, nf4, fp16, bf16, log2, ternary, binary) and store it compactly.

Example:
    >>> import torch
    >>> q = lowbit.nn.QuantLinear.from_float(torch.nn.Linear(8, 2))
    >>> q(torch.ones(3, 8)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

from ..interop import _torch_ops  # noqa: F401  (registers the lowbit:: torch ops)
from .attention import scaled_dot_product_attention, use_lowbit_attention_, use_torch_attention_
from .chain import ChainedActivation, chain_int8_, chained_layers, unchain_int8_, unchained
from .conv import QuantConv1d, QuantConv2d
from .conv3d import Conv3d
from .conv_transpose import ConvTranspose
from .decompose import decompose_
from .embedding import QuantEmbedding, QuantEmbeddingBag
from .experts import Experts, is_fused_experts, unfuse_experts_
from .fake_quantize import FakeQuantize, disable_observer, enable_observer
from .fused import InplaceActivation, fuse_activations_, fused_activations, unfuse_activations_
from .linear import DequantizedWeight, QuantLinear
from .mha import MultiheadAttention
from .norm import LayerNorm, use_lowbit_layernorm_, use_torch_layernorm_
from .qat import QATConv1d, QATConv2d, QATLinear
from .rnn import Recurrent
from .siblings import group_siblings_, sibling_groups, ungroup_siblings_

__all__ = [
    "ChainedActivation",
    "Conv3d",
    "ConvTranspose",
    "DequantizedWeight",
    "Experts",
    "FakeQuantize",
    "InplaceActivation",
    "LayerNorm",
    "MultiheadAttention",
    "QATConv1d",
    "QATConv2d",
    "QATLinear",
    "QuantConv1d",
    "QuantConv2d",
    "QuantEmbedding",
    "QuantEmbeddingBag",
    "QuantLinear",
    "Recurrent",
    "chain_int8_",
    "chained_layers",
    "decompose_",
    "disable_observer",
    "enable_observer",
    "fuse_activations_",
    "fused_activations",
    "group_siblings_",
    "is_fused_experts",
    "sibling_groups",
    "unchain_int8_",
    "unfuse_activations_",
    "scaled_dot_product_attention",
    "unchained",
    "unfuse_experts_",
    "ungroup_siblings_",
    "use_lowbit_attention_",
    "use_lowbit_layernorm_",
    "use_torch_attention_",
    "use_torch_layernorm_",
]
