"""Affine quantization of arrays: QTensor, quantize, dequantize, fake_quantize, choose_qparams.

Public API over the C++ quantize ops. Numeric contract (shared/DESIGN.md):
``q = clamp(round_half_even(x * inv_scale) + zero_point, qmin, qmax)``, bit-identical to
``torch.fake_quantize_per_tensor_affine`` / ``fake_quantize_per_channel_affine``; NaN -> zero point,
+inf -> qmax, -inf -> qmin. ``lowbit.reference`` is the executable NumPy spec.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from .. import _core
from ._array import as_float_array, as_numpy, is_torch_tensor

__all__ = ["QTensor", "quantize", "dequantize", "fake_quantize", "choose_qparams", "qrange", "DTYPES"]

DTYPES = ("int8", "uint8", "int4", "uint4")
_FLOAT32_EPS = np.float32(np.finfo(np.float32).eps)
_SCALARS = (float, int, np.float32, np.float64)
_MAX_FLOAT32 = float(np.finfo(np.float32).max)
with np.errstate(over="ignore", divide="ignore"):
    # The smallest float32 scale whose float32 reciprocal is finite.
    _MIN_SCALE = float(np.nextafter(np.float32(1) / np.finfo(np.float32).max, np.float32(0)))
    while not np.isfinite(np.float32(1) / np.float32(_MIN_SCALE)):
        _MIN_SCALE = float(np.nextafter(np.float32(_MIN_SCALE), np.float32(1)))
_INTS = (int, np.int32, np.int64)
_QRANGES = {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7), "uint4": (0, 15)}


def _check_dtype(dtype: Any) -> str:
    if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and issubclass(dtype, np.generic)):
        dtype = np.dtype(dtype).name
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(map(repr, DTYPES))}, got {dtype!r}")
    return dtype


def _is_weight_scheme(dtype: Any) -> bool:
    """True for a :class:`lowbit.schemes.WeightScheme` or the name of a registered scheme that is
    not one of the tensor formats (those keep their QTensor results)."""
    from .schemes import WEIGHT_SCHEMES, WeightScheme

    if isinstance(dtype, WeightScheme):
        return True
    return isinstance(dtype, str) and dtype in WEIGHT_SCHEMES and dtype not in DTYPES and not _is_format(dtype)


def _is_format(dtype: Any) -> bool:
    """True for the formats of lowbit.formats (nf4, fp16, bf16, log2, ternary, binary)."""
    return isinstance(dtype, str) and dtype in ("nf4", "fp16", "bf16", "log2", "ternary", "binary")


def qrange(dtype: str = "int8", reduce_range: bool = False) -> tuple[int, int]:
    """The integer range ``(qmin, qmax)`` of a quantized dtype.

    Args:
        dtype: "int8" [-128, 127], "uint8" [0, 255], "int4" [-8, 7] or "uint4" [0, 15].
        reduce_range: drop one bit (as PyTorch's observers do for x86 overflow safety).

    Example:
        >>> lowbit.qrange("int4")
        (-8, 7)
    """
    dtype = _check_dtype(dtype)
    bits = 4 if dtype.endswith("4") else 8
    if reduce_range:
        bits -= 1
    if dtype.startswith("u"):
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


@dataclass(frozen=True, eq=False)
class QTensor:
    """A quantized array: integer data plus the affine parameters that map it back to floats.

    Attributes:
        data: the stored integers; int8 for "int8"/"int4", uint8 for "uint8"/"uint4". 4-bit values
            are packed two per byte along the last axis, low nibble first (shape ``shape[:-1] +
            (ceil(shape[-1] / 2),)``; the pad nibble of an odd last axis is 0).
        scale: float (per tensor) or float32 array (per channel: ``(shape[axis],)``; per group:
            ``shape[:-1] + (ceil(shape[-1] / group_size),)``).
        zero_point: int or int32 array shaped like ``scale``.
        dtype: "int8", "uint8", "int4" or "uint4".
        shape: the logical shape.
        axis: the channel axis for per-channel parameters, else None.
        group_size: the group length along the last axis for per-group parameters, else None.
    """

    data: np.ndarray
    scale: Union[float, np.ndarray]
    zero_point: Union[int, np.ndarray]
    dtype: str
    shape: tuple
    axis: Optional[int] = None
    group_size: Optional[int] = None

    @property
    def bits(self) -> int:
        """Bits per stored value (8 or 4)."""
        return 4 if self.dtype.endswith("4") else 8

    @property
    def qmin(self) -> int:
        return qrange(self.dtype)[0]

    @property
    def qmax(self) -> int:
        return qrange(self.dtype)[1]

    @property
    def granularity(self) -> str:
        """"per_tensor", "per_channel" or "per_group"."""
        if self.group_size is not None:
            return "per_group"
        return "per_tensor" if self.axis is None else "per_channel"

    @property
    def nbytes(self) -> int:
        """Exact storage: packed data plus the float32 scales and int32 zero points."""
        return int(self.data.nbytes + 4 * np.size(self.scale) + 4 * np.size(self.zero_point))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=object))

    def dequantize(self, out: Optional[np.ndarray] = None) -> np.ndarray:
        """float32 array ``(q - zero_point) * scale`` of the logical shape (into ``out`` if given)."""
        return dequantize(self, out=out)

    def _check(self) -> None:
        """ValueError/TypeError for a hand-built QTensor the kernels cannot read: a dtype that is not
        one of :data:`DTYPES` (the formats are FormatQTensors), a malformed shape or one whose size
        overflows int64, data that is not an array of the stored dtype and shape."""
        if not isinstance(self.dtype, str) or self.dtype not in DTYPES:
            hint = " (build format tensors with lowbit.quantize(x, dtype=...))" if _is_format(self.dtype) else ""
            raise ValueError(f"dtype: a QTensor holds one of {', '.join(map(repr, DTYPES))}, got {self.dtype!r}{hint}")
        _check_shape(self.shape, "shape")
        if not isinstance(self.data, np.ndarray):
            raise TypeError(f"data: expected a NumPy array, got {type(self.data).__name__}")
        want = np.int8 if self.dtype in ("int8", "int4") else np.uint8
        if self.data.dtype != want:
            raise TypeError(f"data: expected {np.dtype(want).name} for dtype {self.dtype!r}, got {self.data.dtype}")
        stored = tuple(self.shape[:-1]) + ((self.shape[-1] + 1) // 2 if self.bits == 4 else self.shape[-1],) \
            if self.shape else ()
        if self.data.shape != stored:
            raise ValueError(f"data: expected the stored shape {stored} for logical shape {tuple(self.shape)}"
                             f"{f' ({_PACKED4})' if self.bits == 4 else ''}, got {self.data.shape}")

    def int_repr(self) -> np.ndarray:
        """The integer values unpacked to int8/uint8 with the logical shape (a copy for 4-bit).

        Raises:
            ValueError, TypeError: a hand-built QTensor whose fields do not fit together.
        """
        self._check()
        if self.bits == 8:
            return self.data
        d = self.data.view(np.uint8)
        lo = d & 0x0F
        hi = d >> 4
        out = np.stack([lo, hi], axis=-1).reshape(d.shape[:-1] + (2 * d.shape[-1],)) if d.ndim else lo
        if d.ndim:
            out = out[..., : self.shape[-1]]
        if self.dtype == "int4":
            out = ((out.astype(np.int8) ^ 8) - 8).astype(np.int8)
        return np.array(out, order="C").reshape(self.shape)  # ascontiguousarray would make a 0-d array 1-d

    def __repr__(self) -> str:
        if self.granularity == "per_tensor":
            params = f"scale={float(self.scale):.6g}, zero_point={int(self.zero_point)}"
        else:
            s = np.asarray(self.scale)
            params = f"scale[{'x'.join(map(str, s.shape))}] in [{s.min():.4g}, {s.max():.4g}]" if s.size else "scale[]"
            params += f", axis={self.axis}" if self.axis is not None else f", group_size={self.group_size}"
        return f"QTensor(shape={self.shape}, dtype={self.dtype}, {params}, nbytes={self.nbytes})"


_MAX_SIZE = 2**63 - 1


def _check_shape(shape: Any, name: str) -> None:
    """A tuple of ints >= 0 whose product fits in int64 (the kernels' size type)."""
    if not isinstance(shape, tuple) or any(isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer))
                                           for d in shape):
        raise TypeError(f"{name}: expected a tuple of ints, got {shape!r}")
    size = 1
    for d in shape:
        if d < 0:
            raise ValueError(f"{name}: dimensions must be >= 0, got {shape}")
        size *= int(d)
    if size > _MAX_SIZE:
        raise ValueError(f"{name}: {shape} has more than 2**63 - 1 elements")


