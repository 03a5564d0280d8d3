"""4-bit packed linear weights (int4 group-wise, NF4) and their fused linear kernels (issue 7).

Public API layer: ``lowbit.pack_weight(w, dtype="int4" | "nf4", group_size=64)`` returns a
:class:`PackedWeight4` (schemes ``Int4Weights(group_size=g)`` and ``NF4Weights``) that
``lowbit.linear`` accepts. The C++ kernels
(``cpp/include/lowbit/linear_4bit.hpp``) decode the 4-bit codes and apply the group scales in
registers; no float32 copy of the weight is ever made. ``lowbit.reference.linear_4bit`` is the spec.

Accuracy contract. With ``W = dequantize(w)`` (exactly representable: code level * float32 scale)
and ``y* = x @ W.T + bias`` exact:

- ``activation="float"``: ``|y - y*| <= (group_size + ceil(K / group_size) + 2) * 2**-24 * (|x| @ |W|.T)
  + 2**-24 * |y*|`` (float32 fused multiply-adds in a fixed order: per column, the group's inputs
  in order, then the groups in order). Every ISA runs the same sequence, so all give the same bits.
  Inputs so large that a partial sum could overflow float32 (``max|x| > 2**100 / (8 K max|scale|)``)
  are scaled by a power of two before the kernel and the result back (exact unless values
  underflow to subnormals), so ``y`` is inf only where ``y*`` overflows float32 (e.g. ``x = 1e37``).
- ``activation="dynamic"``: activations are quantized per row and group to int8 (symmetric,
  ``xscale = max|x| / 127``), the integer dot products are exact and the float32 epilogue runs in
  a fixed order, so the result is bit-identical on every ISA to ``lowbit.reference.linear_4bit_int8``;
  against ``y*`` it adds at most ``sum_g (xscale_g / 2) * sum_{k in g} |W[n, k]|`` per output.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from .. import _core
from .schemes import ActivationScheme, Int4Weights, NF4Weights, WeightScheme

__all__ = ["PackedWeight4", "prepare_linear_4bit"]


_PANEL = 16  # output columns per kernel panel
_PAD_CODE = {"int4": 8, "nf4": 7}  # unsigned code of 0.0 (int4 stores q + 8; NF4 level 7 is 0.0)


def _pack_layout(u: np.ndarray, kp: int, pad: int) -> np.ndarray:
    """Unsigned codes (N, K) -> the kernels' panel layout (ceil(N / 16), kp / 8, 64) uint8
    (lowbit/linear_4bit.hpp): per panel of 16 columns and k octet o, byte 4c + j holds column c at
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
    ``lowbit.quantize(w, dtype="nf4", group_size=group_size)`` when K divides into groups).

    Attributes:
        scheme: ``Int4Weights(group_size=g)`` or ``NF4Weights(group_size=g)``. shape: ``(N, K)``.
        dtype: "int4" or "nf4". group_size: inputs per scale.
        scale: float32 ``(N, ceil(K / group_size))`` (a copy).
    """

    __slots__ = ("scheme", "shape", "dtype", "group_size", "_packed", "_scale_t", "_nf4_int8")

    def __init__(self, codes: np.ndarray, scale: np.ndarray, scheme: WeightScheme):
        n, k = codes.shape
        g = int(scheme.group_size)
        groups = -(-k // g)
        dtype = scheme.name
        self.scheme = scheme
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
        """Exact storage of the scheme's stored form: ceil(K / 2) bytes per row plus the group
        scales (float32, or nested int8 codes with double quantization), without the kernels'
        padding to 16 columns and whole groups."""
        return self.scheme.nbytes(*self.shape)

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

    def prepare_linear(self, bias: Any, activation: ActivationScheme, *, relu: bool = False,
                       **static: Any) -> Callable[[np.ndarray], np.ndarray]:
        """The packed-weight protocol (see :func:`lowbit.linear`)."""
        from .packed import no_static_arguments

        self.scheme.check_activation(activation)
        no_static_arguments(activation, "4-bit weights", **static)
        return prepare_linear_4bit(self, bias, activation=activation.name, relu=relu)

    @staticmethod
    def _scheme(dtype: Optional[str], group_size: Optional[int], scheme: Optional[WeightScheme]) -> WeightScheme:
        if scheme is not None:
            if not isinstance(scheme, (Int4Weights, NF4Weights)) or scheme.kernel(scheme.default_activation()) != "linear_4bit":
                raise ValueError(f"scheme: expected a 4-bit kernel scheme (int4 groups, nf4), got {scheme!r}")
            return scheme
        if dtype not in ("int4", "nf4"):
            raise ValueError(f"dtype: expected 'int4' or 'nf4', got {dtype!r}")
        return Int4Weights(group_size=group_size) if dtype == "int4" else NF4Weights(group_size=group_size)

    @classmethod
    def from_codes(cls, codes: Any, scale: Any, *, dtype: Optional[str] = None, group_size: Optional[int] = None,
                   scheme: Optional[WeightScheme] = None) -> PackedWeight4:
        """Builds a packed weight from 4-bit codes ``(N, K)`` (int4: integers in [-8, 7]; nf4:
        indices in [0, 15]) and float32 scales ``(N, ceil(K / group_size))``; the format is
        ``scheme`` or ``dtype`` ("int4" / "nf4") with ``group_size``."""
        scheme = cls._scheme(dtype, group_size, scheme)
        dtype, group_size = scheme.name, scheme.group_size
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
        return cls(c, sc, scheme)

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
    def from_packed_codes(cls, packed: Any, scale: Any, *, shape: tuple, dtype: Optional[str] = None,
                          group_size: Optional[int] = None, scheme: Optional[WeightScheme] = None) -> PackedWeight4:
        """Inverse of :meth:`packed_codes`."""
        scheme = cls._scheme(dtype, group_size, scheme)
        dtype = scheme.name
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
        return cls.from_codes(c, scale, scheme=scheme)

    def __getstate__(self):
        return {s: getattr(self, s) for s in self.__slots__ if s != "_nf4_int8"}

    def __setstate__(self, state):
        self._nf4_int8 = None
        for s, v in state.items():
            object.__setattr__(self, s, v)


_ACTS = ("dynamic", "float")


def prepare_linear_4bit(
    w: PackedWeight4, bias: Any = None, *, activation: str = "dynamic", relu: bool = False,
    rotation: Optional[tuple[np.ndarray, int]] = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """The fused 4-bit kernel of :func:`lowbit.linear`: validates a call except ``x`` once and
    returns ``f(x2)`` for C-contiguous float32 ``(M, K)`` arrays (no further checks; for layers
    called many times). ``activation``: "dynamic" (int8 activations per row and group: the
    int8 dot-product kernels, bit-identical on every ISA to ``reference.linear_4bit_int8``; NF4
    levels rounded to int8, within 0.5 / 127 of the group absmax, as llama.cpp's IQ4_NL) or
    "float" (float32 activations, exact levels). ``rotation``: ``(signs, block)``, "dynamic" only:
    each row of x is rotated (:mod:`lowbit.core.rotation`) in cache as it is quantized."""
    act = activation
    if not isinstance(w, PackedWeight4):
        raise TypeError(f"w: expected a PackedWeight4, got {type(w).__name__}")
    if act not in _ACTS:
        raise ValueError(f"activation: expected one of {_ACTS} for 4-bit weights, got {act!r}")
    from .packed import as_bias

    n = w.shape[0]
    b = as_bias(bias, n)
    core = _core.linear_4bit
    packed, group, dtype = w._packed, w.group_size, w.dtype
    kernel_act = "int8" if act == "dynamic" else "float"
    scale_t, wsum = w._int8_operands() if kernel_act == "int8" else (w._scale_t, None)
    rot: tuple = ()
    if rotation is not None:
        if kernel_act != "int8":
            raise ValueError("rotation: fused only with activation='dynamic' (rotate float inputs first)")
        rot = (np.ascontiguousarray(rotation[0], np.float32), int(rotation[1]))
        core(np.zeros((0, w.shape[1]), np.float32), packed, scale_t, None, n, group, dtype, kernel_act, wsum, *rot)

    # Float activations: |every partial sum| <= 8 * K * max|scale| * max|x| (|level| <= 8). Past
    # `limit` x is scaled by a power of two first and the result back (exact barring subnormals), so
    # the kernel's float32 sums overflow only where y* itself does.
    smax = float(np.max(scale_t)) if scale_t.size and kernel_act == "float" else 0.0
    limit = 2.0**100 / (8.0 * max(w.shape[1], 1) * smax) if smax > 0 else np.inf

    def call(x2: np.ndarray) -> np.ndarray:
        amax = max(float(x2.max()), -float(x2.min())) if kernel_act == "float" and x2.size else 0.0
        if amax > limit and amax != np.inf:
            e = int(np.ceil(np.log2(amax / limit)))
            y = core(np.ldexp(x2, -e).astype(np.float32), packed, scale_t, None, n, group, dtype, kernel_act, wsum)
            with np.errstate(over="ignore"):
                y = np.ldexp(y, e).astype(np.float32)
            if b is not None:
                y += b
        else:
            y = core(x2, packed, scale_t, b, n, group, dtype, kernel_act, wsum, *rot)
        if relu:
            np.maximum(y, np.float32(0), out=y)
        return y

    return call
