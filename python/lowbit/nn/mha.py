"""``torch.nn.MultiheadAttention`` as four ordinary Linear layers, so that lowbit quantizes it.
Public torch layer (lowbit.nn).

torch's MultiheadAttention keeps its query / key / value projections in one packed Parameter
(``in_proj_weight``) that its functional forward multiplies with ``F.linear``; no Linear module
exists to quantize, so every model built from ``nn.TransformerEncoderLayer`` /
``nn.TransformerDecoderLayer`` / ``nn.Transformer`` (and torchvision's ViT) kept half of each
block float. :class:`MultiheadAttention` holds ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj``
as ``nn.Linear`` layers over the same storage (views, no copy) and computes what
``F.multi_head_attention_forward`` computes, with every argument torch's module takes
(``batch_first``, unbatched inputs, ``key_padding_mask`` / ``attn_mask`` boolean or float,
``is_causal``, ``need_weights`` / ``average_attn_weights``, ``add_bias_kv``, ``add_zero_attn``,
``kdim`` / ``vdim``, dropout in training). The attention itself runs on
:func:`lowbit.nn.scaled_dot_product_attention` (lowbit's float32 kernel in eager inference) when
no weights are asked for. ``quantize_model``, ``prepare_qat`` and ``load`` apply it
(:mod:`lowbit.nn.decompose`); a self-attention's three projections then share one quantized
input (:mod:`lowbit.nn.siblings`).

torch's fused inference "fast path" of ``nn.TransformerEncoderLayer`` is never taken with this
module (``in_proj_weight`` is a :class:`~lowbit.nn.DequantizedWeight`-style view that makes the
layer's check fail), so the Linear layers always run.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attention import scaled_dot_product_attention
from .linear import DequantizedWeight, plain_weight

__all__ = ["MultiheadAttention", "is_torch_mha"]


def is_torch_mha(m: nn.Module) -> bool:
    """True for ``torch.nn.MultiheadAttention`` itself and subclasses that keep its forward."""
    return isinstance(m, nn.MultiheadAttention) and type(m).forward is nn.MultiheadAttention.forward


def _linear(w: torch.Tensor, b: Optional[torch.Tensor]) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device="meta")
    lin.weight = nn.Parameter(w.detach(), requires_grad=w.requires_grad)  # views of torch's Parameters
    if b is not None:
        lin.bias = nn.Parameter(b.detach(), requires_grad=b.requires_grad)
    return lin


class _Packed:
    """The three projections' weights as one (3E, E) float tensor, for ``in_proj_weight``."""

    def __init__(self, parts: tuple[nn.Module, ...]) -> None:
        self.parts = parts

    def dequantized_weight(self) -> torch.Tensor:
        return torch.cat([plain_weight(p).detach() for p in self.parts])


class _ArgumentError(ValueError, AssertionError):
    """Bad arguments: a ValueError (lowbit's convention) that is also the AssertionError torch's
    module raises for them, so callers catching either keep working."""


