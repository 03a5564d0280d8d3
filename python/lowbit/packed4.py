"""4-bit packed linear weights (int4 group-wise, NF4) and their fused linear kernels (issue 7).

Public API layer: ``lowbit.pack_weight(w, dtype="int4" | "nf4", group_size=64)`` returns a
:class:`PackedWeight4` that ``lowbit.linear`` accepts. The C++ kernels
(``cpp/include/lowbit/linear4.hpp``) decode the 4-bit codes and apply the group scales in
registers; no float32 copy of the weight is ever made. ``lowbit.reference.linear_4bit`` is the spec.

Accuracy contract. With ``W = dequantize(w)`` (exactly representable: code level * float32 scale)
and ``y* = x @ W.T + bias`` exact:

- ``act="float"``: ``|y - y*| <= (group_size + ceil(K / group_size) + 2) * 2**-24 * (|x| @ |W|.T)
  + 2**-24 * |y*|`` (float32 fused multiply-adds in a fixed order: per column, the group's inputs
  in order, then the groups in order). Every ISA runs the same sequence, so all give the same bits.
- ``act="int8"`` (int4 only): activations are quantized per row and group to int8 (symmetric,
  ``xscale = max|x| / 127``), the integer dot products are exact and the float32 epilogue runs in
  a fixed order, so the result is bit-identical on every ISA to ``lowbit.reference.linear_4bit_int8``;
  against ``y*`` it adds at most ``sum_g (xscale_g / 2) * sum_{k in g} |W[n, k]|`` per output.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import _core
from ._array import as_float_array, as_numpy
from .quantize import choose_qparams, quantize

__all__ = ["PackedWeight4", "pack_weight_4bit", "linear_4bit", "prepare_linear_4bit"]


_PANEL = 16  # output columns per kernel panel
_PAD_CODE = {"int4": 8, "nf4": 7}  # unsigned code of 0.0 (int4 stores q + 8; NF4 level 7 is 0.0)


def _pack_layout(u: np.ndarray, kp: int, pad: int) -> np.ndarray:
    """Unsigned codes (N, K) -> the kernels' panel layout (ceil(N / 16), kp / 8, 64) uint8
    (lowbit/linear4.hpp): per panel of 16 columns and k octet o, byte 4c + j holds column c at
    k = 8o + j in its low nibble and k = 8o + 4 + j in its high nibble. Padding gets ``pad``."""
    n, k = u.shape
    panels = -(-n // _PANEL)
    full = np.full((panels * _PANEL, kp), pad, np.uint8)
    full[:n, :k] = u
    f = full.reshape(panels, _PANEL, kp // 8, 2, 4)  # (p, c, o, h, j)
    b = f[:, :, :, 0, :] | (f[:, :, :, 1, :] << 4)  # (p, c, o, j)
    return np.ascontiguousarray(b.transpose(0, 2, 1, 3).reshape(panels, kp // 8, 4 * _PANEL))


def _unpack_layout(packed: np.ndarray, n: int, k: int) -> np.ndarray:
    panels, octs = packed.shape[:2]
    b = packed.reshape(panels, octs, _PANEL, 4).transpose(0, 2, 1, 3)  # (p, c, o, j)
    u = np.stack([b & 15, b >> 4], axis=3)  # (p, c, o, h, j): k = 8o + 4h + j
    return u.reshape(panels * _PANEL, octs * 8)[:n, :k]


class PackedWeight4:
    """A linear weight ``(N, K)`` stored as 4-bit codes plus one float32 scale per group of
    ``group_size`` consecutive inputs of each output row (the last group of a row may be partial).

    ``dtype="int4"``: symmetric codes in [-8, 7], ``w = q * scale`` with PyTorch's symmetric
    formula ``scale = max(absmax / 7.5, eps)`` (as torchao; the group's absmax itself lands on 7).
    ``dtype="nf4"``: bitsandbytes' NormalFloat levels times the group absmax (identical to
    ``lowbit.quantize(w, dtype="nf4", block_size=group_size)`` when K divides into groups).

    Attributes:
        shape: ``(N, K)``. dtype: "int4" or "nf4". group_size: inputs per scale.
        scale: float32 ``(N, ceil(K / group_size))`` (a copy).
    """

    __slots__ = ("shape", "dtype", "group_size", "_packed", "_scale_t", "_nf4_int8")

    def __init__(self, codes: np.ndarray, scale: np.ndarray, dtype: str, group_size: int):
        n, k = codes.shape
        g = int(group_size)
        groups = -(-k // g)
        self.shape = (int(n), int(k))
        self.dtype = dtype
        self.group_size = g
        u = codes.astype(np.int16) + 8 if dtype == "int4" else codes
        self._packed = _pack_layout(u.astype(np.uint8), groups * g, _PAD_CODE[dtype])
        # group-major (groups, padded N): the kernels load 16 columns' scales at once
        self._scale_t = np.zeros((groups, self._packed.shape[0] * _PANEL), np.float32)
        self._scale_t[:, :n] = np.asarray(scale, np.float32).reshape(n, groups).T
        self._nf4_int8 = None

    def _int8_operands(self) -> tuple:
        """(scales, wsum) for the int8-activation kernel: int4 uses its scales; NF4 uses
        absmax / 127 and the per-group sums of its int8 levels (computed once, kept)."""
        if self.dtype == "int4":
            return self._scale_t, None
        if self._nf4_int8 is None:
            from .reference import NF4_INT8_LEVELS

            u = _unpack_layout(self._packed, self._packed.shape[0] * _PANEL, self._packed.shape[1] * 8)
            groups = self._scale_t.shape[0]
            lv = NF4_INT8_LEVELS[u].astype(np.int32).reshape(u.shape[0], groups, self.group_size)
            wsum = np.ascontiguousarray(lv.sum(axis=2).T, np.int32)
            self._nf4_int8 = ((self._scale_t / np.float32(127)).astype(np.float32), wsum)
        return self._nf4_int8

    @property
    def scale(self) -> np.ndarray:
        return np.ascontiguousarray(self._scale_t[:, : self.shape[0]].T)

    @property
    def nbytes(self) -> int:
        """Exact storage: ceil(K / 2) bytes per row plus the float32 group scales (without the
        kernels' padding to 16 columns and whole groups)."""
        n, k = self.shape
        return int(n * ((k + 1) // 2) + 4 * n * self._scale_t.shape[0])

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / (self.shape[0] * self.shape[1]) if self.shape[0] * self.shape[1] else float("nan")

    def int_repr(self) -> np.ndarray:
        """The codes ``(N, K)``: int8 in [-8, 7] for int4, uint8 indices in [0, 15] for nf4."""
        c = _unpack_layout(self._packed, *self.shape)
        return (c.astype(np.int8) - 8).astype(np.int8) if self.dtype == "int4" else np.ascontiguousarray(c)

    def dequantize(self) -> np.ndarray:
        """float32 ``(N, K)`` weight the kernels compute with (a copy, for inspection and tests)."""
        from .formats import NF4_LEVELS

        c = self.int_repr()
        lv = NF4_LEVELS[c] if self.dtype == "nf4" else c.astype(np.float32)
        return (lv * np.repeat(self.scale, self.group_size, axis=1)[:, : self.shape[1]]).astype(np.float32)

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
        return {s: getattr(self, s) for s in self.__slots__ if s != "_nf4_int8"}

    def __setstate__(self, state):
        self._nf4_int8 = None
        for s, v in state.items():
            object.__setattr__(self, s, v)


def pack_weight_4bit(w: Any, *, dtype: str = "int4", group_size: int = 64) -> PackedWeight4:
    """Quantizes a float weight ``(N, K)`` to 4 bits per group and packs it for :func:`linear_4bit`.

    Args:
        w: float array or CPU torch tensor ``(N, K)`` (``nn.Linear.weight`` layout), finite.
        dtype: "int4" (symmetric, per group) or "nf4" (absmax per group onto the NF4 levels).
        group_size: inputs per scale, a positive multiple of 32 (32, 64, 128 are usual); when it
            does not divide K the last group of each row is shorter.

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
    if group_size <= 0 or group_size % 32:
        raise ValueError(f"group_size: must be a positive multiple of 32, got {group_size}")
    a = np.ascontiguousarray(a, np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError("w: weights must be finite (found NaN or inf)")
    groups = -(-k // group_size)
    if a.size == 0:
        return PackedWeight4(np.zeros((n, k), np.int8), np.ones((n, groups), np.float32), dtype, group_size)
    if k % group_size:  # a partial last group: zeros change no absmax
        a = np.concatenate([a, np.zeros((n, groups * group_size - k), np.float32)], axis=1)
    if dtype == "nf4":
        q = quantize(a, dtype="nf4", block_size=group_size)
        return PackedWeight4(q.int_repr()[:, :k], q.scale, "nf4", group_size)
    m = np.abs(a).reshape(n, groups, group_size).max(axis=2)
    s, _ = choose_qparams(-m, m, dtype="int4", symmetric=True)
    q = quantize(a, s, 0, dtype="int4", group_size=group_size)
    return PackedWeight4(q.int_repr()[:, :k], s, "int4", group_size)


_ACTS = ("dynamic", "float", "int8")


def linear_4bit(x: Any, w: PackedWeight4, bias: Any = None, *, act: str = "dynamic", relu: bool = False) -> np.ndarray:
    """``x @ dequantize(w).T + bias`` in float32 with the weight decoded in registers.

    Two kernels: float32 activations (exact levels), and int8 activations on the int8
    dot-product instructions (AVX-512 VNNI / AVX-VNNI / AVX2; AMX tiles from 12 rows for int4 and
    4 rows for NF4), every one bit-identical to ``reference.linear_4bit_int8``. Multithreaded over
    N, GIL released. Accuracy: see the module docstring.

    Args:
        x: float array ``(..., K)`` (float16/32/64 or a CPU torch tensor).
        w: a :class:`PackedWeight4`.
        bias: optional float ``(N,)``.
        act: "float" (float32 activations), "int8" (activations quantized to int8 per row and
            weight group, symmetric, then the int8 dot-product kernels; NF4 weights then use their
            levels rounded to int8, ``reference.NF4_INT8_LEVELS``, within 0.5 / 127 of the group
            absmax, as llama.cpp's IQ4_NL) or "dynamic" (the default: "int8" at every M, measured
            2.5-4x faster than "float" even for one row; use "float" for exact NF4 levels and
            float32 activations).
        relu: apply ``max(y, 0)``.

    Returns:
        float32 ``(..., N)``.

    Example:
        >>> w = np.ones((2, 32), np.float32)
        >>> lowbit.linear(np.ones((1, 32), np.float32), lowbit.pack_weight(w, dtype="nf4", group_size=32))
        array([[32., 32.]], dtype=float32)
    """
    call = prepare_linear_4bit(w, bias, act=act, relu=relu)
    n, k = w.shape
    xa = as_float_array(x, "x")
    if xa.ndim == 0:
        raise ValueError("x: expected at least 1 dimension, got a scalar")
    if xa.shape[-1] != k:
        raise ValueError(f"x: last dimension {xa.shape[-1]} does not match the weight's K = {k}")
    x2 = np.ascontiguousarray(xa.reshape(-1, k), np.float32)
    return call(x2).reshape(xa.shape[:-1] + (n,))


def prepare_linear_4bit(
    w: PackedWeight4, bias: Any = None, *, act: str = "dynamic", relu: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """Validates a :func:`linear_4bit` call except ``x`` once and returns ``f(x2)`` for
    C-contiguous float32 ``(M, K)`` arrays (no further checks; for layers called many times)."""
    if not isinstance(w, PackedWeight4):
        raise TypeError(f"w: expected a PackedWeight4, got {type(w).__name__}")
    if act not in _ACTS:
        raise ValueError(f"act: expected one of {_ACTS} for 4-bit weights, got {act!r}")
    n = w.shape[0]
    b = None
    if bias is not None:
        b = np.ascontiguousarray(as_numpy(bias, "bias"), np.float32)
        if b.shape != (n,):
            raise ValueError(f"bias: expected shape ({n},), got {b.shape}")
    core = _core.linear_4bit
    packed, group, dtype = w._packed, w.group_size, w.dtype
    kernel_act = "int8" if act == "dynamic" else act
    scale_t, wsum = w._int8_operands() if kernel_act == "int8" else (w._scale_t, None)

    def call(x2: np.ndarray) -> np.ndarray:
        y = core(x2, packed, scale_t, b, n, group, dtype, kernel_act, wsum)
        if relu:
            np.maximum(y, np.float32(0), out=y)
        return y

    return call
