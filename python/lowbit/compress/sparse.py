"""Compressed storage of sparse quantized weights: a bitmask plus the packed nonzero codes.

Torch layer (next to lowbit.nn). Unstructured or N:M pruned weights keep their dense shape in
memory for the kernels, but are *stored* as

- ``weight_mask``: uint8 (ceil(N * C / 8),), one bit per stored code of the (N, C) code matrix,
  row-major, little-endian within a byte (bit i of byte b is code 8b + i); 1 = the code differs
  from the row's (or group's) zero point, i.e. the weight is not zero;
- ``weight_values``: the codes where the mask is 1, in the same order: int8 (nnz,) for int8
  weights, two per byte (low nibble first, uint8 (ceil(nnz / 2),)) for int4 / uint4.

The zero points (and scales) stay as they are, so the dense codes are rebuilt exactly (the
kernels run on them; they are rebuilt once and cached outside the module's state). The two
buffers replace the dense codes buffer, so :func:`lowbit.summary`, :func:`lowbit.metrics.model_nbytes`
and :func:`lowbit.save` count and write the compressed bytes. There is no sparse kernel: lowbit's
dense int8 GEMM on the rebuilt codes ran 5-20x faster than torch's float CSR matmul at 50-90%
unstructured sparsity (``benchmarks/bench_pruning.py --models sparse``; a 1536 x 384 Linear,
256 tokens, one thread), so a sparse int8 kernel would have to beat the dense one, which the
issue's bar (>= 1.5x at 70%) leaves to future work; the dense kernel runs on the rebuilt codes.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

__all__ = ["sparse_storage", "stored_sparsity"]

SPARSE_ATTR = "_lowbit_sparse"
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _kind(mod: nn.Module) -> Optional[int]:
    """Bits per code (8 or 4) when ``mod`` is a quantized layer whose codes can be stored sparse."""
    from ..core.schemes import Int4Weights, Int8Weights, UInt4Weights
    from ..nn.linear import _QuantBase

    if not isinstance(mod, _QuantBase):
        return None
    if type(mod.scheme) is Int8Weights:
        return 8
    if isinstance(mod.scheme, (Int4Weights, UInt4Weights)) and mod.scheme.data_name == "weight_packed":
        return 4
    return None


def _nibbles(p: torch.Tensor) -> torch.Tensor:
    """(N, B) packed bytes -> (N, 2B) uint8 nibbles, low nibble first."""
    return torch.stack([p & 15, p >> 4], dim=-1).reshape(p.shape[0], 2 * p.shape[1])


def _zero_codes(mod: nn.Module, bits: int, shape: tuple[int, int]) -> torch.Tensor:
    """The code of a zero weight at every position of the (N, C) code matrix: the zero point of
    the position's row (or group), as int8 codes or as nibbles (the pad nibble of an odd K: 0)."""
    n, c = shape
    zp = mod._buffers.get("weight_zero_point")
    if zp is None:
        zp = torch.zeros(n, 1, dtype=torch.int32)
    zp = zp.reshape(n, -1) if zp.dim() else zp.reshape(1, 1).expand(n, 1)
    if zp.shape[1] > 1:  # groups along K
        g = mod.scheme.group_size
        cols = torch.arange(c).clamp(max=mod.in_flat - 1) // g
        zp = zp[:, cols]
    z = zp.expand(n, c)
    if bits == 8:
        return z.to(torch.int8).contiguous()
    z = (z.to(torch.int16) & 15).to(torch.uint8).clone()
    if c > mod.in_flat:
        z[:, mod.in_flat:] = 0
    return z


def _codes(mod: nn.Module, bits: int) -> torch.Tensor:
    """The layer's dense code matrix (int8 (N, K), or uint8 nibbles (N, 2 * ceil(K / 2)))."""
    data = getattr(mod, mod.scheme.data_name)
    return data if bits == 8 else _nibbles(data)


