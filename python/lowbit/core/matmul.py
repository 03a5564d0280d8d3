"""Exact int8 matrix multiply, packed int8 weights and quantized linear layers.

Public API over the C++ GEMM (``cpp/include/lowbit/matmul.hpp``): int32 accumulation that never
saturates on any ISA; u8 x s8 kernels with the +128 shift corrected by column sums that are
computed once, when weights are packed. ``lowbit.reference`` holds the NumPy spec of each function.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

from .. import _core
from ._array import as_float_array, as_numpy, is_torch_tensor
from .quantize import quantize
from .schemes import ActivationScheme, Int8Weights

__all__ = ["PackedWeight", "matmul_int8", "pack_weight_int8", "prepare_linear", "prepare_conv2d_static",
           "prepare_conv2d_depthwise", "conv_covers_input"]

_ACT_MODES = ("dynamic", "dynamic_per_tensor", "static")


def _int_data(x: Any, name: str) -> np.ndarray:
    """Integer data of an array, a CPU torch tensor or a QTensor (duck-typed ``int_repr()``)."""
    if not isinstance(x, np.ndarray) and hasattr(x, "int_repr") and not is_torch_tensor(x):
        x = x.int_repr()
    elif is_torch_tensor(x) and getattr(x, "is_quantized", False):
        x = x.int_repr()
    return as_numpy(x, name)


def matmul_int8(a: Any, b: Any) -> np.ndarray:
    """Exact integer product ``a @ b`` of int8/uint8 ``a`` and int8 ``b``, as int32.

    Equal to ``a.astype(np.int64) @ b.astype(np.int64)`` element for element: the kernels
    accumulate in int32 and never saturate (AVX2 widens to int16 pairs; VNNI shifts int8
    activations by +128 and subtracts ``128 * column sums``). Multithreaded, GIL released.

    Args:
        a: int8 or uint8 array ``(..., M, K)`` (or ``(K,)``), any strides; or a QTensor, whose
            integer data is used (its scales are ignored).
        b: int8 array ``(K, N)``, any strides (packed on every call); or an int8 QTensor; or a
            :class:`PackedWeight` ``(N, K)`` (packed once: computes ``a @ w.int_repr().T``, the fast
            path for a fixed weight; its scales are ignored).

    Returns:
        int32 array ``(..., M, N)`` (``(N,)`` for 1-D ``a``).

    Raises:
        TypeError: other dtypes.
        ValueError: shape mismatch, or K so large that int32 could overflow
            (K > 131071 for int8 ``a``, K > 65793 for uint8 ``a``).

    Example:
        >>> a = np.array([[1, -2], [3, 4]], np.int8)
        >>> b = np.array([[127, -128], [-128, 127]], np.int8)
        >>> lowbit.matmul_int8(a, b)
        array([[ 383, -382],
               [-131,  124]], dtype=int32)
    """
    a = _int_data(a, "a")
    if a.dtype not in (np.int8, np.uint8):
        raise TypeError(f"a: expected int8 or uint8 data, got dtype {a.dtype}")
    if isinstance(b, PackedWeight):
        n, k = b.shape
        if a.ndim == 0 or a.shape[-1] != k:
            raise ValueError(f"b: PackedWeight of shape {b.shape} (N, K) does not match a's shape {a.shape}")
        lead = a.shape[:-1]
        a2 = a.reshape(math.prod(lead), k)
        return _core.matmul_packed(a2, b._packed, b._colsum, n, k).reshape(lead + (n,))
    b = _int_data(b, "b")
    if b.dtype != np.int8:
        raise TypeError(f"b: expected int8 data, got dtype {b.dtype}")
    if b.ndim != 2:
        raise ValueError(f"b: expected a 2-D (K, N) array, got shape {b.shape}")
    if a.ndim == 0:
        raise ValueError("a: expected at least 1 dimension, got a scalar")
    if a.shape[-1] != b.shape[0]:
        raise ValueError(f"b: shape {b.shape} does not match a's K = {a.shape[-1]} (a has shape {a.shape})")
    if a.ndim == 1:
        return _core.matmul_int8(a.reshape(1, -1), b).reshape(b.shape[1])
    lead = a.shape[:-1]
    a2 = a if a.ndim == 2 else a.reshape(math.prod(lead), a.shape[-1])
    return _core.matmul_int8(a2, b).reshape(lead + (b.shape[1],))


class PackedWeight:
    """An int8 weight ``(N, K)`` (``torch.nn.Linear.weight`` layout) packed for the GEMM kernels.

    Symmetric (zero point 0), per output channel (``axis=0``) or per tensor (``axis=None``). Holds
    the packed bytes, the int32 column sums used by the zero-point correction, and float32 scales.
    Immutable. Pickling stores the plain int8 weight and repacks on load, so a pickle moves between
    machines (and ISAs) freely.

    Attributes:
        shape: ``(N, K)``. scale: float32 ``(N,)`` (equal entries when per tensor). axis: 0 or None.
        layout: name of the packed layout (``"vnni4x16"``, shared by every x86 kernel).
    """

    __slots__ = ("shape", "scale", "axis", "layout", "scheme", "_packed", "_colsum")

    def __init__(self, q: np.ndarray, scale: np.ndarray, axis: Optional[int], scheme: Optional[Int8Weights] = None):
        q = np.asarray(q)
        if q.dtype != np.int8 or q.ndim != 2:
            raise TypeError(f"q: expected a 2-D int8 array, got {q.dtype} with shape {q.shape}")
        scale = np.ascontiguousarray(np.broadcast_to(np.asarray(scale, np.float32), (q.shape[0],)))
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError("scale: every weight scale must be finite and > 0")
        with np.errstate(divide="ignore", over="ignore"):
            if not np.all(np.isfinite(np.float32(1) / scale)):
                raise ValueError("scale: a scale is so small that 1/scale overflows float32")
        packed, colsum = _core.pack_weight_s8(q)
        scale.setflags(write=False)
        object.__setattr__(self, "shape", (int(q.shape[0]), int(q.shape[1])))
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "axis", axis)
        if scheme is None:
            scheme = Int8Weights(granularity="per_tensor" if axis is None else "per_channel")
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "layout", str(_core.packed_layout))
        object.__setattr__(self, "_packed", packed)
        object.__setattr__(self, "_colsum", colsum)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("PackedWeight is immutable")

    @property
    def nbytes(self) -> int:
        """Bytes held: packed weight (padded to 16 columns, K to a multiple of 4), sums, scales."""
        return int(self._packed.nbytes + self._colsum.nbytes + self.scale.nbytes)

    def int_repr(self) -> np.ndarray:
        """The int8 weight ``(N, K)`` (unpacked copy)."""
        return _core.unpack_weight_s8(self._packed, *self.shape)

    def dequantize(self) -> np.ndarray:
        """float32 ``(N, K)``: ``q * scale[:, None]``."""
        return self.int_repr().astype(np.float32) * self.scale[:, None]

    def prepare_linear(self, bias: Any, activation: ActivationScheme, *, relu: bool = False,
                       activation_scale: Optional[float] = None, activation_zero_point: Optional[int] = None,
                       activation_dtype: Optional[str] = None, out_scale: Optional[float] = None,
                       out_zero_point: Optional[int] = None) -> Callable[[np.ndarray], np.ndarray]:
        """The packed-weight protocol (see :func:`lowbit.linear`): the int8 GEMM for quantized
        activations, dequantize + float32 matmul for float ones."""
        from .packed import float_linear, no_static_arguments

        if not activation.quantized:
            no_static_arguments(activation, "float activations", activation_scale=activation_scale,
                                activation_zero_point=activation_zero_point, out_scale=out_scale)
            return float_linear(self, bias, relu)
        dtype = getattr(activation, "dtype", None) if activation_dtype is None else activation_dtype
        return prepare_linear(self, bias, activation=activation.name, activation_scale=activation_scale,
                              activation_zero_point=activation_zero_point, activation_dtype=dtype or "uint8",
                              out_scale=out_scale, out_zero_point=out_zero_point, relu=relu)

    def __reduce__(self):
        return (_unpickle_packed, (self.int_repr(), np.array(self.scale), self.axis, self.scheme))

    def __repr__(self) -> str:
        kind = "per_channel" if self.axis == 0 else "per_tensor"
        return f"PackedWeight(shape={self.shape}, int8 {kind}, layout={self.layout}, nbytes={self.nbytes})"


def _unpickle_packed(q: np.ndarray, scale: np.ndarray, axis: Optional[int], scheme: Any = None) -> PackedWeight:
    return PackedWeight(q, scale, axis, scheme)


def pack_weight_int8(w: Any, scheme: Int8Weights, *, scale: Any = None, zero_point: Any = None) -> PackedWeight:
    """The int8 path of :func:`lowbit.pack_weight`: float weights quantized with ``scheme``'s
    parameter rule (symmetric, ``max|w| / 127`` per channel or tensor); int8 arrays with
    ``scale``; int8 QTensors as they are."""
    axis = 0 if scheme.granularity == "per_channel" else None
    if not scheme.symmetric:
        raise ValueError("dtype: packed int8 weights are symmetric (Int8Weights(symmetric=False) is weight-only)")
    if zero_point is not None and np.any(np.asarray(zero_point) != 0):
        raise ValueError("zero_point: packed weights are symmetric; every zero point must be 0")
    if hasattr(w, "int_repr") and hasattr(w, "scale") and not is_torch_tensor(w):  # QTensor
        if getattr(w, "dtype", None) != "int8":
            raise ValueError(f"w: expected an int8 QTensor, got dtype {getattr(w, 'dtype', None)!r}")
        if getattr(w, "group_size", None) is not None or getattr(w, "axis", None) not in (None, 0):
            raise ValueError("w: expected a per-tensor or axis-0 per-channel QTensor")
        if np.any(np.asarray(w.zero_point) != 0):
            raise ValueError("w: QTensor zero points must be 0 (symmetric weights)")
        q = np.asarray(w.int_repr())
        if q.ndim != 2:
            raise ValueError(f"w: expected shape (N, K), got {q.shape}")
        qaxis = None if w.axis is None else 0
        return PackedWeight(q, np.asarray(w.scale if scale is None else scale, np.float32), qaxis)
    a = as_numpy(w, "w")
    if a.ndim != 2:
        raise ValueError(f"w: expected a 2-D (N, K) weight, got shape {a.shape}")
    if a.shape[1] > _core.matmul_max_k_u8:
        raise ValueError(f"w: K = {a.shape[1]} is too large for exact int32 accumulation (max {_core.matmul_max_k_u8})")
    if a.dtype == np.int8:
        if scale is None:
            raise ValueError("scale: required when w is already int8")
        return PackedWeight(a, _check_scale(scale, a.shape[0], axis), axis)
    a = np.ascontiguousarray(as_float_array(a, "w"), np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError("w: weights must be finite (found NaN or inf)")
    if scale is None:
        st = scheme.quantize(a)
        return PackedWeight(st[scheme.data_name], st["weight_scale"], axis, scheme=scheme)
    s = _check_scale(scale, a.shape[0], axis)
    if a.size == 0:  # nothing to quantize (and quantize() wants one scale per channel)
        return PackedWeight(np.zeros(a.shape, np.int8), s, axis)
    qt = quantize(a, s if axis is not None else float(s), 0, dtype="int8", axis=axis)
    return PackedWeight(qt.int_repr(), s, axis)


def _check_scale(scale: Any, n: int, axis: Optional[int]) -> np.ndarray:
    s = np.asarray(as_numpy(scale, "scale"), np.float64)
    want = () if axis is None else (n,)
    if s.shape != want and not (axis is not None and s.shape == ()):
        raise ValueError(f"scale: expected shape {want} for axis={axis}, got {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("scale: must be finite and > 0")
    return s.astype(np.float32)


def prepare_linear(
    w: PackedWeight,
    bias: Any = None,
    *,
    activation: str = "dynamic",
    activation_scale: Optional[float] = None,
    activation_zero_point: Optional[int] = None,
    activation_dtype: str = "uint8",
    out_scale: Optional[float] = None,
    out_zero_point: Optional[int] = None,
    relu: bool = False,
    rotation: Optional[tuple[np.ndarray, int]] = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """The int8 GEMM of :func:`lowbit.linear` for an int8 :class:`PackedWeight`: validates
    everything except ``x`` once and returns ``f(x2)`` for C-contiguous float32 ``(M, K)`` arrays
    (no further checks: for layers called many times, e.g. lowbit.nn modules). ``activation``:
    "dynamic", "dynamic_per_tensor" or "static". ``rotation``: ``(signs, block)``: x is rotated
    (:mod:`lowbit.core.rotation`) row by row as it is quantized, never written back."""
    act, act_scale, act_zero_point, act_dtype = activation, activation_scale, activation_zero_point, activation_dtype
    if not isinstance(w, PackedWeight):
        raise TypeError(f"w: expected a PackedWeight (see lowbit.pack_weight), got {type(w).__name__}")
    if act not in _ACT_MODES:
        raise ValueError(f"activation: expected one of {', '.join(map(repr, _ACT_MODES))}, got {act!r}")
    if act_dtype not in ("uint8", "int8"):
        raise ValueError(f"activation_dtype: expected 'uint8' or 'int8', got {act_dtype!r}")
    n, k = w.shape
    if act == "static":
        if act_scale is None:
            raise ValueError("activation_scale: required with activation='static'")
        scale_f = _scalar(act_scale, "activation_scale", float)  # finite and > 0: checked by _core.linear
        zp = 0 if act_zero_point is None else _scalar(act_zero_point, "activation_zero_point", int)
        lo, hi = (-128, 127) if act_dtype == "int8" else (0, 255)
        if not lo <= zp <= hi:
            raise ValueError(f"activation_zero_point: {zp} is outside [{lo}, {hi}] for activation_dtype={act_dtype!r}")
    else:
        if act_scale is not None or act_zero_point is not None:
            raise ValueError(f"activation_scale/activation_zero_point: only used with activation='static', not {act!r}")
        scale_f, zp = 1.0, 0
    if out_scale is None and out_zero_point is not None:
        raise ValueError("out_zero_point: given without out_scale")
    osc = None if out_scale is None else _scalar(out_scale, "out_scale", float)
    ozp = 0 if out_zero_point is None else _scalar(out_zero_point, "out_zero_point", int)
    b = None
    if bias is not None:
        b = as_numpy(bias, "bias")
        if b.dtype.kind != "f":
            raise TypeError(f"bias: expected a float array, got dtype {b.dtype}")
        if b.shape != (n,):
            raise ValueError(f"bias: expected shape ({n},), got {b.shape}")
    args = (w._packed, w._colsum, n, k, w.scale, b, act, scale_f, zp, act_dtype == "int8", bool(relu), osc, ozp)
    if rotation is not None:  # checked once here (the signs' shape, the block)
        args += (np.ascontiguousarray(rotation[0], np.float32), int(rotation[1]))
        _core.linear(np.zeros((0, k), np.float32), *args)
    return _LinearCall(args)


class _LinearCall:
    """:func:`prepare_linear`'s result: ``f(x2) = _core.linear(x2, *args)``; ``args`` (validated,
    the rotation last when there is one) also make one part of ``_core.linear_parts`` (several
    linears on one quantized x)."""

    __slots__ = ("args",)

    def __init__(self, args: tuple) -> None:
        self.args = args

    def __call__(self, x2: np.ndarray) -> np.ndarray:
        return _core.linear(x2, *self.args)


def prepare_conv2d_static(
    w: PackedWeight,
    bias: Any,
    *,
    activation_scale: Optional[float] = None,
    activation_zero_point: Optional[int] = None,
    activation_dtype: str = "uint8",
    kernel_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    activation: str = "static",
) -> Callable[[np.ndarray], np.ndarray]:
    """A convolution as ``f(x)``: ``x`` a float32 ``(N, H, W, C)`` array (any strides, e.g. an NCHW
    tensor's NHWC view), result ``(N * Ho * Wo, n_out)`` float32, bit-identical to im2col +
    ``linear(activation=activation)`` with zero padding, but the image is quantized once and the patches are
    built from its bytes. ``w`` is ``(n_out, kh * kw * C)`` with the patch elements in (kh, kw, C)
    order. ``activation``: "static" (``activation_scale``, ``activation_zero_point``, ``activation_dtype``) or
    "dynamic_per_tensor": one uint8 scale and zero point per call from the image's range, which is
    the patches' range when every pixel lies in some patch (:func:`conv_covers_input`; otherwise
    the result differs from im2col + linear).

    Chained layers (:mod:`lowbit.nn.chain`): ``x`` may be a C-contiguous uint8 ``(N, H, W, C)``
    image already quantized with the static activation parameters, and ``f(x, out)`` with
    ``out = (scale, zero_point, signed, lo, hi)`` returns uint8: the float result clamped to
    ``[lo, hi]`` and quantized with (scale, zero_point) of int8 (signed; stored + 128) or uint8."""
    act, act_scale, act_zero_point, act_dtype = activation, activation_scale, activation_zero_point, activation_dtype
    if act == "static":
        prepare_linear(w, bias, activation="static", activation_scale=act_scale, activation_zero_point=act_zero_point,
                       activation_dtype=act_dtype)
        scale_f = _scalar(act_scale, "activation_scale", float)
        zp = _scalar(act_zero_point, "activation_zero_point", int)
    elif act == "dynamic_per_tensor":
        prepare_linear(w, bias, activation="dynamic_per_tensor")
        scale_f, zp = 1.0, 0
    else:
        raise ValueError(f"activation: expected 'static' or 'dynamic_per_tensor', got {act!r}")
    n, _ = w.shape
    b = None if bias is None else np.ascontiguousarray(as_numpy(bias, "bias"), np.float32)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    args = (w._packed, w._colsum, n, w.scale, b, kh, kw, sh, sw, ph, pw, dh, dw, scale_f, zp, act_dtype == "int8", False,
            act)
    conv = _core.conv2d_static
    return lambda x, out=(): conv(x, *args, *out)


def prepare_conv2d_depthwise(
    w_q: Any,
    w_scale: Any,
    bias: Any,
    *,
    kernel_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    activation: str = "static",
    activation_scale: Optional[float] = None,
    activation_zero_point: Optional[int] = None,
    activation_dtype: str = "uint8",
) -> Callable[[np.ndarray], np.ndarray]:
    """A depthwise convolution (one filter per channel) as ``f(x)``: ``x`` a float32
    ``(N, H, W, C)`` array (any strides), result ``(N * Ho * Wo, C)`` float32, bit-identical to
    :func:`lowbit.reference.conv2d_depthwise`. ``w_q``: int8 ``(C, kh * kw)`` (symmetric, zero point
    0), ``w_scale`` float32 ``(C,)``. ``activation``: "static" (``activation_scale``,
    ``activation_zero_point``, ``activation_dtype``) or "dynamic_per_tensor" (uint8 parameters from
    the whole image's range). The image is quantized once; the kernel accumulates in int32.

    Chained layers (:mod:`lowbit.nn.chain`): ``x`` may be a C-contiguous uint8 ``(N, H, W, C)``
    image already quantized with the static activation parameters, and ``f(x, out)`` with
    ``out = (scale, zero_point, signed, lo, hi)`` returns uint8: the float result clamped to
    ``[lo, hi]`` and quantized with (scale, zero_point) of int8 (signed; stored + 128) or uint8."""
    if activation == "static":
        scale_f = _scalar(activation_scale, "activation_scale", float)
        zp = _scalar(activation_zero_point, "activation_zero_point", int)
    elif activation == "dynamic_per_tensor":
        scale_f, zp = 1.0, 0
    else:
        raise ValueError(f"activation: expected 'static' or 'dynamic_per_tensor', got {activation!r}")
    if activation_dtype not in ("uint8", "int8"):
        raise ValueError(f"activation_dtype: expected 'uint8' or 'int8', got {activation_dtype!r}")
    w = np.ascontiguousarray(as_numpy(w_q, "w_q"))
    s = np.ascontiguousarray(as_numpy(w_scale, "w_scale"), np.float32).reshape(-1)
    b = None if bias is None else np.ascontiguousarray(as_numpy(bias, "bias"), np.float32)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    conv = _core.DepthwiseConv(w, s, b, kh, kw, sh, sw, ph, pw, dh, dw, scale_f, zp, activation_dtype == "int8", False,
                               activation)  # the weights laid out once
    return lambda x, out=(): conv(x, *out)


def conv_covers_input(size: int, kernel: int, stride: int, padding: int, dilation: int) -> bool:
    """Whether every input position along one axis lies in some convolution window."""
    if dilation != 1 or stride > kernel or size + 2 * padding < kernel:
        return False
    return (size + 2 * padding - kernel) % stride <= padding


def _scalar(v: Any, name: str, kind: type) -> Any:
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a number, got bool")
    if kind is int:
        if not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
        return int(v)
    if not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a float, got {type(v).__name__}")
    return float(v)
