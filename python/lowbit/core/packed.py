"""Packed weights: one protocol for every weight scheme, ``pack_weight`` and ``linear``. Public API.

A packed weight is a linear layer's weight ``(N, K)`` in the form its kernel reads, with its
:class:`~lowbit.schemes.WeightScheme` attached: :class:`lowbit.PackedWeight` (the int8 GEMM),
:class:`lowbit.PackedWeight4` (the fused 4-bit kernel) and :class:`DequantizingWeight` (formats
without an activation-quantizing kernel: dequantized per call, then a float32 matmul). Each has
``scheme``, ``shape``, ``nbytes``, ``dequantize()`` and ``prepare_linear(...)``; :func:`linear`
dispatches on the weight's scheme through that method, never on format names.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Optional

import numpy as np

from ._array import as_float_array, as_numpy, is_torch_tensor
from .schemes import (
    ActivationScheme,
    FloatActivations,
    Int4Weights,
    Int8Weights,
    WeightScheme,
    activation_scheme,
    weight_scheme,
)

__all__ = ["DequantizingWeight", "is_packed_weight", "linear", "pack_weight"]

_DEPRECATED = {"act": "activation", "act_scale": "activation_scale", "act_zero_point": "activation_zero_point",
               "act_dtype": "activation_dtype"}


def is_packed_weight(w: Any) -> bool:
    """True for objects that follow the packed-weight protocol (a scheme and ``prepare_linear``)."""
    return isinstance(getattr(w, "scheme", None), WeightScheme) and callable(getattr(w, "prepare_linear", None))


def renamed_keywords(kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """Maps deprecated keywords (``act``, ``act_scale``, ...) to their names, with a
    DeprecationWarning; raises TypeError for unknown keywords."""
    out = {}
    for k, v in kwargs.items():
        if k not in _DEPRECATED:
            raise TypeError(f"{where}() got an unexpected keyword argument {k!r}")
        warnings.warn(f"{where}: '{k}' is deprecated, use '{_DEPRECATED[k]}'", DeprecationWarning, stacklevel=3)
        out[_DEPRECATED[k]] = v
    return out


def no_static_arguments(act: ActivationScheme, what: str, **given: Any) -> None:
    """Raises ValueError for static-activation / requantization arguments a kernel does not take."""
    bad = [k for k, v in given.items() if v is not None]
    if bad:
        raise ValueError(f"{'/'.join(bad)}: {what} take {act.name!r} activations and give float32; "
                         "static parameters and requantized outputs are for int8 weights")


def as_bias(bias: Any, n: int) -> Optional[np.ndarray]:
    """``bias`` as a C-contiguous float32 ``(n,)`` array (None stays None)."""
    if bias is None:
        return None
    b = np.ascontiguousarray(as_numpy(bias, "bias"), np.float32)
    if b.shape != (n,):
        raise ValueError(f"bias: expected shape ({n},), got {b.shape}")
    return b


def float_linear(w: Any, bias: Any, relu: bool) -> Callable[[np.ndarray], np.ndarray]:
    """``x @ w.dequantize().T + bias`` in float32 (weight-only path), the weight decoded per call."""
    b = as_bias(bias, w.shape[0])

    def call(x2: np.ndarray) -> np.ndarray:
        y = np.matmul(x2, w.dequantize().T)
        if b is not None:
            y += b
        if relu:
            np.maximum(y, np.float32(0), out=y)
        return y.astype(np.float32, copy=False)

    return call


class DequantizingWeight:
    """A weight stored in a format without an activation-quantizing kernel (uint4, fp16, bf16,
    log2, ternary, binary, affine int4 groups, registered formats): :func:`linear` dequantizes it
    with lowbit's kernels on each call and multiplies in float32.

    Attributes:
        scheme: the :class:`~lowbit.schemes.WeightScheme`. shape: ``(N, K)``. stored: the scheme's
            stored arrays (read-only views).
    """

    __slots__ = ("scheme", "shape", "stored")

    def __init__(self, scheme: WeightScheme, stored: dict[str, np.ndarray], shape: tuple):
        self.scheme = scheme
        self.shape = (int(shape[0]), int(shape[1]))
        spec = scheme.storage_spec(*self.shape)
        if set(stored) != set(spec):
            raise ValueError(f"stored: {scheme.describe()} store {sorted(spec)}, got {sorted(stored)}")
        self.stored = dict(stored)

    @property
    def nbytes(self) -> int:
        """Stored bytes (codes, scales, zero points)."""
        return self.scheme.nbytes(*self.shape)

    @property
    def bits_per_weight(self) -> float:
        return self.scheme.bits_per_weight(*self.shape)

    def dequantize(self) -> np.ndarray:
        """float32 ``(N, K)``."""
        return self.scheme.dequantize(self.stored, *self.shape)

    def prepare_linear(self, bias: Any = None, activation: Optional[ActivationScheme] = None, *,
                       relu: bool = False, **static: Any) -> Callable[[np.ndarray], np.ndarray]:
        """The packed-weight protocol (see :func:`lowbit.linear`): float activations only."""
        activation = FloatActivations() if activation is None else activation
        self.scheme.check_activation(activation)
        no_static_arguments(activation, self.scheme.describe(), **static)
        return float_linear(self, bias, relu)

    def __repr__(self) -> str:
        return f"DequantizingWeight(shape={self.shape}, {self.scheme.describe()}, nbytes={self.nbytes})"


def pack_weight(
    w: Any,
    *,
    dtype: Any = "int8",
    axis: Optional[int] = 0,
    scale: Any = None,
    zero_point: Any = None,
    group_size: Optional[int] = None,
    **options: Any,
) -> Any:
    """Quantizes (if needed) and packs a linear layer's weight ``(N, K)`` once, for :func:`linear`.

    ``dtype`` is a weight scheme (:mod:`lowbit.schemes`) or its shorthand; the scheme chooses the
    parameters, the stored form and the kernel. int8 (the default): symmetric,
    ``scale = max(absmax / 127, float32 eps)`` per output channel (``axis=0``) or per tensor
    (``axis=None``), zero point 0, ``q = clamp(round_half_even(w / scale), -127, 127)`` (the
    quantize contract); returns a :class:`lowbit.PackedWeight`. "int4" / "nf4" with a group size
    (default 64) return a :class:`lowbit.PackedWeight4`; weight-only formats a
    :class:`DequantizingWeight`. No float32 copy of the weight is kept.

    Args:
        w: float array ``(N, K)`` (float16/32/64, torch tensors too); for int8 also an int8 array
            with ``scale``, or an int8 QTensor (symmetric, per tensor or per channel on axis 0).
        dtype: a :class:`~lowbit.schemes.WeightScheme` or a shorthand ("int8", "int4", "nf4",
            "uint4", "fp16", "bf16", "log2", "ternary", "binary", or a registered name).
        axis: int8 / per-channel int4: 0 for per-output-channel scales, None for one scale.
        scale: int8 only: float scale(s) to use instead of the computed ones; required for int8 ``w``.
        zero_point: int8 only: must be 0 (or None): packed int8 weights are symmetric.
        group_size: inputs per scale for "int4" / "nf4" (default 64) and "uint4" (default None).
        options: other scheme options of the shorthand (``symmetric_weights``, ``log2_bits``,
            ``double_quant``).

    Raises:
        TypeError: unsupported dtypes. ValueError: bad shapes, non-finite weights or scales,
            non-zero zero points, K too large for exact int32 accumulation (> 65793), a group size
            the kernel cannot run.

    Example:
        >>> w = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
        >>> pw = lowbit.pack_weight(w)
        >>> pw.int_repr()
        array([[  64, -127],
               [ 127,   16]], dtype=int8)
        >>> lowbit.pack_weight(np.ones((8, 64), np.float32), dtype="nf4", group_size=32).scheme
        NF4Weights(group_size=32, double_quant=False)
    """
    if isinstance(dtype, str) and dtype in ("int4", "nf4") and group_size is None:
        group_size = 64  # the fused 4-bit kernel's default group
    if isinstance(dtype, str) and dtype in ("int8", "int4") and axis is None:
        options.setdefault("granularity", "per_tensor")
    if axis not in (0, -2, None):
        raise ValueError(f"axis: expected 0 (per output channel) or None (per tensor), got {axis!r}")
    scheme = weight_scheme(dtype, "dtype", group_size=group_size, **options)
    if isinstance(scheme, Int8Weights) and not isinstance(scheme, Int4Weights) and scheme.symmetric:
        from .matmul import pack_weight_int8

        return pack_weight_int8(w, scheme, scale=scale, zero_point=zero_point)
    if scale is not None or zero_point is not None:
        raise ValueError(f"scale/zero_point: {scheme.describe()} compute their own scales (given scales are for int8)")
    a = as_float_array(as_numpy(w, "w"), "w")
    if a.ndim != 2:
        raise ValueError(f"w: expected a 2-D (N, K) weight, got shape {a.shape}")
    a = np.ascontiguousarray(a, np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError("w: weights must be finite (found NaN or inf)")
    n, k = a.shape
    scheme.check_shape(n, k)
    return scheme.pack(scheme.quantize(a), n, k)


def linear(
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    activation: Any = "auto",
    activation_scale: Optional[float] = None,
    activation_zero_point: Optional[int] = None,
    activation_dtype: Optional[str] = None,
    out_scale: Optional[float] = None,
    out_zero_point: Optional[int] = None,
    relu: bool = False,
    **deprecated: Any,
) -> np.ndarray:
    """Quantized ``x @ w.T + bias`` for any packed weight: the weight's scheme picks the kernel.

    - :class:`lowbit.PackedWeight` (int8): the int8 GEMM with activation quantization and the
      epilogue fused. Activations become uint8 (int8 with ``activation="static",
      activation_dtype="int8"``, stored shifted by +128): "dynamic" per row (per token),
      asymmetric over the row's finite values and 0: ``scale = max((hi - lo) / 255, eps)``,
      ``zero_point = clamp(-round(lo / scale), 0, 255)``, ``lo = min(0, min x)``, ``hi = max(0, max x)``;
      "dynamic_per_tensor" the same over the whole of ``x``; "static" the given
      ``activation_scale`` / ``activation_zero_point``. Then ``q = clamp(round_half_even(x / scale)
      + zero_point)``; NaN -> zero point, +-inf -> the range ends. The int32 accumulator is exact;
      the float32 output is ``v * (act_scale_row * w_scale) + bias``, then ReLU, each step rounded
      in float32 in this order: bit-identical to :func:`lowbit.reference.linear`. With
      ``out_scale`` the result is requantized to int8. "float": the dequantized weight times
      float32 activations.
    - :class:`lowbit.PackedWeight4` (int4 groups, nf4): the fused 4-bit kernel, "dynamic" (int8
      activations per row and group, symmetric) or "float" (see :mod:`lowbit.core.linear_4bit`).
    - :class:`~lowbit.packed.DequantizingWeight`: "float" only: dequantize, then a float32 matmul.

    Args:
        x: float array ``(..., K)`` (float16/32/64 or a CPU torch tensor). Never modified.
        w: a packed weight from :func:`pack_weight`.
        bias: optional float ``(N,)``.
        activation: an :class:`~lowbit.schemes.ActivationScheme` or shorthand ("dynamic",
            "dynamic_per_tensor", "static", "float"); "auto" (default): the scheme's default
            (dynamic where its kernel quantizes activations, else float).
        activation_scale, activation_zero_point, activation_dtype: static parameters (dtype "uint8"
            or "int8"; a StaticActivations scheme's dtype is used when None).
        out_scale, out_zero_point: requantize the output to int8 (int8 weights).
        relu: apply ``max(y, 0)`` before the (optional) requantization.
        deprecated: ``act``, ``act_scale``, ``act_zero_point``, ``act_dtype`` (old names; warn).

    Returns:
        float32 ``(..., N)``, or int8 ``(..., N)`` when ``out_scale`` is given.

    Raises:
        TypeError: ``w`` not a packed weight, non-float ``x``. ValueError: shape mismatch, an
            activation mode the weight's kernel does not run, missing/invalid/non-finite scales,
            zero points out of range.

    Example:
        >>> w = lowbit.pack_weight(np.eye(2, dtype=np.float32))
        >>> y = lowbit.linear(np.array([[1.0, -2.0]], np.float32), w, np.float32([0.5, 0.0]))
        >>> np.round(y, 2)
        array([[ 1.5, -2. ]], dtype=float32)
    """
    if deprecated:
        renamed = renamed_keywords(deprecated, "linear")
        activation = renamed.pop("activation", activation)
        activation_scale = renamed.pop("activation_scale", activation_scale)
        activation_zero_point = renamed.pop("activation_zero_point", activation_zero_point)
        activation_dtype = renamed.pop("activation_dtype", activation_dtype)
    call = prepare(w, bias, activation=activation, activation_scale=activation_scale,
                   activation_zero_point=activation_zero_point, activation_dtype=activation_dtype,
                   out_scale=out_scale, out_zero_point=out_zero_point, relu=relu)
    n, k = w.shape
    if type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous and x.flags.aligned:
        xa = x  # fast path: no conversion needed
    else:
        xa = as_float_array(x, "x")
        if xa.dtype != np.float32:
            xa = xa.astype(np.float32)
    if xa.ndim == 0:
        raise ValueError("x: expected at least 1 dimension, got a scalar")
    if xa.shape[-1] != k:
        raise ValueError(f"x: last dimension {xa.shape[-1]} does not match the weight's K = {k} (w.shape = {w.shape})")
    lead = xa.shape[:-1]
    x2 = np.ascontiguousarray(xa.reshape(math.prod(lead), k))
    return call(x2).reshape(lead + (n,))


def prepare(
    w: Any,
    bias: Any = None,
    *,
    activation: Any = "auto",
    activation_scale: Optional[float] = None,
    activation_zero_point: Optional[int] = None,
    activation_dtype: Optional[str] = None,
    out_scale: Optional[float] = None,
    out_zero_point: Optional[int] = None,
    relu: bool = False,
) -> Callable[[np.ndarray], np.ndarray]:
    """Validates everything of a :func:`linear` call except ``x`` once and returns ``f(x2)`` for
    C-contiguous float32 ``(M, K)`` arrays (no further checks; for layers called many times)."""
    if not is_packed_weight(w):
        if is_torch_tensor(w) or isinstance(w, np.ndarray):
            raise TypeError(f"w: expected a packed weight, got a {type(w).__name__}; pack it once with "
                            "lowbit.pack_weight(w, dtype=...)")
        raise TypeError(f"w: expected a packed weight (see lowbit.pack_weight), got {type(w).__name__}")
    act = w.scheme.default_activation() if activation == "auto" else activation_scheme(activation)
    w.scheme.check_activation(act)
    return w.prepare_linear(bias, act, relu=relu, activation_scale=activation_scale,
                            activation_zero_point=activation_zero_point, activation_dtype=activation_dtype,
                            out_scale=out_scale, out_zero_point=out_zero_point)
