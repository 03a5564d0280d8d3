"""QuantEmbedding: nn.Embedding with int8 rows (one scale per row), dequantized on lookup.

Public torch layer (weight-only: lookups gather int8 rows and scale them; no matmul involved).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._common import quantize_weight

__all__ = ["QuantEmbedding"]


class QuantEmbedding(nn.Module):
    """Drop-in replacement of :class:`torch.nn.Embedding` (no ``max_norm``) storing int8 rows.

    Each row is quantized symmetrically with its own scale (``max|row| / 127``); a lookup gathers
    the int8 rows and returns ``float32(q) * scale``, so a 30k x 384 vocabulary takes 4x less
    memory. Indices as for nn.Embedding (int32/int64, any shape, any device the buffers are on).

    Example:
        >>> emb = torch.nn.Embedding(10, 4)
        >>> q = lowbit.nn.QuantEmbedding.from_float(emb)
        >>> idx = torch.tensor([[1, 2], [3, 9]])
        >>> bool((q(idx) - emb(idx)).abs().max() <= emb.weight.abs().max() / 254 + 1e-6)
        True
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, padding_idx: Optional[int] = None
    ) -> None:
        super().__init__()
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.padding_idx = padding_idx
        self.weight_dtype = "int8"
        self.layer_name = "QuantEmbedding"
        self.register_buffer(
            "weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8)
        )
        self.register_buffer("weight_scale", torch.ones(num_embeddings, dtype=torch.float32))

    @classmethod
    def from_float(cls, mod: nn.Embedding, *, name: str = "") -> "QuantEmbedding":
        if mod.max_norm is not None:
            raise ValueError(
                f"{name or 'Embedding'}: max_norm renormalizes rows on lookup; not supported"
            )
        q = cls(mod.num_embeddings, mod.embedding_dim, mod.padding_idx)
        q.layer_name = name or q.layer_name
        w, s, _ = quantize_weight(mod.weight, "int8", per_channel=True, symmetric=True)
        with torch.no_grad():
            q.weight_int8.copy_(w)
            q.weight_scale.copy_(s)
        return q

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.int32, torch.int64):
            raise TypeError(
                f"{self.layer_name}: expected an int32/int64 index tensor, got {getattr(idx, 'dtype', type(idx))}"
            )
        rows = F.embedding(idx, self.weight_int8).to(torch.float32)
        return rows.mul_(F.embedding(idx, self.weight_scale.unsqueeze(1)))

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8.to(torch.float32) * self.weight_scale[:, None]

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers(recurse=False))

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, weight=int8 per row"

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "QuantEmbedding",
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "padding_idx": self.padding_idx,
        }
