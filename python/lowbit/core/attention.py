"""Scaled dot-product attention in float32 on lowbit's kernel: the float op between a
transformer's quantized linears (the NumPy side; :mod:`lowbit.nn.attention` runs it inside torch
models).

``out = softmax(q @ k^T * scale + mask) @ v`` per (batch, head), with grouped-query attention (k
and v may have fewer heads, dividing q's) and an optional causal mask (query row i sees keys
0..i, top-left aligned as torch's ``is_causal``). A row whose every key is masked is all zeros,
as in torch. The kernel lays each head's keys out transposed once and keeps 8 query rows x 2
vectors of keys (then of value columns) in registers; exp is a ~2 ulp polynomial. Results agree
with a float64 evaluation to ~1e-6 relative; they are not bit-identical to torch's (neither are
torch's own CPU and math paths).

Example:
    >>> import numpy as np
    >>> q = np.ones((1, 2, 3, 4), np.float32)
    >>> lowbit.attention(q, q, q).shape
    (1, 2, 3, 4)
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from .. import _core
from ._array import as_numpy

__all__ = ["attention"]


def _operand(x: Any, name: str) -> np.ndarray:
    a = as_numpy(x, name)
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {a.dtype}")
    if a.ndim != 4:
        raise ValueError(f"{name}: expected 4 dimensions (batch, heads, rows, features), got shape {a.shape}")
    if a.dtype != np.float32:
        a = a.astype(np.float32)
    if a.shape[-1] > 1 and a.strides[-1] != 4:
        a = np.ascontiguousarray(a)
    return a


def additive_mask(mask: Any, shape: tuple[int, int, int, int]) -> Optional[np.ndarray]:
    """``mask`` as the kernel's additive float32 4-D mask broadcasting to ``shape`` (batch, heads,
    queries, keys): booleans become 0 (attend) / -inf (masked); fewer dimensions are prepended."""
    if mask is None:
        return None
    m = as_numpy(mask, "mask")
    if m.dtype == np.bool_:
        m = np.where(m, np.float32(0.0), np.float32(-np.inf))
    elif m.dtype.kind != "f":
        raise TypeError(f"mask: expected a boolean or floating-point array, got dtype {m.dtype}")
    elif m.dtype != np.float32:
        m = m.astype(np.float32)
    if m.ndim > 4:
        raise ValueError(f"mask: expected at most 4 dimensions, got shape {m.shape}")
    m = m.reshape((1,) * (4 - m.ndim) + m.shape)
    if any(d not in (1, want) for d, want in zip(m.shape, shape)):
        raise ValueError(f"mask: shape {m.shape} does not broadcast to (batch, heads, queries, keys) = {shape}")
    if m.shape[3] != shape[3] or (m.shape[3] > 1 and m.strides[3] != 4):
        m = np.ascontiguousarray(np.broadcast_to(m, m.shape[:3] + (shape[3],)))
    return m


def attention(q: Any, k: Any, v: Any, mask: Any = None, *, causal: bool = False, scale: Optional[float] = None,
              out: Any = None) -> np.ndarray:
    """``softmax(q @ k^T * scale + mask) @ v`` in float32 (see the module docstring).

    Args:
        q: ``(batch, heads, queries, d)``; k: ``(batch, kv_heads, keys, d)``; v: ``(batch,
            kv_heads, keys, dv)``, with kv_heads dividing heads. NumPy arrays or CPU tensors,
            any strides (other dtypes are converted to float32).
        mask: None, or boolean (True = attend) or additive float, broadcasting to ``(batch,
            heads, queries, keys)``.
        causal: hide key j from query row i when j > i (with or without a mask).
        scale: the scores' factor; default ``1 / sqrt(d)``.
        out: optional float32 ``(batch, heads, queries, dv)`` array to write (any strides with
            a contiguous last dimension, e.g. a transposed view of a (batch, queries, heads, dv)
            array); must not overlap the inputs.

    Returns:
        ``out``, or a new C-contiguous float32 array (large ones reuse freed results' pages,
        as every op's result: :func:`lowbit.buffer_cache`).

    Raises:
        TypeError: non-float inputs. ValueError: shapes that do not match (names the argument).
    """
    # q, k, v shapes and the scale are checked by _core.attention (ValueError naming the argument)
    qa, ka, va = _operand(q, "q"), _operand(k, "k"), _operand(v, "v")
    b, h, sq, d = qa.shape
    s = 1.0 / math.sqrt(d) if scale is None else float(scale)
    m = additive_mask(mask, (b, h, sq, ka.shape[2]))
    if out is None:
        return _core.attention(qa, ka, va, m, bool(causal), s)  # a recycled result buffer
    o = as_numpy(out, "out")
    shape = (b, h, sq, va.shape[3])
    if o.dtype != np.float32 or o.shape != shape:
        raise ValueError(f"out: expected a float32 array of shape {shape}, got {o.dtype} {o.shape}")
    # bounds only (np.shares_memory's exact answer can cost more than the attention itself)
    if any(np.may_share_memory(o, a) for a in (qa, ka, va) + (() if m is None else (m,))):
        raise ValueError("out: overlaps an input")
    return _core.attention(qa, ka, va, m, bool(causal), s, o)
