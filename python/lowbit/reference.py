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
