"""Formats beyond affine integers: NF4, fp16, bf16, log2, ternary and binary (issue 7).

Public API layer. ``lowbit.quantize(x, dtype=...)`` routes these dtypes here and returns a
:class:`FormatQTensor` (a :class:`~lowbit.QTensor` whose ``dequantize``/``nbytes`` know the format).
NF4 and fp16/bf16 run in C++ kernels (``_core``); log2/ternary/binary are vectorized NumPy.
``lowbit.reference`` holds the NumPy spec of every format.

Bits per weight, scales included (n elements, C channels of length n / C):

=========  ==========================================================================
dtype      bits per weight
=========  ==========================================================================
nf4        4 + 32 / block_size (4.5 at block 64); with ``double_quant=True``
           4 + 8 / block_size + 32 / (256 * block_size) + 32 / n (~4.127 at block 64)
fp16/bf16  16
log2       bits (4 or 8) + 32 * C / n
ternary    2 + 32 * C / n (codes packed four per byte)
binary     1 + 32 * C / n (codes packed eight per byte)
=========  ==========================================================================
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .. import _core
from ._array import as_float_array, as_numpy
from .quantize import QTensor

__all__ = ["FORMATS", "FormatQTensor", "NestedScales", "NF4_LEVELS", "bits_per_weight"]

FORMATS = ("nf4", "fp16", "bf16", "log2", "ternary", "binary")

# bitsandbytes' NF4 codebook (bitsandbytes/functional.py get_4bit_type("nf4"); the same float32
# constants as dDequantizeNF4 in csrc/kernels.cu). Encoding uses bitsandbytes' dQuantizeNF4 tree:
# a value exactly on the midpoint of two levels takes the lower code.
NF4_LEVELS = np.array(
    [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
     -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
     0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
     0.7229568362236023, 1.0],
    dtype=np.float32,
)
NF4_LEVELS.setflags(write=False)

_NESTED_BLOCK = 256
_CODE_BITS = {"nf4": 4, "fp16": 16, "bf16": 16, "ternary": 2, "binary": 1}


@dataclass(frozen=True, eq=False)
class NestedScales:
    """Double-quantized NF4 block scales (QLoRA): ``absmax = codes * scale[block // 256] + offset``.

    As in QLoRA, the mean is subtracted and blocks of 256 scales are quantized to 8 bits; unlike
    bitsandbytes (which uses its dynamic 8-bit map) the codes here are symmetric linear int8 with
    lowbit's round-half-even, so the nested bytes are not bitsandbytes-compatible.
    """

    codes: np.ndarray  # int8, one per NF4 block
    scale: np.ndarray  # float32, one per 256 codes
    offset: float

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.scale.nbytes + 4)

    def decode(self) -> np.ndarray:
        blk = np.arange(self.codes.size) // _NESTED_BLOCK
        return (self.codes.astype(np.float32) * self.scale[blk] + np.float32(self.offset)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class FormatQTensor(QTensor):
    """A tensor in one of :data:`FORMATS`. Fields beyond :class:`~lowbit.QTensor`:

    Attributes:
        data: nf4: uint8 codes of x flattened, two per byte, low nibble first (``ceil(n / 2)``);
            fp16: float16 array of the logical shape; bf16: uint16 bit patterns of that shape;
            log2: uint8 codes (sign bit | magnitude), 4-bit ones packed along the last axis like
            int4; ternary: 2-bit codes (0: 0, 1: +1, 2: -1) four per byte, binary: sign bits
            (1 = negative) eight per byte, both over x flattened, first element in the lowest bits.
        scale: nf4: float32 absmax per block (decoded from ``nested`` when double-quantized);
            log2/ternary/binary: the magnitude a (float, or float32 per channel along ``axis``);
            fp16/bf16: 1.0.
        block_size: nf4 block length over x flattened.
        nested: the stored double-quantized nf4 scales, else None.
        code_bits: bits per stored code (nf4 4, fp16/bf16 16, log2 4 or 8, ternary 2, binary 1).
    """

    block_size: Optional[int] = None
    nested: Optional[NestedScales] = None
    code_bits: int = 0

    @property
    def bits(self) -> int:
        """Bits per stored code (scales not included; see :attr:`bits_per_weight`)."""
        return self.code_bits

    @property
    def qmin(self) -> int:
        raise AttributeError(f"{self.dtype} is not an affine integer format (no qmin)")

    @property
    def qmax(self) -> int:
        raise AttributeError(f"{self.dtype} is not an affine integer format (no qmax)")

    @property
    def granularity(self) -> str:
        if self.dtype == "nf4":
            return "per_block"
        if self.dtype in ("fp16", "bf16"):
            return "elementwise"
        return "per_tensor" if self.axis is None else "per_channel"

    @property
    def nbytes(self) -> int:
        """Exact storage: codes plus float32 scales (nested scales for double-quantized nf4)."""
        if self.dtype in ("fp16", "bf16"):
            return int(self.data.nbytes)
        if self.nested is not None:
            return int(self.data.nbytes + self.nested.nbytes)
        return int(self.data.nbytes + 4 * np.size(self.scale))

    @property
    def bits_per_weight(self) -> float:
        """``8 * nbytes / size``: storage per element, scales included."""
        return 8.0 * self.nbytes / self.size if self.size else float("nan")

    def dequantize(self, out: Optional[np.ndarray] = None) -> np.ndarray:
        """float32 values of the logical shape (into ``out`` if given)."""
        r = _dequantize(self)
        if out is None:
            return r
        if not isinstance(out, np.ndarray) or out.dtype != np.float32:
            raise TypeError("out: expected a float32 NumPy array")
        if out.shape != r.shape:
            raise ValueError(f"out: expected shape {r.shape}, got {out.shape}")
        out[...] = r
        return out

    def int_repr(self) -> np.ndarray:
        """The codes, unpacked, with the logical shape: nf4 uint8 in [0, 15]; fp16/bf16 uint16 bit
        patterns; log2 int16 ``sign * magnitude code``; ternary int8 in {-1, 0, 1}; binary {-1, 1}."""
        n, d = self.size, self.data
        if self.dtype == "nf4":
            return np.stack([d & 15, d >> 4], axis=-1).reshape(-1)[:n].reshape(self.shape)
        if self.dtype in ("fp16", "bf16"):
            return d.view(np.uint16).copy()
        if self.dtype == "log2":
            return _log2_signed(_unpack_last(d, self.shape) if self.code_bits == 4 else d, self.code_bits)
        if self.dtype == "ternary":
            c = np.stack([(d >> s) & 3 for s in (0, 2, 4, 6)], axis=-1).reshape(-1)[:n]
            return np.where(c == 2, -1, c).astype(np.int8).reshape(self.shape)
        bits = np.unpackbits(d, bitorder="little")[:n]
        return (1 - 2 * bits.astype(np.int8)).reshape(self.shape)

    def __repr__(self) -> str:
        extra = f", block_size={self.block_size}" if self.block_size else ""
        extra += ", double_quant" if self.nested is not None else ""
        extra += f", axis={self.axis}" if self.axis is not None else ""
        return (
            f"FormatQTensor(shape={self.shape}, dtype={self.dtype}{extra}, nbytes={self.nbytes}, "
            f"bits_per_weight={self.bits_per_weight:.4g})"
        )


def bits_per_weight(dtype: str, shape: tuple, *, block_size: int = 64, double_quant: bool = False,
                    axis: Optional[int] = 0, bits: int = 4) -> float:
    """Storage bits per element (scales included) that ``quantize(x, dtype=dtype, ...)`` uses for
    an ``x`` of ``shape``, without quantizing anything.

    Example:
        >>> lowbit.formats.bits_per_weight("nf4", (4096, 4096))
        4.5
    """
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        return float("nan")
    if dtype in ("int8", "uint8", "int4", "uint4"):
        raise ValueError("dtype: affine integer formats depend on their granularity; use QTensor.nbytes")
    if dtype in ("fp16", "bf16"):
        return 16.0
    if dtype == "nf4":
        nb = -(-n // block_size)
        scale_bytes = (nb + 4 * -(-nb // _NESTED_BLOCK) + 4) if double_quant else 4 * nb
        return 8.0 * (-(-n // 2) + scale_bytes) / n
    channels = 1 if axis is None or len(shape) == 0 else int(shape[axis])
    if dtype == "log2":
        if bits == 8:
            return 8.0 + 32.0 * channels / n
        last = shape[-1] if shape else 1
        return 8.0 * ((n // max(last, 1)) * -(-last // 2) + 4 * channels) / n
    per_byte = {"ternary": 4, "binary": 8}[dtype]
    return 8.0 * (-(-n // per_byte) + 4 * channels) / n


# -- quantize --------------------------------------------------------------------------------------


def quantize_format(
    x: Any,
    scale: Any = None,
    *,
    dtype: str,
    axis: Any = None,
    per_channel: bool = True,
    group_size: Any = None,
    block_size: Any = None,
    double_quant: bool = False,
    bits: int = 4,
    threshold: float = 0.7,
    rounding: str = "nearest",
    out: Any = None,
) -> FormatQTensor:
    """Quantizes ``x`` to one of :data:`FORMATS` (called by :func:`lowbit.quantize`).

    Args:
        x: float32/float16/float64 array or CPU torch tensor (float64 is rounded to float32 first).
        scale: nf4/fp16/bf16: must be None (nf4 computes a blockwise absmax). log2: the clipping
            value a (scalar or per channel), a :class:`~lowbit.Observer` (a = max(|min|, |max|) of
            its range) or None (absmax per channel). ternary/binary: the magnitude a (scalar or per
            channel) or None (ternary: mean |x| over |x| > delta; binary: mean |x|, per channel).
        dtype: one of :data:`FORMATS`.
        axis: channel axis of log2/ternary/binary scales (None: 0 for 2-D and higher inputs).
        per_channel: log2/ternary/binary: one scale per channel along ``axis`` (default) or, when
            False (or for 0-D/1-D inputs without ``axis``), one per tensor.
        group_size: nf4 block length over x flattened (even, default 64 as in QLoRA); the same
            keyword as the groups of int4/uint4. Not used by the other formats.
        block_size: deprecated name of ``group_size`` (DeprecationWarning).
        double_quant: nf4 only: quantize the block scales too (QLoRA double quantization).
        bits: log2 code width, 4 or 8 (sign bit + 3 or 7 bits of power-of-two exponent).
        threshold: ternary: delta = threshold * mean |x| per channel (0.7 as in TWN).

    Contracts: nf4 encodes like bitsandbytes (see ``lowbit.reference.nf4_quantize``), NaN -> the
    level 0.0, ±inf raises. fp16/bf16 round to nearest even; NaN and ±inf are preserved. log2
    picks the nearest level ``a * 2**(m - L)`` (L = 2**(bits-1) - 1, m = 1..L) or 0, ties to the
    smaller magnitude, values beyond a clip to a, NaN -> 0. ternary: +a where x > delta, -a where
    x < -delta, else 0 (NaN -> 0). binary: -a where x < 0, else +a (NaN -> +a).

    Example:
        >>> q = lowbit.quantize(np.float32([0.5, -1.0, 0.25, 0.0]), dtype="nf4")
        >>> q.int_repr(), q.nbytes
        (array([12,  0, 10,  7], dtype=uint8), 6)
        >>> q.dequantize()
        array([ 0.44070983, -1.        ,  0.2461123 ,  0.        ], dtype=float32)
        >>> lowbit.quantize(np.float32([1 / 3, np.inf]), dtype="bf16").dequantize()
        array([0.33398438,        inf], dtype=float32)
        >>> lowbit.quantize(np.float32([[0.3, -0.1, 0.05, 0.0]]), dtype="ternary").dequantize()
        array([[ 0.2, -0.2,  0. ,  0. ]], dtype=float32)
    """
    if block_size is not None:
        if group_size is not None:
            raise TypeError("group_size and block_size: pass only group_size (block_size is its deprecated name)")
        warnings.warn("block_size is deprecated; use group_size= (the nf4 block length; one keyword for int4 groups "
                      "and nf4 blocks)", DeprecationWarning, stacklevel=_caller_stacklevel())
        group_size = block_size
    if group_size is not None and dtype != "nf4":
        raise ValueError(f"group_size: not used by dtype {dtype!r} (only by nf4 and the integer dtypes)")
    if rounding != "nearest":
        raise ValueError(f"rounding: dtype {dtype!r} supports only 'nearest'")
    if out is not None:
        raise ValueError(f"out: not supported for dtype {dtype!r}")
    if double_quant and dtype != "nf4":
        raise ValueError("double_quant: only for dtype 'nf4'")
    a = as_float_array(x, "x")
    shape = tuple(a.shape)
    if dtype in ("nf4", "fp16", "bf16"):
        if scale is not None:
            raise ValueError(f"scale: dtype {dtype!r} computes its own scales; pass scale=None")
        if axis is not None:
            raise ValueError(f"axis: not used by dtype {dtype!r}")
    if dtype == "fp16":
        data = a.copy() if a.dtype == np.float16 else _core.convert_f32_f16(a).view(np.float16)
        return FormatQTensor(data, 1.0, 0, "fp16", shape, code_bits=16)
    a32 = a.astype(np.float32) if a.dtype != np.float32 else a
    if dtype == "bf16":
        return FormatQTensor(_core.convert_f32_bf16(a32), 1.0, 0, "bf16", shape, code_bits=16)
    if dtype == "nf4":
        return _quantize_nf4(a32, _as_block(64 if group_size is None else group_size), bool(double_quant))
    ax = _channel_axis(axis, len(shape)) if per_channel else None
    if dtype == "log2":
        if bits not in (4, 8):
            raise ValueError(f"bits: log2 codes have 4 or 8 bits, got {bits!r}")
        return _quantize_log2(a32, scale, ax, bits)
    if dtype == "ternary":
        return _quantize_ternary(a32, scale, ax, float(threshold))
    if dtype == "binary":
        return _quantize_binary(a32, scale, ax)
    raise ValueError(f"dtype: expected one of {', '.join(map(repr, FORMATS))}, got {dtype!r}")


def _as_block(group_size: Any) -> int:
    if isinstance(group_size, (bool, np.bool_)) or not isinstance(group_size, (int, np.integer)):
        raise TypeError(f"group_size: expected an int, got {type(group_size).__name__}")
    if group_size < 2 or group_size % 2:
        raise ValueError(f"group_size: the nf4 block length must be an even integer >= 2, got {group_size}")
    if group_size > 2**48:  # one block covers any array that fits in memory; larger overflows int64 sizes
        raise ValueError(f"group_size: the nf4 block length must be at most 2**48, got {group_size}")
    return int(group_size)


def _caller_stacklevel() -> int:
    """stacklevel that attributes a warning to the first caller outside lowbit.quantize/formats."""
    level, f = 2, sys._getframe(2)
    while f is not None and f.f_globals.get("__name__") in ("lowbit.core.formats", "lowbit.core.quantize"):
        level, f = level + 1, f.f_back
    return level


def _channel_axis(axis: Any, ndim: int) -> Optional[int]:
    if axis is None:
        return 0 if ndim >= 2 else None
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis: expected an int, got {type(axis).__name__}")
    if ndim == 0 or not -ndim <= axis < ndim:
        raise ValueError(f"axis: {axis} is out of range for an array of {ndim} dimensions")
    return int(axis) % ndim


def _bshape(shape: tuple, axis: Optional[int]) -> tuple:
    """Shape that broadcasts per-channel values along ``axis`` against ``shape``."""
    if axis is None:
        return ()
    return tuple(shape[axis] if i == axis else 1 for i in range(len(shape)))


def _reduce_axes(ndim: int, axis: Optional[int]) -> tuple:
    return tuple(i for i in range(ndim) if i != axis)


def _check_scale(scale: Any, shape: tuple, axis: Optional[int], name: str = "scale") -> np.ndarray:
    s = as_numpy(scale, name)
    if s.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected real numbers, got dtype {s.dtype}")
    s = s.astype(np.float32)
    want = () if axis is None else (shape[axis],)
    if s.shape != want and not (axis is not None and s.size == 1):
        raise ValueError(f"{name}: expected shape {want} (per {'tensor' if axis is None else 'channel'}), got {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"{name}: every scale must be finite and > 0")
    return np.broadcast_to(s, want).copy() if axis is not None else s.reshape(())


def _as_param(s: np.ndarray, axis: Optional[int]) -> Any:
    return float(s) if axis is None else np.ascontiguousarray(s, np.float32)


def _absmax(a: np.ndarray, axis: Optional[int]) -> np.ndarray:
    if a.size == 0:
        return np.ones(() if axis is None else (a.shape[axis],), np.float32)
    with np.errstate(invalid="ignore"):
        m = np.max(np.where(np.isnan(a), np.float32(0), np.abs(a)), axis=_reduce_axes(a.ndim, axis))
    return np.asarray(m, np.float32)


def _finite_positive(m: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(m)):
        raise ValueError(f"x: contains ±inf, so the {what} is infinite; clip or pass scale=")
    return np.where(m > 0, m, np.float32(1)).astype(np.float32)  # an all-zero channel keeps codes 0


# -- nf4 ---------------------------------------------------------------------------------------


def _quantize_nf4(a: np.ndarray, block: int, double_quant: bool) -> FormatQTensor:
    q, absmax = _core.quantize_nf4(a, block)
    if not np.all(np.isfinite(absmax)):
        raise ValueError("x: nf4 needs finite values (a block absmax is infinite)")
    nested = None
    scale = absmax
    if double_quant and absmax.size:
        from .quantize import quantize as _affine

        offset = np.float32(absmax.mean(dtype=np.float64))
        v = (absmax - offset).astype(np.float32)
        groups = -(-v.size // _NESTED_BLOCK)
        pad = np.zeros(groups * _NESTED_BLOCK, np.float32)
        pad[: v.size] = np.abs(v)
        s2 = (pad.reshape(groups, _NESTED_BLOCK).max(axis=1) / np.float32(127)).astype(np.float32)
        s2 = np.maximum(s2, np.float32(np.finfo(np.float32).tiny * 2**24))
        codes = _affine(v, s2, 0, dtype="int8", group_size=_NESTED_BLOCK).data
        nested = NestedScales(codes, s2, float(offset))
        scale = nested.decode()
    return FormatQTensor(q, scale, 0, "nf4", tuple(a.shape), block_size=block, nested=nested, code_bits=4)


# -- log2 --------------------------------------------------------------------------------------


def _observer_clip(obs: Any) -> np.ndarray:
    lo, hi = obs.qparams_range()
    return np.maximum(np.abs(np.asarray(lo, np.float32)), np.abs(np.asarray(hi, np.float32)))


def _quantize_log2(a: np.ndarray, scale: Any, axis: Optional[int], bits: int) -> FormatQTensor:
    if scale is None:
        s = _finite_positive(_absmax(a, axis), "absmax")
    else:
        if hasattr(scale, "qparams_range"):
            scale = _finite_positive(_observer_clip(scale), "observer range")
        s = _check_scale(scale, a.shape, axis)
    L = 2 ** (bits - 1) - 1
    with np.errstate(over="ignore", divide="ignore"):  # a subnormal a: 1/a = inf, |x|/a clips to 1
        inv = (np.float32(1) / s).astype(np.float32).reshape(_bshape(a.shape, axis))
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.abs(a) * inv
        r = np.where(np.isnan(r), np.float32(0), np.minimum(r, np.float32(1)))
        f, k = np.frexp(r)  # r = f * 2**k, f in [0.5, 1): levels 2**(k-1) and 2**k bracket r
        e = np.where(f > np.float32(0.75), k, k - 1)  # nearest in value, ties to the smaller
        m = e.astype(np.int64) + L
        smallest_half = np.float32(2.0 ** (-L))  # half of the smallest level 2**(1-L)
        m = np.where(m >= 1, m, np.where(r > smallest_half, 1, 0))
    m = np.where(r == 0, 0, np.minimum(m, L))
    code = (m | np.where(np.signbit(a) & (m > 0), 1 << (bits - 1), 0)).astype(np.uint8)
    if bits == 4:
        code = _pack_last(code)
    return FormatQTensor(code, _as_param(s, axis), 0, "log2", tuple(a.shape), axis=axis, code_bits=bits)


def _log2_signed(code: np.ndarray, bits: int) -> np.ndarray:
    c = code.astype(np.int16)
    sign_bit = 1 << (bits - 1)
    return np.where(c & sign_bit, -(c & (sign_bit - 1)), c).astype(np.int16)


def _pack_last(v: np.ndarray) -> np.ndarray:
    if v.ndim == 0:
        return (v & 15).astype(np.uint8)
    if v.shape[-1] % 2:
        v = np.concatenate([v, np.zeros(v.shape[:-1] + (1,), v.dtype)], axis=-1)
    return ((v[..., 0::2] & 15) | (v[..., 1::2] << 4)).astype(np.uint8)


def _unpack_last(d: np.ndarray, shape: tuple) -> np.ndarray:
    if d.ndim == 0:
        return d & 15
    u = np.stack([d & 15, d >> 4], axis=-1).reshape(d.shape[:-1] + (2 * d.shape[-1],))
    return np.ascontiguousarray(u[..., : shape[-1]])


# -- ternary / binary --------------------------------------------------------------------------


def _quantize_ternary(a: np.ndarray, scale: Any, axis: Optional[int], threshold: float) -> FormatQTensor:
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold: must be finite and >= 0, got {threshold}")
    red = _reduce_axes(a.ndim, axis)
    bs = _bshape(a.shape, axis)
    if not np.all(np.isfinite(a[~np.isnan(a)])):
        raise ValueError("x: ternary needs finite values (mean |x| would be infinite)")
    absx = np.where(np.isnan(a), np.float32(0), np.abs(a))
    cnt = np.sum(~np.isnan(a), axis=red) if a.size else np.zeros(bs, np.int64)
    mean = np.sum(absx, axis=red, dtype=np.float64) / np.maximum(cnt, 1)
    delta = (np.float32(threshold) * np.asarray(mean, np.float32)).astype(np.float32)
    with np.errstate(invalid="ignore"):
        code = np.where(a > delta.reshape(bs), 1, np.where(a < -delta.reshape(bs), -1, 0)).astype(np.int8)
    if scale is None:
        big = code != 0
        k = np.sum(big, axis=red)
        s = np.sum(np.where(big, absx, 0), axis=red, dtype=np.float64) / np.maximum(k, 1)
        s = np.asarray(np.where(k > 0, s, 1.0), np.float32)
    else:
        s = _check_scale(scale, a.shape, axis)
    flat = np.where(code < 0, 2, code).astype(np.uint8).reshape(-1)
    pad = np.zeros(-(-flat.size // 4) * 4, np.uint8)
    pad[: flat.size] = flat
    p = pad.reshape(-1, 4)
    data = (p[:, 0] | (p[:, 1] << 2) | (p[:, 2] << 4) | (p[:, 3] << 6)).astype(np.uint8)
    return FormatQTensor(data, _as_param(s.reshape(() if axis is None else (-1,)), axis), 0, "ternary",
                         tuple(a.shape), axis=axis, code_bits=2)


def _quantize_binary(a: np.ndarray, scale: Any, axis: Optional[int]) -> FormatQTensor:
    red = _reduce_axes(a.ndim, axis)
    if scale is None:
        if not np.all(np.isfinite(a[~np.isnan(a)])):
            raise ValueError("x: binary needs finite values (mean |x| would be infinite)")
        absx = np.where(np.isnan(a), np.float32(0), np.abs(a))
        cnt = np.sum(~np.isnan(a), axis=red) if a.size else 0
        s = np.sum(absx, axis=red, dtype=np.float64) / np.maximum(cnt, 1)
        s = np.asarray(np.where(s > 0, s, 1.0), np.float32)
    else:
        s = _check_scale(scale, a.shape, axis)
    with np.errstate(invalid="ignore"):
        neg = (a < 0).reshape(-1)
    data = np.packbits(neg, bitorder="little")
    return FormatQTensor(data, _as_param(s.reshape(() if axis is None else (-1,)), axis), 0, "binary",
                         tuple(a.shape), axis=axis, code_bits=1)


# -- dequantize --------------------------------------------------------------------------------


def _dequantize(q: FormatQTensor) -> np.ndarray:
    if q.dtype == "nf4":
        return _core.dequantize_nf4(q.data, np.ascontiguousarray(q.scale, np.float32), list(q.shape), q.block_size)
    if q.dtype == "fp16":
        return _core.convert_f16_f32(q.data)
    if q.dtype == "bf16":
        return _core.convert_bf16_f32(q.data)
    s = np.asarray(q.scale, np.float32).reshape(_bshape(q.shape, q.axis))
    c = q.int_repr()
    if q.dtype == "log2":
        L = 2 ** (q.code_bits - 1) - 1
        m = np.abs(c).astype(np.int32)
        mag = np.where(m > 0, np.ldexp(np.float32(1), m - L).astype(np.float32), np.float32(0))
        return (np.sign(c).astype(np.float32) * mag * s).astype(np.float32)
    return (c.astype(np.float32) * s).astype(np.float32)