def _as_int(v: Any, name: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    return int(v)


_PACKED4 = "4-bit data is packed two per byte along the last axis, low nibble first"


def _reject_quantized(x: Any, name: str) -> None:
    """TypeError for inputs that are already quantized (QTensor, PackedWeight, ...), not float data."""
    if isinstance(x, (np.ndarray, np.generic, float, int, list, tuple)) or is_torch_tensor(x):
        return
    if callable(getattr(x, "dequantize", None)):
        raise TypeError(
            f"{name}: expected a float array or CPU tensor, got {type(x).__name__}, which is already quantized; "
            f"use {name}.dequantize() to get float32 values back (and quantize those if you need another format)"
        )
    raise TypeError(f"{name}: expected a float array or CPU tensor, got {type(x).__name__}")


def _pack4(v: np.ndarray, dtype: str) -> np.ndarray:
    """One 4-bit value per element -> two per byte along the last axis, low nibble first."""
    u = np.asarray(v.astype(np.uint8) & np.uint8(0x0F))  # 0-d: an array, not a NumPy scalar
    if u.ndim == 0:
        packed = u
    else:
        if u.shape[-1] % 2:
            u = np.concatenate([u, np.zeros(u.shape[:-1] + (1,), np.uint8)], axis=-1)
        packed = np.ascontiguousarray(u[..., 0::2] | (u[..., 1::2] << np.uint8(4)))
    return packed.view(np.int8) if dtype == "int4" else packed


def _packed_4bit_hint(e: ValueError, dtype: str, out: Any) -> ValueError:
    """``e``, with the 4-bit layout spelled out when a 4-bit ``out`` has the wrong shape."""
    if dtype.endswith("4") and out is not None and "shape" in str(e):
        return ValueError(f"{e} ({_PACKED4}: out.shape must be x.shape[:-1] + (ceil(x.shape[-1] / 2),))")
    return e


def _from_ints(q: Any, scale: Any, zero_point: Any, dtype: Any, axis: Any, group_size: Any) -> QTensor:
    """A QTensor for integer data the caller already has (one value per element)."""
    _reject_quantized(q, "q")
    a = as_numpy(q, "q")
    if a.dtype.kind not in "iu":
        raise TypeError(
            f"q: expected integer data (int8, uint8, int32, ...; one value per element), got dtype {a.dtype}; "
            "to quantize floats use lowbit.quantize"
        )
    if dtype is None:
        if a.dtype not in (np.int8, np.uint8):
            raise ValueError(f"dtype: required for {a.dtype} data (one of {', '.join(map(repr, DTYPES))})")
        dtype = a.dtype.name
    dtype = _check_dtype(dtype)
    qmin, qmax = _QRANGES[dtype]
    four = dtype.endswith("4")
    if a.size and a.dtype.name != dtype:  # int8/uint8 data of the same dtype cannot be out of range
        lo, hi = int(a.min()), int(a.max())
        if lo < qmin or hi > qmax:
            msg = f"q: values must lie in [{qmin}, {qmax}] for dtype {dtype!r}, got [{lo}, {hi}]"
            if four:
                msg += f"; {_PACKED4}: pass one value per element, or a lowbit.QTensor for bytes already packed"
            raise ValueError(msg)
    try:
        _, _, _, _, _, sc, zp, axis, group_size = _params(a.shape, scale, zero_point, dtype, axis, group_size)
    except ValueError as e:
        if four and "shape" in str(e):
            raise ValueError(f"{e} ({_PACKED4}: pass one value per element, the logical shape)") from None
        raise
    data = _pack4(a, dtype) if four else np.require(a, np.int8 if dtype == "int8" else np.uint8, "C")  # keeps 0-d
    return QTensor(data, sc, zp, dtype, tuple(a.shape), axis, group_size)


def _params(
    shape: tuple, scale: Any, zero_point: Any, dtype: str, axis: Any, group_size: Any
) -> tuple[str, int, int, np.ndarray, np.ndarray, Any, Any, Optional[int], Optional[int]]:
    """Validates the granularity and returns (mode, row_div, gs, scale1d, zp1d, scale, zp, axis, gs)."""
    qmin, qmax = qrange(dtype)
    if axis is None and group_size is None and type(scale) in _SCALARS and type(zero_point) in _INTS:
        # Fast path for the common per-tensor call: scalar checks only, no temporary arrays.
        sc = float(np.float32(scale))
        if _MIN_SCALE <= sc <= _MAX_FLOAT32 and qmin <= zero_point <= qmax:
            zp = int(zero_point)
            return "tensor", 1, 0, sc, zp, sc, zp, None, None
    ndim = len(shape)
    if axis is not None and group_size is not None:
        raise ValueError("axis and group_size: choose per-channel (axis) or per-group (group_size), not both")
    s = as_numpy(scale, "scale")
    z = as_numpy(zero_point, "zero_point")
    if s.dtype.kind not in "fiu":
        raise TypeError(f"scale: expected real numbers, got dtype {s.dtype}")
    if z.dtype.kind == "f":
        if not np.all(np.isfinite(z)) or not np.all(z == np.round(z)):
            raise ValueError("zero_point: expected integers")
    elif z.dtype.kind not in "iu":
        raise TypeError(f"zero_point: expected integers, got dtype {z.dtype}")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        s32 = s.astype(np.float32)
        inv = np.float32(1) / s32
    if np.any(~np.isfinite(s32)) or np.any(s32 <= 0):
        raise ValueError("scale: every scale must be finite and > 0")
    if np.any(~np.isfinite(inv)):
        raise ValueError("scale: a scale is so small that 1/scale overflows float32")
    if np.any((z < qmin) | (z > qmax)):
        raise ValueError(f"zero_point: must lie in [{qmin}, {qmax}] for dtype {dtype}")

    if axis is None and group_size is None:
        if s32.size != 1 or z.size != 1:
            raise ValueError(
                "scale: a per-tensor scale must be a scalar; pass axis= for per-channel or group_size= for per-group"
            )
        sc, zp = float(s32.reshape(())), int(z.reshape(()))
        return "tensor", 1, 0, s32.reshape(1), np.asarray([zp], np.int32), sc, zp, None, None

    if axis is not None:
        axis = _as_int(axis, "axis")
        if not -ndim <= axis < ndim or ndim == 0:
            raise ValueError(f"axis: {axis} is out of range for an array of {ndim} dimensions")
        axis %= ndim
        c = shape[axis]
        if s32.shape != (c,):
            raise ValueError(f"scale: per-channel scale must have shape ({c},) for axis {axis}, got {s32.shape}")
        z = np.broadcast_to(z, (c,)) if z.size == 1 else z
        if z.shape != (c,):
            raise ValueError(f"zero_point: expected shape ({c},) like scale, got {z.shape}")
        z32 = np.ascontiguousarray(z, dtype=np.int32)
        s32 = np.ascontiguousarray(s32)
        if axis == ndim - 1:
            return "element", 1, 0, s32, z32, s32, z32, axis, None
        row_div = int(np.prod(shape[axis + 1 : -1], dtype=object))
        return "row", max(row_div, 1), 0, s32, z32, s32, z32, axis, None

    group_size = _as_int(group_size, "group_size")
    if group_size < 1:
        raise ValueError(f"group_size: must be >= 1, got {group_size}")
    if group_size > 2**48:
        raise ValueError(f"group_size: must be at most 2**48, got {group_size}")
    if ndim == 0:
        raise ValueError("group_size: per-group quantization needs at least one dimension")
    expected = tuple(shape[:-1]) + (-(-shape[-1] // group_size),)
    if s32.shape != expected:
        raise ValueError(
            f"scale: per-group scale must have shape {expected} (x.shape[:-1] + (ceil({shape[-1]} / {group_size}),)), "
            f"got {s32.shape}"
        )
    z = np.broadcast_to(z, expected) if z.size == 1 else z
    if z.shape != expected:
        raise ValueError(f"zero_point: expected shape {expected} like scale, got {z.shape}")
    z32 = np.ascontiguousarray(z, dtype=np.int32)
    s32 = np.ascontiguousarray(s32)
    return "group", 1, group_size, s32.reshape(-1), z32.reshape(-1), s32, z32, None, group_size


def _rounding(rounding: str, seed: Any) -> tuple[str, int]:
    if rounding not in ("nearest", "stochastic"):
        raise ValueError(f"rounding: expected 'nearest' or 'stochastic', got {rounding!r}")
    if seed is None:
        return rounding, int.from_bytes(os.urandom(8), "little") if rounding == "stochastic" else 0
    seed = _as_int(seed, "seed")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: must be in [0, 2**64), got {seed}")
    return rounding, seed


def _prepare(x: Any, scale: Any, zero_point: Any, dtype: Any, axis: Any, group_size: Any, rounding: str, seed: Any):
    """Validates the arguments shared by quantize and fake_quantize."""
    dtype = _check_dtype(dtype)
    a = as_float_array(x, "x")
    params = _params(a.shape, scale, zero_point, dtype, axis, group_size)
    rounding, seed = _rounding(rounding, seed)
    return a, dtype, params, rounding, seed


def quantize(
    x: Any,
    scale: Any = None,
    zero_point: Any = 0,
    *,
    dtype: str = "int8",
    axis: Optional[int] = None,
    group_size: Optional[int] = None,
    rounding: str = "nearest",
    seed: Optional[int] = None,
    out: Optional[np.ndarray] = None,
    **format_options: Any,
) -> QTensor:
    """Quantizes ``x`` to integers: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    ``1/scale`` and ``x * (1/scale)`` are taken in float32, ties round half to even, and the zero
    point is added after rounding: bit-identical to ``torch.fake_quantize_per_tensor_affine`` /
    ``fake_quantize_per_channel_affine``. PyTorch's x86 ``quantize_per_tensor`` /
    ``quantize_per_channel`` round ``x * (1/scale) + zero_point`` in one fused multiply-add instead,
    so with an odd zero point each exact .5 tie lands one step away (and near-ties can, when the
    product is inexact); everything else is equal. NaN maps to the zero point, +inf to qmax, -inf
    to qmin. Multithreaded, GIL released.

    Args:
        x: float32, float16 or float64 (rounded to float32 first) array of any shape and strides,
            or a CPU torch tensor (zero-copy). Never modified.
        scale: a scalar (per tensor), shape ``(x.shape[axis],)`` (per channel) or
            ``x.shape[:-1] + (ceil(x.shape[-1] / group_size),)`` (per group). Finite, > 0.
        zero_point: integer(s) in the dtype's range, shaped like ``scale`` (or a scalar).
        dtype: "int8", "uint8", "int4" or "uint4" (4-bit is packed two per byte, low nibble first).
        axis: channel axis for per-channel parameters.
        group_size: consecutive elements of the last axis that share parameters (the last group
            may be shorter when it does not divide ``x.shape[-1]``).
        rounding: "nearest" (half to even) or "stochastic" (``floor(x / scale + u)``, unbiased).
        seed: seed of the counter-based generator for stochastic rounding; the same seed gives the
            same result whatever the thread count. None draws a fresh seed.
        out: optional preallocated C-contiguous array for the stored data (int8 for "int8"/"int4",
            uint8 for "uint8"/"uint4", shaped like ``QTensor.data``); it becomes the result's
            ``.data``. Reusing a buffer saves the page faults of a fresh large result.
        **format_options: options of the formats "nf4", "fp16", "bf16", "log2", "ternary" and
            "binary" (``double_quant``, ``bits``, ``threshold``; nf4's block length is ``group_size``,
            default 64, formerly ``block_size``), for which ``scale``
            may be omitted; see :func:`lowbit.formats.quantize_format`. They return a
            :class:`lowbit.FormatQTensor`. ``dtype`` may also be a weight scheme
            (:mod:`lowbit.schemes`, or the name of a registered one): ``x`` is then an (N, K)
            weight and the result is its packed weight, as :func:`lowbit.pack_weight` makes it.

    Returns:
        A :class:`QTensor`.

    Raises:
        TypeError: non-float ``x``, non-integer ``zero_point``/``axis``/``group_size``/``seed``.
        ValueError: bad shapes of ``scale``/``zero_point``, non-finite or non-positive scales,
            zero points out of range, unknown ``dtype``/``rounding``, ``group_size`` < 1 or
            > 2**48, an ``out`` that is read-only, misshapen or not C-contiguous (or not aligned).

    Example:
        >>> q = lowbit.quantize(np.array([-1.0, 0.0, 0.26, 2.0], np.float32), 0.5)
        >>> q.int_repr()
        array([-2,  0,  1,  4], dtype=int8)
        >>> q.dequantize()
        array([-1. ,  0. ,  0.5,  2. ], dtype=float32)
    """
    if (type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous and x.flags.aligned and axis is None and group_size is None
            and rounding == "nearest" and type(dtype) is str and dtype in _QRANGES and not format_options
            and type(scale) in _SCALARS and type(zero_point) in _INTS):
        # Fast path of the common per-tensor call (a few scalar checks; ~1 us instead of ~6 us).
        qmin, qmax = _QRANGES[dtype]
        sc = float(np.float32(scale))
        if _MIN_SCALE <= sc <= _MAX_FLOAT32 and qmin <= zero_point <= qmax:
            zp = int(zero_point)
            try:
                data = _core.quantize(x, dtype, "tensor", 1, 0, sc, zp, qmin, qmax, "nearest", 0, out)
            except ValueError as e:
                raise _packed_4bit_hint(e, dtype, out) from None
            return QTensor(data, sc, zp, dtype, x.shape, None, None)
    _reject_quantized(x, "x")
    if _is_weight_scheme(dtype):
        from .packed import pack_weight

        if scale is not None or zero_point != 0 or axis is not None or rounding != "nearest" or out is not None:
            raise ValueError("dtype: a weight scheme chooses its own parameters; pass only x (N, K) and dtype")
        return pack_weight(x, dtype=dtype, group_size=group_size, **format_options)
    if _is_format(dtype):
        from .formats import quantize_format

        return quantize_format(x, scale, dtype=dtype, axis=axis, group_size=group_size, rounding=rounding, out=out,
                               **format_options)
    if format_options:
        raise TypeError(f"quantize: unexpected keyword argument(s) {', '.join(format_options)} for dtype {dtype!r}")
    if scale is None:
        raise TypeError(f"scale: required for dtype {_check_dtype(dtype)!r} (see lowbit.choose_qparams)")
    a, dtype, (mode, row_div, gs, s1, z1, sc, zp, axis, group_size), rounding, seed = _prepare(
        x, scale, zero_point, dtype, axis, group_size, rounding, seed
    )
    qmin, qmax = qrange(dtype)
    try:
        data = _core.quantize(a, dtype, mode, row_div, gs, s1, z1, qmin, qmax, rounding, seed, out)
    except ValueError as e:
        raise _packed_4bit_hint(e, dtype, out) from None
    return QTensor(data, sc, zp, dtype, tuple(a.shape), axis, group_size)


def _layout(q: QTensor) -> tuple[str, int, int, Any, Any]:
    if q.axis is None and q.group_size is None:
        return "tensor", 1, 0, q.scale, q.zero_point
    s = np.ascontiguousarray(q.scale, dtype=np.float32).reshape(-1)
    z = np.ascontiguousarray(q.zero_point, dtype=np.int32).reshape(-1)
    if q.group_size is not None:
        return "group", 1, int(q.group_size), s, z
    if q.axis is None:
        return "tensor", 1, 0, s, z
    if q.axis == len(q.shape) - 1:
        return "element", 1, 0, s, z
    return "row", max(1, int(np.prod(q.shape[q.axis + 1 : -1], dtype=object))), 0, s, z


def dequantize(
    q: Any,
    scale: Any = None,
    zero_point: Any = 0,
    *,
    dtype: Optional[str] = None,
    axis: Optional[int] = None,
    group_size: Optional[int] = None,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Maps quantized integers back to float32: ``(q - zero_point) * scale``.

    ``q`` is a :class:`QTensor` (it carries its parameters), or integer data you already have
    (ONNX DequantizeLinear style): a NumPy int8/uint8/int32/... array or CPU torch integer tensor
    with one value per element, plus ``scale`` and ``zero_point`` per tensor, per channel
    (``axis``) or per group (``group_size`` along the last axis), shaped as for :func:`quantize`.
    Values must lie in the dtype's range; "int4"/"uint4" data is packed here (4-bit data is packed
    two per byte along the last axis, low nibble first: bytes that are already packed go in a
    QTensor, ``lowbit.QTensor(data, scale, zero_point, "int4", shape)``). Computed in float32; large
    outputs are written with non-temporal stores (they bypass the caches).

    Args:
        q: a :class:`QTensor`, or integer data (one value per element).
        scale: for integer data: a scalar, ``(q.shape[axis],)`` or
            ``q.shape[:-1] + (ceil(q.shape[-1] / group_size),)``, finite and > 0.
        zero_point: for integer data: integer(s) in the dtype's range, shaped like ``scale``.
        dtype: for integer data: "int8", "uint8", "int4" or "uint4"; default: int8/uint8 from the
            array's dtype (required for other integer dtypes).
        axis: for integer data: the channel axis of per-channel parameters.
        group_size: for integer data: the group length along the last axis.
        out: optional C-contiguous float32 array of the logical shape to write into (saves
            allocating and first-touching a new result, which costs as much as the work for large arrays).

    Raises:
        TypeError: ``q`` is neither a QTensor nor integer data, ``scale`` given with a QTensor, or
            ``out`` is not float32.
        ValueError: values outside the dtype's range, bad parameter shapes, or ``out`` has the
            wrong shape, is read-only or not C-contiguous; a hand-built QTensor whose fields do
            not fit together (a dtype outside :data:`DTYPES`, data not of the stored shape, a
            shape with more than 2**63 - 1 elements).

    Example:
        >>> lowbit.dequantize(lowbit.quantize(np.float32([0.3, -0.7]), 0.1, 2))
        array([ 0.3, -0.7], dtype=float32)
        >>> lowbit.dequantize(np.int8([-3, 0, 5]), 0.5, 1)
        array([-2. , -0.5,  2. ], dtype=float32)
        >>> lowbit.dequantize(np.int32([[7, -8], [1, 2]]), np.float32([0.1, 1.0]), dtype="int4", axis=0)
        array([[ 0.7, -0.8],
               [ 1. ,  2. ]], dtype=float32)
    """
    if isinstance(q, QTensor):
        if scale is not None or dtype is not None or axis is not None or group_size is not None:
            raise TypeError("scale/dtype/axis/group_size: a QTensor carries its own parameters; pass only q (and out)")
        if _is_format(q.dtype) and type(q).dequantize is not QTensor.dequantize:
            return q.dequantize(out=out)
        q._check()
        mode, row_div, gs, s, z = _layout(q)
        qmin, qmax = qrange(q.dtype)
        try:
            return _core.dequantize(
                np.require(q.data, requirements="C"), list(q.shape), q.dtype, mode, row_div, gs, s, z, qmin, qmax, out
            )
        except ValueError as e:
            if q.bits == 4 and "shape" in str(e):
                raise ValueError(
                    f"{e} ({_PACKED4}: QTensor.data.shape must be shape[:-1] + (ceil(shape[-1] / 2),); "
                    "for one value per element call lowbit.dequantize(values, scale, zero_point, dtype=...))"
                ) from None
            raise
    if scale is None:
        raise TypeError(
            f"q: expected a lowbit.QTensor, or integer data with scale= (and zero_point=), got {type(q).__name__}"
        )
    return dequantize(_from_ints(q, scale, zero_point, dtype, axis, group_size), out=out)


def fake_quantize(
    x: Any,
    scale: Any = None,
    zero_point: Any = 0,
    *,
    dtype: str = "int8",
    axis: Optional[int] = None,
    group_size: Optional[int] = None,
    rounding: str = "nearest",
    seed: Optional[int] = None,
    out: Optional[np.ndarray] = None,
    **format_options: Any,
) -> np.ndarray:
    """``dequantize(quantize(x, ...))`` in one fused pass, bit-identical to the two steps.

    Takes the same arguments as :func:`quantize` and returns a float32 array of ``x``'s shape,
    written into ``out`` when given (a float32 C-contiguous array of that shape that shares no
    memory with ``x``).

    Raises:
        TypeError, ValueError: as :func:`quantize`; ValueError when ``out`` overlaps ``x``.

    Example:
        >>> lowbit.fake_quantize(np.float32([0.26, 9.0]), 0.5, dtype="int4")
        array([0.5, 3.5], dtype=float32)
    """
    if _is_format(dtype):
        q = quantize(x, scale, dtype=dtype, axis=axis, group_size=group_size, rounding=rounding, **format_options)
        return q.dequantize(out=out)
    if format_options or scale is None:
        return quantize(x, scale, dtype=dtype, **format_options)  # raises the TypeError
    a, dtype, (mode, row_div, gs, s1, z1, *_), rounding, seed = _prepare(
        x, scale, zero_point, dtype, axis, group_size, rounding, seed
    )
    qmin, qmax = qrange(dtype)
    if out is not None and isinstance(out, np.ndarray) and out is not a and np.may_share_memory(out, a):
        raise ValueError("out: must not overlap x (the kernels do not run in place)")
    return _core.fake_quantize(a, dtype, mode, row_div, gs, s1, z1, qmin, qmax, rounding, seed, out)


def choose_qparams(
    min_val: Any, max_val: Any, *, dtype: str = "int8", symmetric: bool = False, reduce_range: bool = False
) -> tuple[Any, Any]:
    """Scale and zero point covering ``[min_val, max_val]``, with PyTorch's observer formula.

    The range is widened to include 0; the scale never drops below float32 eps. Affine:
    ``scale = (max - min) / (qmax - qmin)``, ``zero_point = clamp(qmin - round(min / scale))``.
    Symmetric: ``scale = max(|min|, |max|) / ((qmax - qmin) / 2)``, zero point 0 for signed dtypes
    and the middle of the range for unsigned ones (128 for uint8, 8 for uint4). All in float32.

    Args:
        min_val, max_val: scalars (per tensor) or arrays (per channel), ``min_val <= max_val``.
        dtype: target dtype. symmetric: symmetric range. reduce_range: one bit less of range.

    Returns:
        ``(scale, zero_point)``: (float, int) for scalar input, (float32 array, int32 array) else.

    Example:
        >>> lowbit.choose_qparams(-1.0, 3.0, dtype="uint8")
        (0.01568627543747425, 64)
    """
    dtype = _check_dtype(dtype)
    lo = as_numpy(min_val, "min_val")
    hi = as_numpy(max_val, "max_val")
    if lo.dtype.kind not in "fiu" or hi.dtype.kind not in "fiu":
        raise TypeError("min_val/max_val: expected real numbers")
    lo = lo.astype(np.float32)
    hi = hi.astype(np.float32)
    if lo.shape != hi.shape:
        raise ValueError(f"min_val/max_val: shapes differ: {lo.shape} vs {hi.shape}")
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
        raise ValueError("min_val/max_val: NaN range")
    if np.any(lo > hi):
        raise ValueError("min_val/max_val: min_val must be <= max_val")
    if symmetric and reduce_range and dtype in ("uint8", "uint4"):
        raise ValueError("reduce_range: not supported with symmetric unsigned ranges (as in PyTorch)")
    qmin, qmax = qrange(dtype, reduce_range)
    min_neg = np.minimum(lo, np.float32(0))
    max_pos = np.maximum(hi, np.float32(0))
    with np.errstate(over="ignore", invalid="ignore"):
        if symmetric:
            max_pos = np.maximum(-min_neg, max_pos)
            scale = max_pos / np.float32((qmax - qmin) / 2)
            scale = np.maximum(scale, _FLOAT32_EPS)
            mid = 0 if dtype in ("int8", "int4") else (qrange(dtype)[1] + 1) // 2
            zp = np.full(scale.shape, mid, np.int32)
        else:
            scale = (max_pos - min_neg) / np.float32(qmax - qmin)
            scale = np.maximum(scale, _FLOAT32_EPS)
            zp = np.float32(qmin) - np.rint(min_neg / scale)
            zp = np.clip(zp, qmin, qmax).astype(np.int32)
    if not np.all(np.isfinite(scale)):
        raise ValueError("min_val/max_val: the range is infinite; no finite scale covers it")
    scale = scale.astype(np.float32)
    if scale.ndim == 0:
        return float(scale), int(zp)
    return scale, zp
