"""The executable NumPy spec of lowbit's kernels. Slow, plain and obviously right.

Tests and benchmarks check every fast path against these functions. Nothing here calls the C++ core.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = [
    "qrange",
    "uniform01",
    "expand_params",
    "quantize",
    "dequantize",
    "fake_quantize",
    "pack_int4",
    "unpack_int4",
]


def qrange(dtype: str) -> tuple[int, int]:
    """(qmin, qmax) of "int8", "uint8", "int4", "uint4"."""
    return {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7), "uint4": (0, 15)}[dtype]


def _mix32(x: np.ndarray) -> np.ndarray:
    """lowbias32 hash on uint32 arrays (wrapping arithmetic)."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def uniform01(index: np.ndarray, seed: int) -> np.ndarray:
    """The stochastic-rounding offsets u in [0, 1) for flat element indices ``index`` (uint64).

    ``u = (mix32(lo32(index) ^ key(seed, hi32(index))) >> 8) * 2**-24`` with
    ``key = mix32(lo32(seed) ^ mix32(hi32(seed) ^ mix32(hi32(index) ^ 0x9E3779B9)))``.
    """
    index = np.asarray(index, dtype=np.uint64)
    hi = (index >> np.uint64(32)).astype(np.uint32)
    lo = (index & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    s_lo = np.uint32(seed & 0xFFFFFFFF)
    s_hi = np.uint32(seed >> 32)
    key = _mix32(s_lo ^ _mix32(s_hi ^ _mix32(hi ^ np.uint32(0x9E3779B9))))
    bits = _mix32(lo ^ key) >> np.uint32(8)
    return bits.astype(np.float32) * np.float32(1.0 / 16777216.0)


def expand_params(
    shape: tuple, scale, zero_point, axis: Optional[int] = None, group_size: Optional[int] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Broadcasts per-tensor/channel/group parameters to ``shape`` (float32 scale, int64 zp)."""
    s = np.asarray(scale, np.float32)
    z = np.asarray(zero_point, np.int64)
    if group_size is not None:
        n = shape[-1]
        s = np.repeat(s, group_size, axis=-1)[..., :n]
        z = np.repeat(np.broadcast_to(z, np.asarray(scale).shape), group_size, axis=-1)[..., :n]
    elif axis is not None:
        view = [1] * len(shape)
        view[axis] = shape[axis]
        s = s.reshape(view)
        z = np.broadcast_to(z, (shape[axis],)).reshape(view)
    return np.broadcast_to(s, shape), np.broadcast_to(z, shape)


def quantize(
    x: np.ndarray,
    scale,
    zero_point=0,
    dtype: str = "int8",
    axis: Optional[int] = None,
    group_size: Optional[int] = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> np.ndarray:
    """Unpacked integer values (int64) of the logical shape, per the numeric contract."""
    x = np.asarray(x)
    x = x.astype(np.float32)
    qmin, qmax = qrange(dtype)
    s, z = expand_params(x.shape, scale, zero_point, axis, group_size)
    inv = np.float32(1.0) / s
    with np.errstate(invalid="ignore", over="ignore"):
        y = x * inv
        y = np.where(np.isnan(y), np.float32(0), y)
        if rounding == "stochastic":
            u = uniform01(np.arange(x.size, dtype=np.uint64).reshape(x.shape), seed)
            y = np.floor(y + u)
        else:
            y = np.rint(y)
        y = np.clip(y, (qmin - z).astype(np.float32), (qmax - z).astype(np.float32))
    return y.astype(np.int64) + z


def dequantize(q: np.ndarray, scale, zero_point=0, axis=None, group_size=None) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32 (q unpacked, of the logical shape)."""
    q = np.asarray(q)
    s, z = expand_params(q.shape, scale, zero_point, axis, group_size)
    return (q.astype(np.int64) - z).astype(np.float32) * s


def fake_quantize(x, scale, zero_point=0, dtype="int8", axis=None, group_size=None, rounding="nearest", seed=0):
    """``dequantize(quantize(x))``."""
    q = quantize(x, scale, zero_point, dtype, axis, group_size, rounding, seed)
    return dequantize(q, scale, zero_point, axis, group_size)


def pack_int4(q: np.ndarray) -> np.ndarray:
    """Packs 4-bit values two per byte along the last axis, low nibble first, odd length padded with 0."""
    q = np.asarray(q).astype(np.int64) & 0xF
    if q.ndim == 0:
        return q.astype(np.uint8)
    if q.shape[-1] % 2:
        q = np.concatenate([q, np.zeros(q.shape[:-1] + (1,), np.int64)], axis=-1)
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, n: int, signed: bool) -> np.ndarray:
    """Inverse of :func:`pack_int4` for a last axis of length ``n``."""
    p = np.asarray(packed).astype(np.int64)
    v = np.stack([p & 0xF, p >> 4], axis=-1).reshape(p.shape[:-1] + (-1,))[..., :n]
    return np.where(v >= 8, v - 16, v) if signed else v


# ---------------------------------------------------------------------------------------------
# int8 matmul and quantized linear (issue 3): the spec of lowbit.matmul_int8 / pack_weight / linear
# ---------------------------------------------------------------------------------------------

__all__ += ["matmul_int8", "pack_weight_int8", "dynamic_act_qparams", "linear"]

_F32_EPS = np.float32(np.finfo(np.float32).eps)
_F32_MAX = np.float32(np.finfo(np.float32).max)


def matmul_int8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer product in int64: ``a.astype(int64) @ b.astype(int64)``."""
    return np.asarray(a).astype(np.int64) @ np.asarray(b).astype(np.int64)


def pack_weight_int8(w: np.ndarray, axis: Optional[int] = 0) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 weight quantization of ``w (N, K)``: ``(q int64 (N, K), scale float32 (N,))``.

    ``scale = max(absmax / 127.5, eps)`` per row (axis=0) or over the tensor (axis=None).
    """
    w = np.asarray(w, np.float32)
    if axis is None:
        absmax = np.float32(np.max(np.abs(w))) if w.size else np.float32(0)
        absmax = np.full(w.shape[0], absmax, np.float32)
    else:
        absmax = np.max(np.abs(w), axis=1) if w.shape[1] else np.zeros(w.shape[0], np.float32)
    scale = np.maximum(absmax.astype(np.float32) / np.float32(127.5), _F32_EPS).astype(np.float32)
    return quantize(w, scale, 0, "int8", axis=0), scale


def dynamic_act_qparams(x: np.ndarray, per_row: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic asymmetric uint8 parameters of ``x (M, K)``: float32 scale and int64 zero point, (M,).

    Over the finite values and 0: ``scale = max((hi - lo) / 255, eps)`` (an infinite range is
    clamped to float32 max), ``zero_point = clip(-rint(lo / scale), 0, 255)``.
    """
    x = np.asarray(x, np.float32)
    x0 = np.where(np.isfinite(x), x, np.float32(0))
    if per_row:
        lo = np.minimum(x0.min(axis=1, initial=0), 0).astype(np.float32)
        hi = np.maximum(x0.max(axis=1, initial=0), 0).astype(np.float32)
    else:
        lo = np.full(x.shape[0], min(np.float32(0), x0.min(initial=0)), np.float32)
        hi = np.full(x.shape[0], max(np.float32(0), x0.max(initial=0)), np.float32)
    with np.errstate(over="ignore"):
        rng = hi - lo
    rng = np.where(np.isfinite(rng), rng, _F32_MAX).astype(np.float32)
    scale = np.maximum(rng / np.float32(255), _F32_EPS).astype(np.float32)
    zp = np.clip(np.float32(0) - np.rint(lo / scale), 0, 255).astype(np.int64)
    return scale, zp


def linear(
    x: np.ndarray,
    q_w: np.ndarray,
    w_scale: np.ndarray,
    bias: Optional[np.ndarray] = None,
    act: str = "dynamic",
    act_scale: Optional[float] = None,
    act_zero_point: int = 0,
    act_dtype: str = "uint8",
    out_scale: Optional[float] = None,
    out_zero_point: int = 0,
    relu: bool = False,
) -> np.ndarray:
    """Quantized linear layer on ``x (..., K)`` with int weight ``q_w (N, K)`` and scales ``(N,)``.

    ``v = (q_x - zp_x) @ q_w.T`` (exact), ``y = float32(v) * (s_x * s_w) + bias``, ReLU, and an
    optional int8 requantization, every step in float32 in this order.
    """
    x = np.asarray(x, np.float32)
    lead, k = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    if act == "static":
        s = np.full(m, act_scale, np.float32)
        z = np.full(m, act_zero_point, np.int64)
        dt = act_dtype
    else:
        s, z = dynamic_act_qparams(x2, per_row=(act == "dynamic"))
        dt = "uint8"
    q = quantize(x2, s, z, dt, axis=0) if m else np.zeros((0, k), np.int64)
    v = (q - z[:, None]) @ np.asarray(q_w).astype(np.int64).T
    y = v.astype(np.float32) * (s[:, None] * np.asarray(w_scale, np.float32)[None, :])
    if bias is not None:
        y = y + np.asarray(bias, np.float32)[None, :]
    if relu:
        y = np.maximum(y, np.float32(0))
    if out_scale is not None:
        y = quantize(y, np.float32(out_scale), out_zero_point, "int8").astype(np.int8)
    return y.reshape(lead + (q_w.shape[0],))
