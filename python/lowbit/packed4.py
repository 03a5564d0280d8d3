"""4-bit packed linear weights (int4 group-wise, NF4) and their float32-activation GEMV (issue 7).

Public API layer: ``lowbit.pack_weight(w, dtype="int4" | "nf4", group_size=64)`` returns a
:class:`PackedWeight4` that ``lowbit.linear`` accepts. The C++ kernels
(``cpp/include/lowbit/linear4.hpp``) decode the 4-bit codes and apply the group scales in
registers; no float32 copy of the weight is ever made. ``lowbit.reference.linear_4bit`` is the spec.

Accuracy contract: with ``W = dequantize(w)`` (exactly representable: code level * float32 scale),
every output satisfies ``|y - (x @ W.T + bias)| <= (K / group_size + 16) * 2**-23 * (|x| @ |W|.T)
+ 2**-24 * |y|`` (float32 accumulation; the exact product is the float64 reference). Summation
order differs between ISAs, so ISAs agree within this bound, not bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._array import as_float_array, as_numpy
from .quantize import choose_qparams, quantize

__all__ = ["PackedWeight4", "pack_weight_4bit", "linear_4bit"]


def _pack_layout(codes: np.ndarray) -> np.ndarray:
    """Nibble codes (N, K) -> (N, K / 2) bytes: per chunk of 32, byte j = code[j] | code[j+16] << 4."""
    n, k = codes.shape
    c = (codes.astype(np.uint8) & 15).reshape(n, k // 32, 2, 16)
    return np.ascontiguousarray((c[:, :, 0, :] | (c[:, :, 1, :] << 4)).reshape(n, k // 2))


def _unpack_layout(packed: np.ndarray, k: int) -> np.ndarray:
    n = packed.shape[0]
    p = packed.reshape(n, k // 32, 1, 16)
    return np.concatenate([p & 15, p >> 4], axis=2).reshape(n, k)


class PackedWeight4:
    """A linear weight ``(N, K)`` stored as 4-bit codes plus one float32 scale per group of
    ``group_size`` consecutive inputs of each output row.

    ``dtype="int4"``: symmetric codes in [-8, 7], ``w = q * scale`` with PyTorch's symmetric
    formula ``scale = max(absmax / 7.5, eps)`` (as torchao; the group's absmax itself lands on 7). ``dtype="nf4"``: bitsandbytes' NormalFloat levels
    times the group absmax (identical to ``lowbit.quantize(w, dtype="nf4", block_size=group_size)``).

    Attributes:
        shape: ``(N, K)``. dtype: "int4" or "nf4". group_size: inputs per scale.
        scale: float32 ``(N, K / group_size)``.
    """

    __slots__ = ("shape", "dtype", "group_size", "scale", "_packed")

    def __init__(self, codes: np.ndarray, scale: np.ndarray, dtype: str, group_size: int):
        n, k = codes.shape
        self.shape = (int(n), int(k))
        self.dtype = dtype
        self.group_size = int(group_size)
        self.scale = np.ascontiguousarray(scale, np.float32).reshape(n, k // group_size)
        self._packed = _pack_layout(codes)

    @property
    def nbytes(self) -> int:
        """Exact storage: K / 2 bytes per row plus the float32 group scales."""
        return int(self._packed.nbytes + self.scale.nbytes)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / (self.shape[0] * self.shape[1]) if self.shape[0] * self.shape[1] else float("nan")

    def int_repr(self) -> np.ndarray:
        """The codes ``(N, K)``: int8 in [-8, 7] for int4, uint8 indices in [0, 15] for nf4."""
        c = _unpack_layout(self._packed, self.shape[1])
        return ((c.astype(np.int8) ^ 8) - 8).astype(np.int8) if self.dtype == "int4" else c

    def dequantize(self) -> np.ndarray:
        """float32 ``(N, K)`` weight the kernels compute with (a copy, for inspection and tests)."""
        from .formats import NF4_LEVELS

        c = self.int_repr()
        lv = NF4_LEVELS[c] if self.dtype == "nf4" else c.astype(np.float32)
        return (lv * np.repeat(self.scale, self.group_size, axis=1)).astype(np.float32)

    def __repr__(self) -> str:
        return (f"PackedWeight4(shape={self.shape}, {self.dtype} group_size={self.group_size}, "
                f"nbytes={self.nbytes}, bits_per_weight={self.bits_per_weight:.3g})")

    @classmethod
    def from_codes(cls, codes: Any, scale: Any, *, dtype: str, group_size: int) -> PackedWeight4:
        """Builds a packed weight from 4-bit codes ``(N, K)`` (int4: integers in [-8, 7]; nf4:
        indices in [0, 15]) and float32 scales ``(N, ceil(K / group_size))``."""
        if dtype not in ("int4", "nf4"):
            raise ValueError(f"dtype: expected 'int4' or 'nf4', got {dtype!r}")
        c = np.asarray(codes)
        if c.ndim != 2 or not np.issubdtype(c.dtype, np.integer):
            raise TypeError(f"codes: expected a 2-D integer array (N, K), got {c.dtype} {c.shape}")
        lo, hi = (-8, 7) if dtype == "int4" else (0, 15)
        if c.size and (c.min() < lo or c.max() > hi):
            raise ValueError(f"codes: {dtype} codes must lie in [{lo}, {hi}]")
        n, k = c.shape
        sc = np.asarray(scale, np.float32)
        if sc.shape != (n, -(-k // group_size)):
            raise ValueError(f"scale: expected shape ({n}, {-(-k // group_size)}), got {sc.shape}")
        return cls(c, sc, dtype, group_size)

    def packed_codes(self) -> np.ndarray:
        """The codes two per byte, row-major ``(N, ceil(K / 2))`` uint8: byte i of a row holds
        code 2i in its low nibble and code 2i + 1 in its high nibble (int4 as two's complement
        nibbles). A stable storage format (lowbit.save); the kernels' own layout may differ."""
        c = self.int_repr().astype(np.uint8) & 15
        n, k = c.shape
        if k % 2:
            c = np.concatenate([c, np.zeros((n, 1), np.uint8)], axis=1)
        return np.ascontiguousarray(c[:, 0::2] | (c[:, 1::2] << 4))

    @classmethod
    def from_packed_codes(cls, packed: Any, scale: Any, *, shape: tuple, dtype: str, group_size: int) -> PackedWeight4:
        """Inverse of :meth:`packed_codes`."""
        p = np.asarray(packed)
        n, k = (int(v) for v in shape)
        if p.dtype != np.uint8 or p.shape != (n, (k + 1) // 2):
            raise ValueError(f"packed: expected uint8 of shape ({n}, {(k + 1) // 2}), got {p.dtype} {p.shape}")
        c = np.empty((n, 2 * p.shape[1]), np.uint8)
        c[:, 0::2] = p & 15
        c[:, 1::2] = p >> 4
        c = c[:, :k]
        if dtype == "int4":
            c = ((c.astype(np.int8) ^ 8) - 8).astype(np.int8)
        return cls.from_codes(c, scale, dtype=dtype, group_size=group_size)

    def __getstate__(self):
        return {s: getattr(self, s) for s in self.__slots__}

    def __setstate__(self, state):
        for s, v in state.items():
            object.__setattr__(self, s, v)


def pack_weight_4bit(w: Any, *, dtype: str = "int4", group_size: int = 64) -> PackedWeight4:
    """Quantizes a float weight ``(N, K)`` to 4 bits per group and packs it for :func:`linear_4bit`.

    Args:
        w: float array or CPU torch tensor ``(N, K)`` (``nn.Linear.weight`` layout), finite.
        dtype: "int4" (symmetric, per group) or "nf4" (absmax per group onto the NF4 levels).
        group_size: inputs per scale; a positive multiple of 32 dividing K.

    Raises:
        ValueError: bad dtype, shape, group size or non-finite weights.

    Example:
        >>> w = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
        >>> pw = lowbit.pack_weight(w, dtype="nf4", group_size=32)
        >>> pw.shape, pw.nbytes, pw.bits_per_weight
        ((8, 64), 320, 5.0)
    """
    if dtype not in ("int4", "nf4"):
        raise ValueError(f"dtype: expected 'int4' or 'nf4', got {dtype!r}")
    if isinstance(group_size, (bool, np.bool_)) or not isinstance(group_size, (int, np.integer)):
        raise TypeError(f"group_size: expected an int, got {type(group_size).__name__}")
    a = as_float_array(as_numpy(w, "w"), "w")
    if a.ndim != 2:
        raise ValueError(f"w: expected a 2-D (N, K) weight, got shape {a.shape}")
    n, k = a.shape
    if group_size <= 0 or group_size % 32 or k % group_size:
        raise ValueError(f"group_size: must be a positive multiple of 32 that divides K = {k}, got {group_size}")
    a = np.ascontiguousarray(a, np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError("w: weights must be finite (found NaN or inf)")
    if a.size == 0:
        return PackedWeight4(np.zeros((n, k), np.uint8), np.ones((n, k // group_size), np.float32), dtype, group_size)
    if dtype == "nf4":
        q = quantize(a, dtype="nf4", block_size=group_size)
        return PackedWeight4(q.int_repr(), q.scale, "nf4", group_size)
    m = np.abs(a).reshape(n, k // group_size, group_size).max(axis=2)
    s, _ = choose_qparams(-m, m, dtype="int4", symmetric=True)
    q = quantize(a, s, 0, dtype="int4", group_size=group_size)
    return PackedWeight4(q.int_repr(), s, "int4", group_size)


_ACTS = ("dynamic", "float", "int8")
# Rows up to which act="dynamic" keeps float32 activations (GEMV / decode).
FLOAT_ROWS = 16


def linear_4bit(x: Any, w: PackedWeight4, bias: Any = None, *, act: str = "dynamic", relu: bool = False) -> np.ndarray:
    """``x @ dequantize(w).T + bias`` in float32 with the weight decoded in registers.

    Tuned for few rows (M <= 16: GEMV / token decode, bound by reading the 4-bit weights); any M
    works. Multithreaded over N, GIL released. Accuracy: see the module docstring.

    Args:
        x: float array ``(..., K)`` (float16/32/64 or a CPU torch tensor).
        w: a :class:`PackedWeight4`.
        bias: optional float ``(N,)``.
        act: "float" (float32 activations), "int8" (activations quantized to int8 per row and
            weight group, symmetric, then the int8 dot-product kernels; int4 weights only) or
            "dynamic" (the default: "float" for up to ``FLOAT_ROWS`` rows, "int8" above for int4;
            "float" always for nf4).
        relu: apply ``max(y, 0)``.

    Returns:
        float32 ``(..., N)``.

    Example:
        >>> w = np.ones((2, 32), np.float32)
        >>> lowbit.linear(np.ones((1, 32), np.float32), lowbit.pack_weight(w, dtype="nf4", group_size=32))
        array([[32., 32.]], dtype=float32)
    """
    if not isinstance(w, PackedWeight4):
        raise TypeError(f"w: expected a PackedWeight4, got {type(w).__name__}")
    if act not in _ACTS:
        raise ValueError(f"act: expected one of {_ACTS} for 4-bit weights, got {act!r}")
    if act == "int8" and w.dtype == "nf4":
        raise ValueError("act: 'int8' activations need int4 weights (NF4 levels are not integers); use 'float'")
    n, k = w.shape
    xa = as_float_array(x, "x")
    if xa.ndim == 0:
        raise ValueError("x: expected at least 1 dimension, got a scalar")
    if xa.shape[-1] != k:
        raise ValueError(f"x: last dimension {xa.shape[-1]} does not match the weight's K = {k}")
    x2 = np.ascontiguousarray(xa.reshape(-1, k), np.float32)
    b = None
    if bias is not None:
        b = np.ascontiguousarray(as_numpy(bias, "bias"), np.float32)
        if b.shape != (n,):
            raise ValueError(f"bias: expected shape ({n},), got {b.shape}")
    y = _core.linear_4bit(x2, w._packed, w.scale, b, w.group_size, w.dtype)
    if relu:
        np.maximum(y, np.float32(0), out=y)
    return y.reshape(xa.shape[:-1] + (n,))
