"""QuantEmbedding: nn.Embedding with int8 rows (one scale per row), dequantized on lookup.

Public torch layer (weight-only: lookups gather int8 rows and scale them; no matmul involved).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._common import quantize_weight, recording_graph

__all__ = ["QuantEmbedding", "QuantEmbeddingBag"]


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
        return cls._filled(cls(mod.num_embeddings, mod.embedding_dim, mod.padding_idx), mod, name)

    @staticmethod
    def _filled(q: QuantEmbedding, mod: nn.Module, name: str) -> Any:
        """``q`` with ``mod``'s rows quantized (int8, one symmetric scale per row)."""
        if mod.max_norm is not None:
            raise ValueError(f"{name or type(mod).__name__}: max_norm renormalizes rows on lookup; not supported")
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


class QuantEmbeddingBag(QuantEmbedding):
    """Drop-in replacement of :class:`torch.nn.EmbeddingBag` (no ``max_norm``) storing int8 rows
    as :class:`QuantEmbedding` does (recommendation models, bag-of-words text classifiers: the
    table is most of the model). A call dequantizes only the rows its indices name, once each, and
    reduces them with ``torch.nn.functional.embedding_bag`` (``mode`` sum / mean / max, ``offsets``,
    ``per_sample_weights``, ``include_last_offset``, ``padding_idx``): the result equals
    ``nn.EmbeddingBag`` with the dequantized table.

    Example:
        >>> bag = torch.nn.EmbeddingBag(10, 4, mode="mean")
        >>> q = lowbit.nn.QuantEmbeddingBag.from_float(bag)
        >>> idx, offsets = torch.tensor([1, 2, 4, 5, 4]), torch.tensor([0, 2])
        >>> ref = torch.nn.functional.embedding_bag(idx, q.dequantized_weight(), offsets, mode="mean")
        >>> torch.equal(q(idx, offsets), ref)
        True
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: Optional[int] = None,
                 mode: str = "mean", include_last_offset: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"mode: expected 'sum', 'mean' or 'max', got {mode!r}")
        self.mode, self.include_last_offset = mode, bool(include_last_offset)
        self.layer_name = "QuantEmbeddingBag"

    @classmethod
    def from_float(cls, mod: nn.Module, *, name: str = "") -> "QuantEmbeddingBag":
        if not isinstance(mod, nn.EmbeddingBag):
            raise TypeError(f"mod: expected a torch.nn.EmbeddingBag, got {type(mod).__name__}")
        return cls._filled(cls(mod.num_embeddings, mod.embedding_dim, mod.padding_idx, mod.mode,
                               mod.include_last_offset), mod, name)

    def forward(self, input: torch.Tensor, offsets: Optional[torch.Tensor] = None,  # noqa: A002
                per_sample_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not isinstance(input, torch.Tensor) or input.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{self.layer_name}: expected an int32/int64 index tensor, got "
                            f"{getattr(input, 'dtype', type(input))}")
        if recording_graph():  # graphs (compile, export, ONNX): the whole table dequantized, no data-dependent shapes
            return F.embedding_bag(input, self.dequantized_weight(), offsets, mode=self.mode,
                                   per_sample_weights=per_sample_weights,
                                   include_last_offset=self.include_last_offset, padding_idx=self.padding_idx)
        rows, inverse = torch.unique(input, return_inverse=True)  # each named row dequantized once
        if rows.numel() and (int(rows[0]) < 0 or int(rows[-1]) >= self.num_embeddings):
            raise IndexError(f"{self.layer_name}: index out of range (0 <= index < {self.num_embeddings})")
        table = self.weight_int8[rows].to(torch.float32).mul_(self.weight_scale[rows].unsqueeze(1))
        pad = None
        if self.padding_idx is not None:
            hit = (rows == self.padding_idx).nonzero()
            pad = int(hit[0, 0]) if hit.numel() else None
        return F.embedding_bag(inverse.to(input.dtype), table, offsets, mode=self.mode,
                               per_sample_weights=per_sample_weights, include_last_offset=self.include_last_offset,
                               padding_idx=pad)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}, weight=int8 per row"

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "kind": "QuantEmbeddingBag", "mode": self.mode,
                "include_last_offset": self.include_last_offset}