def stored_sparsity(mod: nn.Module) -> float:
    """Share of a quantized layer's codes equal to the zero point (weights that are exactly 0)."""
    bits = _kind(mod)
    if bits is None:
        raise ValueError(f"mod: {type(mod).__name__} is not an int8 / int4 / uint4 quantized layer")
    codes = _codes(mod, bits)
    return float((codes == _zero_codes(mod, bits, tuple(codes.shape))).float().mean())


def _compress(mod: nn.Module, bits: int) -> None:
    name = mod.scheme.data_name
    dense = getattr(mod, name)
    codes = _codes(mod, bits)
    mask = codes != _zero_codes(mod, bits, tuple(codes.shape))
    values = codes[mask]
    if bits == 4:
        values = values if values.numel() % 2 == 0 else torch.cat([values, values.new_zeros(1)])
        values = (values[0::2] | (values[1::2] << 4)).contiguous()
    packed = np.packbits(mask.reshape(-1).numpy(), bitorder="little")
    del mod._buffers[name]
    mod.register_buffer("weight_mask", torch.from_numpy(packed))
    mod.register_buffer("weight_values", values.contiguous())
    setattr(mod, SPARSE_ATTR, {"data": name, "shape": tuple(dense.shape), "dtype": str(dense.dtype).split(".")[-1],
                                "nnz": int(mask.sum()), "bits": bits})
    _CACHE[mod] = (_guards(mod), dense)