def _bool_to_float(mask: Optional[torch.Tensor], dtype: torch.dtype, what: str) -> Optional[torch.Tensor]:
    """torch's canonical mask: boolean True = not attended -> -inf, float masks as given."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))
    if not torch.is_floating_point(mask):
        raise _ArgumentError(f"only bool and floating types of {what} are supported")
    return mask


class MultiheadAttention(nn.Module):
    """``torch.nn.MultiheadAttention`` with ``q_proj`` / ``k_proj`` / ``v_proj`` / ``out_proj``
    as ``nn.Linear`` layers (see the module docstring); built from a torch module with the same
    weights, same forward signature and results (up to float summation order).

    Example:
        >>> torch.manual_seed(0) and None
        >>> mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
        >>> mine = lowbit.nn.MultiheadAttention(mha)
        >>> x = torch.randn(2, 5, 16)
        >>> torch.allclose(mine(x, x, x)[0], mha(x, x, x)[0], atol=1e-6)
        True
        >>> type(mine.q_proj).__name__, mine.q_proj.weight.shape
        ('Linear', torch.Size([16, 16]))
    """

    _float_note = "bias_k / bias_v kept float (appended key / value rows)"  # for summary, with add_bias_kv

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        if not isinstance(mha, nn.MultiheadAttention):
            raise TypeError(f"mha: expected a torch.nn.MultiheadAttention, got {type(mha).__name__}")
        e = mha.embed_dim
        self.embed_dim, self.num_heads, self.head_dim = e, mha.num_heads, mha.head_dim
        self.kdim, self.vdim, self.batch_first, self.dropout = mha.kdim, mha.vdim, mha.batch_first, mha.dropout
        self.add_zero_attn = mha.add_zero_attn
        self._qkv_same_embed_dim = mha._qkv_same_embed_dim
        b = mha.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])
        if mha._qkv_same_embed_dim:
            w = mha.in_proj_weight
            wq, wk, wv = w[:e], w[e:2 * e], w[2 * e:]
        else:
            wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        self.q_proj, self.k_proj, self.v_proj = _linear(wq, bq), _linear(wk, bk), _linear(wv, bv)
        out = mha.out_proj
        self.out_proj = _linear(out.weight, out.bias)
        self.out_proj.weight, self.out_proj.bias = out.weight, out.bias  # the same Parameters
        self.bias_k, self.bias_v = mha.bias_k, mha.bias_v
        self.train(mha.training)  # dropout as the module it replaces

    # -- what torch's module exposes and torch's transformer layers read --
    @property
    def in_proj_weight(self) -> Optional[torch.Tensor]:
        if not self._qkv_same_embed_dim:
            return None
        w = self.q_proj.weight
        return DequantizedWeight(_Packed((self.q_proj, self.k_proj, self.v_proj)), (3 * self.embed_dim, self.embed_dim),
                                 w.device, w.dtype)

    @property
    def in_proj_bias(self) -> Optional[torch.Tensor]:
        parts = [p.bias for p in (self.q_proj, self.k_proj, self.v_proj)]
        return None if any(b is None for b in parts) else torch.cat([b.detach() for b in parts])

    def _heads(self, t: torch.Tensor, batched: bool) -> torch.Tensor:
        """(L, N, E) / (N, L, E) / (L, E) projections -> (N, heads, L, head_dim)."""
        if not batched:
            t = t.unsqueeze(0)
        elif not self.batch_first:
            t = t.transpose(0, 1)
        n, length, _ = t.shape
        return t.reshape(n, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None, need_weights: bool = True,
                attn_mask: Optional[torch.Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        batched = query.dim() == 3
        if query.dim() not in (2, 3) or key.dim() != query.dim() or value.dim() != query.dim():
            raise _ArgumentError(f"query, key and value should be 2-D (unbatched) or 3-D (batched) tensors of one "
                                 f"rank, got {query.dim()}-D, {key.dim()}-D and {value.dim()}-D")
        if query.shape[-1] != self.embed_dim:
            raise _ArgumentError(f"was expecting embedding dimension of {self.embed_dim}, but got {query.shape[-1]}")
        if key.shape[:-1] != value.shape[:-1]:
            raise _ArgumentError(f"key's sequence and batch dims {tuple(key.shape[:-1])} do not match value's "
                                 f"{tuple(value.shape[:-1])}")
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                               "method `generate_square_subsequent_mask` to create this mask.")
        # the same tensor object for a self-attention's three projections: they share one quantized input
        q = self._heads(self.q_proj(query), batched)
        k = self._heads(self.k_proj(key), batched)
        v = self._heads(self.v_proj(value), batched)
        n, _, tgt, _ = q.shape
        kpm = key_padding_mask
        if kpm is not None:
            kpm = _bool_to_float(kpm if batched else kpm.unsqueeze(0), q.dtype, "key_padding_mask")
            if tuple(kpm.shape) != (n, k.shape[2]):
                raise _ArgumentError(f"expecting key_padding_mask shape of {(n, k.shape[2])}, but got "
                                     f"{tuple(kpm.shape)}")
        causal = is_causal and kpm is None and not need_weights
        mask = None if causal else _bool_to_float(attn_mask, q.dtype, "attn_mask")
        if mask is not None:
            if mask.dim() == 2:
                if tuple(mask.shape) != (tgt, k.shape[2]):
                    raise RuntimeError(f"The shape of the 2D attn_mask is {tuple(mask.shape)}, but should be "
                                       f"{(tgt, k.shape[2])}.")
                mask = mask.reshape(1, 1, tgt, -1)
            elif mask.dim() == 3:
                if tuple(mask.shape) != (n * self.num_heads, tgt, k.shape[2]):
                    raise RuntimeError(f"The shape of the 3D attn_mask is {tuple(mask.shape)}, but should be "
                                       f"{(n * self.num_heads, tgt, k.shape[2])}.")
                mask = mask.reshape(n, self.num_heads, tgt, -1)
            else:
                raise RuntimeError(f"attn_mask's dimension {mask.dim()} is not supported")
        extra = []  # key / value columns appended: bias_k / bias_v, then a zero
        if self.bias_k is not None and self.bias_v is not None:
            extra.append((self.bias_k.reshape(1, self.num_heads, 1, self.head_dim).expand(n, -1, -1, -1),
                          self.bias_v.reshape(1, self.num_heads, 1, self.head_dim).expand(n, -1, -1, -1)))
        if self.add_zero_attn:
            z = k.new_zeros(n, self.num_heads, 1, self.head_dim)
            extra.append((z, z))
        for bk, bv in extra:
            k, v = torch.cat([k, bk.to(k.dtype)], dim=2), torch.cat([v, bv.to(v.dtype)], dim=2)
            mask = None if mask is None else F.pad(mask, (0, 1))
            kpm = None if kpm is None else F.pad(kpm, (0, 1))
        if kpm is not None:
            kpm = kpm.reshape(n, 1, 1, -1)
            mask = kpm if mask is None else mask + kpm
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = torch.matmul(q * math.sqrt(1.0 / self.head_dim), k.transpose(-2, -1))
            if mask is not None:
                scores = scores + mask
            attn = torch.softmax(scores, dim=-1)
            if p > 0.0:
                attn = F.dropout(attn, p=p)
            out = torch.matmul(attn, v)
            weights = attn.mean(dim=1) if average_attn_weights else attn
            if not batched:
                weights = weights.squeeze(0)
        else:
            out = scaled_dot_product_attention(q, k, v, mask, p, causal)
        out = out.transpose(1, 2).reshape(n, tgt, self.embed_dim)  # (N, L, E)
        if not batched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return self.out_proj(out), weights

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"