def _empty(mod: nn.Module, nnz: int) -> None:
    """Gives a freshly built quantized layer the sparse layout for ``nnz`` stored codes (zeros;
    a state_dict load fills them). Used by :func:`lowbit.load`."""
    bits = _kind(mod)
    if bits is None:
        raise ValueError(f"{type(mod).__name__} with {mod.scheme.describe()} has no sparse storage")
    name = mod.scheme.data_name
    dense = getattr(mod, name)
    n_codes = dense.shape[0] * (dense.shape[1] if bits == 8 else 2 * dense.shape[1])
    if not isinstance(nnz, int) or isinstance(nnz, bool) or not 0 <= nnz <= n_codes:
        raise ValueError(f"nnz: expected an int in [0, {n_codes}], got {nnz!r}")
    del mod._buffers[name]
    mod.register_buffer("weight_mask", torch.zeros(-(-n_codes // 8), dtype=torch.uint8))
    mod.register_buffer("weight_values", torch.zeros(nnz if bits == 8 else -(-nnz // 2), dtype=dense.dtype))
    setattr(mod, SPARSE_ATTR, {"data": name, "shape": tuple(dense.shape), "dtype": str(dense.dtype).split(".")[-1],
                                "nnz": nnz, "bits": bits})


def _guards(mod: nn.Module) -> tuple:
    return tuple((t._version, t.data_ptr()) for t in (mod._buffers["weight_mask"], mod._buffers["weight_values"],
                                                      mod._buffers.get("weight_zero_point")) if t is not None)


def dense_codes(mod: nn.Module) -> torch.Tensor:
    """The dense codes buffer of a layer stored sparse, rebuilt from ``weight_mask`` and
    ``weight_values`` (cached until one of them changes). Read-only by contract: the stored form
    is the mask and the values."""
    info = mod.__dict__[SPARSE_ATTR]
    hit = _CACHE.get(mod)
    guards = _guards(mod)
    if hit is not None and hit[0] == guards:
        return hit[1]
    bits, (n, b) = info["bits"], info["shape"]
    c = b if bits == 8 else 2 * b
    mask_bits = mod._buffers["weight_mask"]
    mask = torch.from_numpy(np.unpackbits(mask_bits.cpu().numpy(), count=n * c, bitorder="little").astype(bool))
    mask = mask.reshape(n, c)
    values = mod._buffers["weight_values"].cpu()
    nnz = int(mask.sum())
    if nnz != info["nnz"]:
        raise ValueError(f"weight_mask: {nnz} bits set, the layer stores {info['nnz']} values")
    if bits == 4:
        values = torch.stack([values & 15, values >> 4], dim=-1).reshape(-1)[:nnz]
    codes = _zero_codes(mod, bits, (n, c)).clone()
    codes[mask] = values
    if bits == 4:
        codes = (codes[:, 0::2] | (codes[:, 1::2] << 4)).contiguous()
    codes = codes.to(mask_bits.device)
    _CACHE[mod] = (guards, codes)
    return codes


def sparse_storage(
    model: nn.Module,
    *,
    min_sparsity: float = 0.5,
    layers: Optional[Sequence[str]] = None,
    inplace: bool = False,
) -> nn.Module:
    """Stores the codes of sparse quantized layers compressed: a bitmask of the nonzero weights plus
    their packed codes (int8 one byte each, int4 / uint4 half a byte), instead of the dense codes.

    A code counts as zero when it equals its row's (or group's) zero point, so the layer's outputs
    are unchanged bit for bit. Apply it last, to a model from :func:`lowbit.quantize_model` of a
    :func:`lowbit.prune_magnitude` / :func:`lowbit.prune_n_m` pruned model: int8 at sparsity s stores
    ``1/8 + (1 - s)`` bytes per weight (2:4: 0.625), int4 ``1/8 + (1 - s)/2`` (2:4: 0.375, less than
    dense int4's 0.5 above ~25% sparsity). :func:`lowbit.summary`,
    :func:`lowbit.metrics.model_nbytes` and :func:`lowbit.save` count / write the compressed bytes;
    :func:`lowbit.load` restores the layout. The kernels run on the dense codes, rebuilt once per
    layer and cached in memory (no sparse kernel: it did not measure faster).

    Args:
        model: a quantized model (never modified unless ``inplace``).
        min_sparsity: a layer is compressed when at least this share of its codes are zero (and the
            compressed form is smaller); in [0, 1).
        layers: names of the quantized layers to consider (default: every int8 / int4 / uint4
            QuantLinear / QuantConv layer).
        inplace: compress ``model`` itself.

    Raises:
        ValueError: ``min_sparsity`` outside [0, 1); a named layer that is not an int8 / int4 / uint4
            quantized layer.

    Example:
        >>> import torch
        >>> m = lowbit.prune_n_m(torch.nn.Sequential(torch.nn.Linear(64, 64)), 2, 4)
        >>> q = lowbit.quantize_model(m)
        >>> s = lowbit.sparse_storage(q)
        >>> lowbit.metrics.model_nbytes(s) < lowbit.metrics.model_nbytes(q)
        True
        >>> bool(torch.equal(s(torch.ones(2, 64)), q(torch.ones(2, 64))))
        True
    """
    from .pruning import _check_amount, _check_model, _check_names

    model = _check_model(model)
    min_sparsity = _check_amount(min_sparsity, "min_sparsity")
    names = _check_names(model, layers, "layers")
    if names is not None:
        for n in names:
            m = model.get_submodule(n)
            if _kind(m) is None:
                raise ValueError(f"layers: {n!r} is a {type(m).__name__}, not an int8 / int4 / uint4 quantized layer")
    work = model if inplace else copy.deepcopy(model)
    for n, m in list(work.named_modules()):
        if (names is not None and n not in names) or SPARSE_ATTR in m.__dict__:
            continue
        bits = _kind(m)
        if bits is None:
            continue
        codes = _codes(m, bits)
        zero = int((codes == _zero_codes(m, bits, tuple(codes.shape))).sum())
        total = codes.numel()
        nnz = total - zero
        compressed = -(-total // 8) + (nnz if bits == 8 else -(-nnz // 2))
        dense = getattr(m, m.scheme.data_name).numel()
        if zero < min_sparsity * total or compressed >= dense:
            continue
        _compress(m, bits)
    return work


def sparse_layers(model: nn.Module) -> dict[str, dict[str, Any]]:
    """name -> {"nnz", "bits", ...} of the layers stored as bitmask + values."""
    return {n: dict(m.__dict__[SPARSE_ATTR]) for n, m in model.named_modules() if SPARSE_ATTR in m.__dict__}
