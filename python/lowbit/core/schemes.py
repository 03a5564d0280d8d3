"""Quantization schemes: what a weight format and an activation mode are. Public API; NumPy only.

A scheme is a weight format x an activation mode. Each is a frozen value object that owns its
validation, its parameter choice (scales, zero points), its stored form (the compact arrays of a
quantized layer and of :func:`lowbit.save` files), its packing into a kernel-ready weight, its
kernel choice, its byte count and its serialization key. :class:`lowbit.QuantConfig`,
:func:`lowbit.pack_weight`, :func:`lowbit.linear`, ``lowbit.nn``, ``lowbit.summary`` and
``lowbit.save``/``load`` ask the scheme; none of them branches on format names. The strings users
write ("int8", "nf4", "dynamic", ...) are shorthands mapped in one table (:data:`WEIGHT_SCHEMES`,
:data:`ACTIVATION_SHORTHANDS`).

Vocabulary (one name per concept, every layer):

==========================  =========================================================================
weight scheme (shorthand)    stored form and kernel
==========================  =========================================================================
Int8Weights ("int8")         int8 per channel/tensor; the int8 GEMM (``linear_int8``)
Int4Weights ("int4")         group_size None: values in [-7, 7] per channel, two per byte, run by the
                             int8 GEMM; group_size 32k: symmetric codes per group, the fused 4-bit
                             kernel (``linear_4bit``); symmetric=False: weight-only (``dequantize``)
UInt4Weights ("uint4")       codes in [0, 15] with zero points, weight-only
NF4Weights ("nf4")           NormalFloat codes, absmax per group (block) of inputs; ``linear_4bit``
FP16Weights, BF16Weights     16-bit floats, weight-only
Log2Weights ("log2")         sign + power-of-two codes (bits 4 or 8), weight-only
TernaryWeights, BinaryWeights  {-a, 0, a} (2 bits) / {-a, a} (1 bit), weight-only
==========================  =========================================================================

==========================================  ====================================================
activation scheme (shorthand)               meaning
==========================================  ====================================================
DynamicActivations() ("dynamic")            quantized at run time, parameters per row (token)
DynamicActivations("tensor")                quantized at run time, one scale per call
  ("dynamic_per_tensor")
StaticActivations(observer, dtype)          per-tensor parameters fixed by calibration / QAT
  ("static")
FloatActivations() ("float"; None)          activations stay float (weight-only layers)
"auto" (QuantConfig's default)              the weight scheme's default: dynamic where its kernel
                                            quantizes activations, else float
==========================================  ====================================================

The integer form of dynamic activations is the kernel's: asymmetric uint8 per row for the int8
GEMM, symmetric int8 per row and weight group for the 4-bit kernel (``activation_form``).

Example:
    >>> from lowbit.schemes import Int4Weights, weight_scheme
    >>> s = weight_scheme("int4", group_size=64)
    >>> s, s.kernel(s.default_activation())
    (Int4Weights(granularity='per_channel', symmetric=True, group_size=64), 'linear_4bit')
    >>> s.nbytes(16, 128)  # codes two per byte + one float32 scale per group
    1152
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Optional, Union

import numpy as np

__all__ = [
    "ACTIVATION_SHORTHANDS",
    "ActivationScheme",
    "BF16Weights",
    "BinaryWeights",
    "DynamicActivations",
    "FP16Weights",
    "FloatActivations",
    "Int4Weights",
    "Int8Weights",
    "KERNELS",
    "Log2Weights",
    "NF4Weights",
    "OBSERVERS",
    "StaticActivations",
    "TernaryWeights",
    "UInt4Weights",
    "WEIGHT_SCHEMES",
    "WeightScheme",
    "activation_scheme",
    "close_matches",
    "pack_nibbles",
    "register_weight_scheme",
    "unpack_nibbles",
    "weight_scheme",
    "weight_scheme_from_key",
]

#: The kernels a layer can run: the int8 GEMM, the fused 4-bit kernel, or dequantize + float matmul.
KERNELS = ("linear_int8", "linear_4bit", "dequantize")
#: Activation observers of static calibration.
OBSERVERS = ("minmax", "moving_average", "histogram", "percentile", "entropy")
_GRANULARITIES = ("per_channel", "per_tensor")
# observer shorthand -> (lowbit.observers class, its options)
_OBSERVER_CLASSES = {
    "minmax": ("MinMaxObserver", {}),
    "moving_average": ("MovingAverageMinMaxObserver", {}),
    "histogram": ("HistogramObserver", {"method": "mse"}),
    "percentile": ("HistogramObserver", {"method": "percentile"}),
    "entropy": ("HistogramObserver", {"method": "entropy"}),
}
_EPS = np.float32(np.finfo(np.float32).eps)
_KERNEL_GROUP = 32  # the 4-bit kernels take groups of whole 32-input steps


def close_matches(word: str, choices: Any) -> str:
    """" (did you mean 'x'?)" for the choices close to ``word``, or ""."""
    hits = difflib.get_close_matches(str(word), [str(c) for c in choices], n=3, cutoff=0.6)
    return f" (did you mean {', '.join(map(repr, hits))}?)" if hits else ""


def _check_choice(value: Any, choices: tuple, name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}"
                         + close_matches(value, choices))


def _check_bool(value: Any, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")


# Larger groups mean nothing (one group covers any array that fits in memory) and would overflow the
# kernels' int64 size arithmetic; the C++ bindings apply the same cap.
MAX_GROUP_SIZE = 2**48


def _check_group(value: Any, name: str = "group_size") -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int or None, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name}: must be positive, got {value}")
    if value > MAX_GROUP_SIZE:
        raise ValueError(f"{name}: must be at most 2**48, got {value}")


# --------------------------------------------------------------------------------------------
# activation schemes


@dataclass(frozen=True)
class ActivationScheme:
    """How a layer's input is treated: quantized at run time, with calibrated parameters, or kept
    float. Subclasses: :class:`DynamicActivations`, :class:`StaticActivations`,
    :class:`FloatActivations`."""

    #: Short name (the shorthand string): "dynamic", "dynamic_per_tensor", "static" or "float".
    name: ClassVar[str] = ""

    @property
    def quantized(self) -> bool:
        """True when the kernel quantizes the activations (not float)."""
        return True

    @property
    def calibrated(self) -> bool:
        """True when the parameters come from calibration data or QAT (static)."""
        return False

    def describe(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; :func:`activation_scheme` inverts it."""
        return {"mode": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True)
class DynamicActivations(ActivationScheme):
    """Activations quantized at run time: parameters per row (token) with ``per="row"``, one set
    per call with ``per="tensor"``."""

    per: str = "row"

    def __post_init__(self) -> None:
        _check_choice(self.per, ("row", "tensor"), "DynamicActivations.per")

    @property
    def name(self) -> str:  # type: ignore[override]
        return "dynamic" if self.per == "row" else "dynamic_per_tensor"

    def describe(self) -> str:
        return f"dynamic act (per {self.per})"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.name}


@dataclass(frozen=True)
class StaticActivations(ActivationScheme):
    """Per-tensor activation parameters fixed by calibration (``observer``) or QAT. ``dtype``:
    "uint8" (asymmetric) or "int8" (symmetric)."""

    name: ClassVar[str] = "static"
    observer: str = "minmax"
    dtype: str = "uint8"

    def __post_init__(self) -> None:
        _check_choice(self.observer, OBSERVERS, "StaticActivations.observer")
        _check_choice(self.dtype, ("uint8", "int8"), "StaticActivations.dtype")

    @property
    def calibrated(self) -> bool:
        return True

    def describe(self) -> str:
        return f"static {self.dtype} act"

    def make_observer(self) -> Any:
        """A fresh observer of this scheme's calibration: symmetric for int8, asymmetric for uint8;
        "histogram" minimizes the MSE, "percentile" and "entropy" clip as named."""
        from . import observers

        cls_name, kwargs = _OBSERVER_CLASSES[self.observer]
        return getattr(observers, cls_name)(dtype=self.dtype, symmetric=self.dtype == "int8", **kwargs)


@dataclass(frozen=True)
class FloatActivations(ActivationScheme):
    """Activations stay float: the layer is weight-only."""

    name: ClassVar[str] = "float"

    @property
    def quantized(self) -> bool:
        return False

    def describe(self) -> str:
        return "weight-only"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": "float"}


#: Shorthand -> activation scheme. None is the historical spelling of "float".
ACTIVATION_SHORTHANDS: dict[Any, ActivationScheme] = {
    "dynamic": DynamicActivations("row"),
    "dynamic_per_row": DynamicActivations("row"),
    "dynamic_per_tensor": DynamicActivations("tensor"),
    "static": StaticActivations(),
    "float": FloatActivations(),
    None: FloatActivations(),
}


def activation_scheme(value: Any, *, observer: Optional[str] = None, dtype: Optional[str] = None,
                      name: str = "activation") -> ActivationScheme:
    """An :class:`ActivationScheme` from a scheme, a shorthand string (see
    :data:`ACTIVATION_SHORTHANDS`) or its :meth:`~ActivationScheme.to_dict` form. ``observer`` and
    ``dtype`` refine "static" (they must be None for the other modes unless equal to the defaults).

    Example:
        >>> activation_scheme("static", observer="histogram")
        StaticActivations(observer='histogram', dtype='uint8')
    """
    if isinstance(value, dict):
        d = dict(value)
        mode = d.pop("mode", None)
        base = activation_scheme(mode, name=name)
        return StaticActivations(**d) if isinstance(base, StaticActivations) else base
    if isinstance(value, ActivationScheme):
        act = value
    elif value is None or isinstance(value, str):
        if value not in ACTIVATION_SHORTHANDS:
            choices = [k for k in ACTIVATION_SHORTHANDS if k is not None]
            raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, None or an "
                             f"ActivationScheme, got {value!r}" + close_matches(value, choices))
        act = ACTIVATION_SHORTHANDS[value]
    else:
        raise TypeError(f"{name}: expected a string or an ActivationScheme, got {type(value).__name__}")
    if isinstance(act, StaticActivations):
        if observer is not None or dtype is not None:
            act = StaticActivations(observer=act.observer if observer is None else observer,
                                    dtype=act.dtype if dtype is None else dtype)
    else:
        if observer not in (None, "minmax"):
            raise ValueError(f"observer: {observer!r} is for static activations; {name} is {act.name!r}")
        if dtype not in (None, "uint8"):
            raise ValueError(f"activation_dtype: {dtype!r} is for static activations; {name} is {act.name!r}")
    return act


# --------------------------------------------------------------------------------------------
# stored forms: small NumPy helpers


def pack_nibbles(q: np.ndarray) -> np.ndarray:
    """4-bit values (N, K) (int4 in [-8, 7] or uint4 in [0, 15]) -> uint8 (N, ceil(K / 2)), two per
    byte along the last axis, low nibble first; the pad nibble of an odd K is 0."""
    c = (np.asarray(q).astype(np.int16) & 15).astype(np.uint8)
    if c.shape[-1] % 2:
        c = np.concatenate([c, np.zeros(c.shape[:-1] + (1,), np.uint8)], axis=-1)
    return np.ascontiguousarray(c[..., 0::2] | (c[..., 1::2] << 4))


def unpack_nibbles(p: np.ndarray, k: int, signed: bool) -> np.ndarray:
    """Inverse of :func:`pack_nibbles`: (N, ceil(K / 2)) uint8 -> (N, K) int8 in [-8, 7] (signed)
    or uint8 in [0, 15]."""
    p = np.asarray(p, np.uint8)
    c = np.stack([p & 15, p >> 4], axis=-1).reshape(p.shape[:-1] + (2 * p.shape[-1],))[..., :k]
    return ((c.astype(np.int8) ^ 8) - 8).astype(np.int8) if signed else np.ascontiguousarray(c)


def _minmax_qparams(lo: np.ndarray, hi: np.ndarray, dtype: str, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point covering [lo, hi] widened to 0. Symmetric (signed): ``max|.| / qmax``
    (range [-qmax, qmax], as the int8 kernels' sign trick wants), zero point 0; affine:
    :func:`lowbit.choose_qparams`'s formula. Scales never fall below float32 eps."""
    from .quantize import qrange

    qmin, qmax = qrange(dtype)
    lo = np.minimum(np.asarray(lo, np.float32), np.float32(0))
    hi = np.maximum(np.asarray(hi, np.float32), np.float32(0))
    if symmetric:
        scale = np.maximum(np.maximum(-lo, hi) / np.float32(qmax), _EPS).astype(np.float32)
        return scale, np.zeros(scale.shape, np.int32)
    scale = np.maximum((hi - lo) / np.float32(qmax - qmin), _EPS).astype(np.float32)
    zp = np.clip(np.float32(qmin) - np.round(lo / scale), qmin, qmax).astype(np.int32)
    return scale, zp


def _row_ranges(a: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    n = a.shape[0]
    if a.size == 0:
        return np.zeros(n, np.float32), np.zeros(n, np.float32)
    if per_channel:
        return a.min(axis=1), a.max(axis=1)
    return np.full(n, a.min(), np.float32), np.full(n, a.max(), np.float32)


def _group_ranges(a: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray]:
    starts = np.arange(0, a.shape[1], g)
    return np.minimum.reduceat(a, starts, axis=1), np.maximum.reduceat(a, starts, axis=1)


def _channel_scales(scale: Any, zero_point: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    s = np.broadcast_to(np.asarray(scale, np.float32).reshape(-1), (n,)).copy()
    z = np.broadcast_to(np.asarray(0 if zero_point is None else zero_point, np.int32).reshape(-1), (n,)).copy()
    return s, z


def _spec_bytes(spec: dict[str, tuple[tuple, str]]) -> int:
    size = {"int8": 1, "uint8": 1, "int32": 4, "float32": 4, "float16": 2, "bfloat16": 2}
    return sum(int(np.prod(shape, dtype=np.int64)) * size[dt] for shape, dt in spec.values())


# --------------------------------------------------------------------------------------------
# weight schemes


@dataclass(frozen=True)
class ColumnGrid:
    """A weight scheme's fixed-parameter rounding in generic form (what GPTQ's C++ column loop runs;
    equal to the scheme's :meth:`~WeightScheme.column_quantizer`).

    Column ``j`` of row ``r`` uses ``s = scale[r, j // group_size]`` (float32 (n, G)) and
    ``z = zero_point[r, j // group_size]`` (int32 (n, G); None: 0). Integer grid (``levels`` None):
    ``q = clamp(rint(x * float32(1 / s)) + z, qmin, qmax)``, value ``(q - z) * s``. Codebook:
    ``y = x * float32(1 / s)`` (0 when s == 0), code = number of ``thresholds`` below ``y``
    (ascending, ``len(levels) - 1``), value ``levels[code] * s``.
    """

    scale: np.ndarray
    zero_point: Optional[np.ndarray]
    group_size: int
    qmin: int = 0
    qmax: int = 0
    levels: Optional[np.ndarray] = None
    thresholds: Optional[np.ndarray] = None


@dataclass(frozen=True)
class WeightScheme:
    """A weight format with its options. Subclasses define the methods below; :func:`weight_scheme`
    builds them from shorthands and :func:`register_weight_scheme` adds new ones.

    The stored form of an ``(N, K)`` weight is a dict of arrays named like ``lowbit.nn`` buffers:
    ``data_name`` (the codes), ``"weight_scale"`` and, where the format has them,
    ``"weight_zero_point"``. For a Conv2d K is the flattened (kh, kw, in_channels) patch.
    """

    #: The shorthand and serialization name ("int8", "nf4", ...).
    name: ClassVar[str] = ""
    #: Legacy QuantConfig keywords this scheme takes -> its field names.
    options: ClassVar[dict[str, str]] = {}
    #: Name of the stored codes.
    data_name: ClassVar[str] = "weight_codes"

    # -- identity ----------------------------------------------------------------------------

    @property
    def code_bits(self) -> int:
        """Bits per stored code, scales not included."""
        raise NotImplementedError

    @property
    def group_size(self) -> Optional[int]:  # overridden by a dataclass field where it exists
        """Inputs per scale (groups / blocks), or None."""
        return None

    @property
    def granularity_label(self) -> str:
        """ "per_channel", "per_tensor", "per_group", "per_block" or "elementwise"."""
        return getattr(self, "granularity", "per_channel")

    def describe(self) -> str:
        """E.g. "int4 weights group 64"."""
        return f"{self.name} weights {self.granularity_label}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: {"format": name, **fields}; :func:`weight_scheme` inverts it."""
        return {"format": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @property
    def key(self) -> str:
        """Canonical string of :meth:`to_dict` (the serialization key, also the torch ops'
        argument); :func:`weight_scheme_from_key` inverts it."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    # -- activations and kernels ---------------------------------------------------------------

    def supports(self, act: ActivationScheme) -> bool:
        """Whether a kernel runs this format with ``act``."""
        return not act.quantized

    def default_activation(self) -> ActivationScheme:
        """Dynamic per row where a kernel quantizes activations for this format, else float."""
        dynamic = ACTIVATION_SHORTHANDS["dynamic"]
        return dynamic if self.supports(dynamic) else ACTIVATION_SHORTHANDS["float"]

    def check_activation(self, act: ActivationScheme) -> None:
        """Raises ValueError saying why ``act`` cannot run with this format and what would."""
        if self.supports(act):
            return
        ok = [a.name for a in (DynamicActivations(), DynamicActivations("tensor"), StaticActivations(),
                               FloatActivations()) if self.supports(a)]
        raise ValueError(f"activation: {act.name!r} is not supported with {self.describe()}: "
                         f"{self._activation_reason(act)}; supported: {', '.join(map(repr, ok))}")

    def _activation_reason(self, act: ActivationScheme) -> str:
        return f"{self.name} is a weight-only format (no kernel quantizes activations for it)"

    def kernel(self, act: ActivationScheme) -> str:
        """The kernel a layer runs (one of :data:`KERNELS`)."""
        return "dequantize"

    def activation_form(self, act: ActivationScheme) -> str:
        """How the kernel represents ``act`` (for summaries)."""
        return act.describe()

    # -- stored form -----------------------------------------------------------------------------

    def storage_spec(self, n: int, k: int) -> dict[str, tuple[tuple, str]]:
        """name -> (shape, dtype name) of the stored arrays of an (n, k) weight."""
        raise NotImplementedError

    def nbytes(self, n: int, k: int) -> int:
        """Stored bytes of an (n, k) weight (codes, scales, zero points)."""
        return _spec_bytes(self.storage_spec(n, k))

    def bits_per_weight(self, n: int, k: int) -> float:
        return 8.0 * self.nbytes(n, k) / (n * k) if n * k else float("nan")

    def empty_storage(self, n: int, k: int) -> dict[str, np.ndarray]:
        """Stored arrays of zero weights (scales 1); bfloat16 arrays as uint16 bit patterns."""
        out = {}
        for name, (shape, dt) in self.storage_spec(n, k).items():
            fill = 1 if name == "weight_scale" else 0
            out[name] = np.full(shape, fill, np.uint16 if dt == "bfloat16" else dt)
        return out

    def quantize(self, w: np.ndarray, scale: Any = None, zero_point: Any = None) -> dict[str, np.ndarray]:
        """The stored arrays of a finite float32 (n, k) weight. ``scale``/``zero_point`` (per
        channel) are used as given by formats that take them (QAT), else must be None."""
        raise NotImplementedError

    def dequantize(self, stored: dict[str, np.ndarray], n: int, k: int) -> np.ndarray:
        """float32 (n, k) from the stored arrays (lowbit's dequantize kernels)."""
        raise NotImplementedError

    def pack(self, stored: dict[str, np.ndarray], n: int, k: int) -> Any:
        """The kernel-ready packed weight of the stored arrays (see :func:`lowbit.pack_weight`)."""
        from .packed import DequantizingWeight

        return DequantizingWeight(self, stored, (n, k))

    def check_shape(self, n: int, k: int) -> None:
        """Raises ValueError when this format's kernel cannot run an (n, k) weight."""

    def column_quantizer(self, stored: dict[str, np.ndarray], n: int, k: int) -> Any:
        """``f(j, col)``: column ``j`` (float32 (n,)) rounded with the parameters of ``stored`` and
        dequantized (for GPTQ, which changes columns after the parameters are fixed)."""
        raise ValueError(f"GPTQ: {self.describe()} have no fixed-parameter rounding "
                         "(GPTQ supports int8, int4, uint4 and nf4 weights)")

    def requantize(self, w: np.ndarray, stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The stored form of float32 ``w`` (n, k) with the parameters of ``stored`` kept."""
        raise ValueError(f"GPTQ: {self.describe()} have no fixed-parameter rounding")

    def column_grid(self, stored: dict[str, np.ndarray], n: int, k: int) -> Optional[ColumnGrid]:
        """:meth:`column_quantizer` as a :class:`ColumnGrid` (GPTQ's compiled loop runs it), or None
        (then GPTQ runs ``column_quantizer`` in NumPy)."""
        return None

    def check_stored(self, stored: dict[str, np.ndarray]) -> None:
        """Raises ValueError for stored values the kernels cannot take (e.g. read from a file):
        scales must be finite (and ``weight_scale`` >= 0)."""
        for name, a in stored.items():
            if name.startswith("weight_scale") and a.dtype.kind == "f":
                if not np.all(np.isfinite(a)):
                    raise ValueError(f"{name} holds NaN or inf")
                if name == "weight_scale" and np.any(a < 0):
                    raise ValueError("weight_scale holds negative scales")

    def _check_given(self, scale: Any, zero_point: Any) -> None:
        if scale is not None or zero_point is not None:
            raise ValueError(f"weight_qparams: {self.describe()} compute their own scales "
                             "(only per-channel int8 / int4 and symmetric int4 group weights take given scales, for QAT)")


#: name -> weight scheme class: the one table of weight formats (see :func:`register_weight_scheme`).
WEIGHT_SCHEMES: dict[str, type] = {}


def register_weight_scheme(cls: type) -> type:
    """Adds a :class:`WeightScheme` subclass to :data:`WEIGHT_SCHEMES` under ``cls.name`` (so
    shorthands, configs and saved files find it). Returns ``cls`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, WeightScheme)) or not cls.name:
        raise TypeError("register_weight_scheme: expected a WeightScheme subclass with a name")
    WEIGHT_SCHEMES[cls.name] = cls
    return cls


@dataclass(frozen=True)
class _AffineWeights(WeightScheme):
    """Shared by int8 / int4 / uint4: integer codes with scales (and zero points)."""

    def _affine_groups(self, a: np.ndarray, g: int) -> dict[str, np.ndarray]:
        from .quantize import choose_qparams, quantize

        lo, hi = _group_ranges(a, g)
        s, z = choose_qparams(lo, hi, dtype=self.name, symmetric=self.symmetric)
        q = quantize(a, s, z, dtype=self.name, group_size=g)
        return {"weight_packed": np.ascontiguousarray(q.data).view(np.uint8), "weight_scale": s,
                "weight_zero_point": z}

    def _params(self, stored: dict[str, np.ndarray], n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scales and zero points broadcast to (n, k) float32 / int32 arrays."""
        s = np.asarray(stored["weight_scale"], np.float32)
        z = stored.get("weight_zero_point")
        z = np.zeros(s.shape, np.int32) if z is None else np.asarray(z, np.int32)
        if self.group_size is not None:
            s = np.repeat(s.reshape(n, -1), self.group_size, axis=1)[:, :k]
            z = np.repeat(z.reshape(n, -1), self.group_size, axis=1)[:, :k]
        else:
            s = np.broadcast_to(s.reshape(-1, 1), (n, k))
            z = np.broadcast_to(z.reshape(-1, 1), (n, k))
        return s, z

    def _round(self, w: np.ndarray, s: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The quantize contract: clamp(round_half_even(w * float32(1 / s)) + z) in the format's range."""
        from .quantize import qrange

        qmin, qmax = qrange(self.name)
        with np.errstate(over="ignore", invalid="ignore"):
            inv = (np.float32(1) / s).astype(np.float32)
            r = np.clip(w.astype(np.float32) * inv, np.float32(-2.0**30), np.float32(2.0**30))
        return np.clip(np.rint(r) + z, qmin, qmax).astype(np.int32)

    def column_quantizer(self, stored: dict[str, np.ndarray], n: int, k: int) -> Any:
        s, z = self._params(stored, n, k)

        def quantize_column(j: int, col: np.ndarray) -> np.ndarray:
            q = self._round(col, s[:, j], z[:, j])
            return ((q - z[:, j]).astype(np.float32) * s[:, j]).astype(np.float32)

        return quantize_column

    def column_grid(self, stored: dict[str, np.ndarray], n: int, k: int) -> Optional[ColumnGrid]:
        from .quantize import qrange

        s = np.asarray(stored["weight_scale"], np.float32)
        z = stored.get("weight_zero_point")
        z = np.zeros(s.shape, np.int32) if z is None else np.asarray(z, np.int32)
        if self.group_size is not None:
            g, s, z = self.group_size, s.reshape(n, -1), z.reshape(n, -1)
        else:
            g, s, z = max(k, 1), np.broadcast_to(s.reshape(-1, 1), (n, 1)), np.broadcast_to(z.reshape(-1, 1), (n, 1))
        qmin, qmax = qrange(self.name)
        return ColumnGrid(np.ascontiguousarray(s), np.ascontiguousarray(z), g, qmin, qmax)

    def requantize(self, w: np.ndarray, stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n, k = w.shape
        if self.group_size is not None and self.code_bits == 4 and w.size:  # the quantize kernel: same contract
            from .quantize import quantize

            z = stored.get("weight_zero_point")
            q4 = quantize(np.ascontiguousarray(w, np.float32), np.asarray(stored["weight_scale"], np.float32),
                          0 if z is None else np.asarray(z, np.int32), dtype=self.name, group_size=self.group_size)
            return {**stored, self.data_name: np.ascontiguousarray(q4.data).view(np.uint8)}
        s, z = self._params(stored, n, k)
        q = self._round(w, s, z)
        codes = q.astype(np.int8) if self.code_bits == 8 else pack_nibbles(q)
        return {**stored, self.data_name: codes}

    def check_stored(self, stored: dict[str, np.ndarray]) -> None:
        from .quantize import qrange

        s = stored.get("weight_scale")
        if s is not None and not np.all(np.isfinite(s) & (s > 0)):
            raise ValueError("weight_scale must be finite and > 0")
        z = stored.get("weight_zero_point")
        lo, hi = qrange(self.name)
        if z is not None and z.size and (z.min() < lo or z.max() > hi):
            raise ValueError(f"weight_zero_point must lie in [{lo}, {hi}] for {self.name} weights")

    def _dequantize_affine(self, stored: dict[str, np.ndarray], n: int, k: int) -> np.ndarray:
        from .quantize import QTensor, dequantize

        d = stored[self.data_name]
        s = np.asarray(stored["weight_scale"], np.float32)
        z = stored.get("weight_zero_point")
        z = np.zeros(s.shape, np.int32) if z is None else np.asarray(z, np.int32)
        if self.name == "int4":
            d = d.view(np.int8)
        if self.group_size is not None:
            q = QTensor(d, s, z, self.name, (n, k), group_size=self.group_size)
        else:
            q = QTensor(d, s.reshape(n), z.reshape(n), self.name, (n, k), axis=0)
        return dequantize(q)


@register_weight_scheme
@dataclass(frozen=True)
class Int8Weights(_AffineWeights):
    """int8 weights, symmetric (range [-127, 127]) or affine, one scale per output channel or per
    tensor. With quantized activations: the int8 GEMM (symmetric only)."""

    name: ClassVar[str] = "int8"
    options: ClassVar[dict[str, str]] = {"granularity": "granularity", "symmetric_weights": "symmetric"}
    data_name: ClassVar[str] = "weight_int8"
    granularity: str = "per_channel"
    symmetric: bool = True

    def __post_init__(self) -> None:
        _check_choice(self.granularity, _GRANULARITIES, f"{type(self).__name__}.granularity")
        _check_bool(self.symmetric, f"{type(self).__name__}.symmetric")

    @property
    def code_bits(self) -> int:
        return 8

    def supports(self, act: ActivationScheme) -> bool:
        return not act.quantized or self.symmetric

    def _activation_reason(self, act: ActivationScheme) -> str:
        return "the int8 kernels need symmetric weights (symmetric=False is weight-only)"

    def kernel(self, act: ActivationScheme) -> str:
        return "linear_int8" if act.quantized else "dequantize"

    def activation_form(self, act: ActivationScheme) -> str:
        return act.describe()

    def _codes_spec(self, n: int, k: int) -> tuple[tuple, str]:
        return (n, k), "int8"

    def storage_spec(self, n: int, k: int) -> dict[str, tuple[tuple, str]]:
        return {self.data_name: self._codes_spec(n, k), "weight_scale": ((n,), "float32"),
                "weight_zero_point": ((n,), "int32")}

    def quantize(self, w: np.ndarray, scale: Any = None, zero_point: Any = None) -> dict[str, np.ndarray]:
        from .quantize import qrange, quantize

        n = w.shape[0]
        if scale is None:
            lo, hi = _row_ranges(w, self.granularity == "per_channel")
            s, z = _minmax_qparams(lo, hi, self.name, self.symmetric)
        else:
            s, z = _channel_scales(scale, zero_point, n)
        qmin, qmax = qrange(self.name)
        if w.size == 0:
            q = np.zeros(w.shape, np.int8)
        else:  # int8 rounding with the given scale, then the format's clamp (exact for 4-bit too)
            q = quantize(w, s, np.clip(z, -128, 127), dtype="int8", axis=0).int_repr()
            q = np.clip(q, qmin, qmax).astype(np.int8)
        return {self.data_name: self._store_codes(q), "weight_scale": s, "weight_zero_point": z}

    def _store_codes(self, q: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(q)

    def int_codes(self, stored: dict[str, np.ndarray], k: int) -> np.ndarray:
        """The int8 (n, k) values the int8 GEMM multiplies."""
        return np.asarray(stored[self.data_name])

    def dequantize(self, stored: dict[str, np.ndarray], n: int, k: int) -> np.ndarray:
        return self._dequantize_affine(stored, n, k)

    def pack(self, stored: dict[str, np.ndarray], n: int, k: int) -> Any:
        from .matmul import PackedWeight

        z = np.asarray(stored["weight_zero_point"])
        if not self.symmetric or np.any(z != 0):
            return super().pack(stored, n, k)
        s = np.asarray(stored["weight_scale"], np.float32).reshape(n)
        axis = 0 if self.granularity == "per_channel" else None
        return PackedWeight(self.int_codes(stored, k), s, axis, scheme=self)


@register_weight_scheme
@dataclass(frozen=True)
class Int4Weights(Int8Weights):
    """int4 weights. ``group_size=None``: values in [-7, 7] (symmetric) per channel or tensor, two
    per byte, multiplied by the int8 GEMM. ``group_size`` g: one scale per g consecutive inputs of
    each output row; symmetric codes in [-8, 7] with ``max|w| / 7.5`` (as torchao) run the fused
    4-bit kernel (g a multiple of 32); ``symmetric=False`` adds zero points, weight-only (any g)."""

    name: ClassVar[str] = "int4"
    options: ClassVar[dict[str, str]] = {"granularity": "granularity", "symmetric_weights": "symmetric",
                                         "group_size": "group_size"}
    data_name: ClassVar[str] = "weight_packed"
    group_size: Optional[int] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size is not None:
            _check_group(self.group_size, f"{type(self).__name__}.group_size")
            if self.granularity != "per_channel":
                raise ValueError(f"granularity: {self.name} weights with group_size={self.group_size} have one "
                                 "scale per group of each output channel; use granularity='per_channel'")
            if self._fused and self.group_size % _KERNEL_GROUP:
                raise ValueError(
                    f"group_size: the 4-bit kernel takes groups that are multiples of {_KERNEL_GROUP} "
                    f"(32, 64, 128, ...), got {self.group_size}; pick one of those, or symmetric=False for "
                    "weight-only int4 with any group size")

    @property
    def _fused(self) -> bool:
        return self.group_size is not None and self.symmetric

    @property
    def code_bits(self) -> int:
        return 4

    @property
    def granularity_label(self) -> str:
        return "per_group" if self.group_size is not None else self.granularity

    def describe(self) -> str:
        if self.group_size is not None:
            return f"{self.name} weights group {self.group_size}" + ("" if self.symmetric else " affine")
        return super().describe()

    def supports(self, act: ActivationScheme) -> bool:
        if self._fused:
            return not act.quantized or isinstance(act, DynamicActivations) and act.per == "row"
        if self.group_size is not None:
            return not act.quantized
        return super().supports(act)

    def _activation_reason(self, act: ActivationScheme) -> str:
        if self._fused:
            return ("the 4-bit kernel quantizes activations per row at run time ('dynamic') or keeps them "
                    "float; group_size=None gives per-channel int4, which takes static activations")
        if self.group_size is not None:
            return "int4 groups with zero points are weight-only"
        return super()._activation_reason(act)

    def kernel(self, act: ActivationScheme) -> str:
        if self._fused:
            return "linear_4bit"
        return super().kernel(act) if self.group_size is None else "dequantize"

    def activation_form(self, act: ActivationScheme) -> str:
        if self.kernel(act) == "linear_4bit" and act.quantized:
            return "dynamic int8 act (per row and group)"
        return act.describe()

    def _codes_spec(self, n: int, k: int) -> tuple[tuple, str]:
        return (n, (k + 1) // 2), "uint8"

    def storage_spec(self, n: int, k: int) -> dict[str, tuple[tuple, str]]:
        if self.group_size is None:
            return super().storage_spec(n, k)
        g = -(-k // self.group_size)
        spec = {self.data_name: self._codes_spec(n, k), "weight_scale": ((n, g), "float32")}
        if not self._fused:
            spec["weight_zero_point"] = ((n, g), "int32")
        return spec

    def _store_codes(self, q: np.ndarray) -> np.ndarray:
        return pack_nibbles(q)

    def int_codes(self, stored: dict[str, np.ndarray], k: int) -> np.ndarray:
        return unpack_nibbles(stored[self.data_name], k, signed=True)

    def quantize(self, w: np.ndarray, scale: Any = None, zero_point: Any = None) -> dict[str, np.ndarray]:
        if self.group_size is None:
            return super().quantize(w, scale, zero_point)
        if not self._fused or zero_point is not None and np.any(np.asarray(zero_point) != 0):
            self._check_given(scale, zero_point)
        if w.size == 0:
            return self.empty_storage(*w.shape)
        if not self._fused:
            return self._affine_groups(w, self.group_size)
        from .quantize import choose_qparams, quantize

        if scale is None:
            m = np.maximum.reduceat(np.abs(w), np.arange(0, w.shape[1], self.group_size), axis=1)
            s, _ = choose_qparams(-m, m, dtype="int4", symmetric=True)
        else:  # given group scales (QAT's fake quantization), (n, groups)
            s = np.ascontiguousarray(np.asarray(scale, np.float32).reshape(w.shape[0], -1))
            if s.shape[1] != -(-w.shape[1] // self.group_size):
                raise ValueError(f"weight_qparams: expected {-(-w.shape[1] // self.group_size)} scales per row "
                                 f"(groups of {self.group_size}), got {s.shape[1]}")
        q = quantize(w, s, 0, dtype="int4", group_size=self.group_size)
        return {"weight_packed": np.ascontiguousarray(q.data).view(np.uint8), "weight_scale": s}

    def pack(self, stored: dict[str, np.ndarray], n: int, k: int) -> Any:
        if self._fused:
            from .linear_4bit import PackedWeight4

            return PackedWeight4.from_packed_codes(stored[self.data_name], stored["weight_scale"], shape=(n, k),
                                                   scheme=self)
        if self.group_size is not None:
            return WeightScheme.pack(self, stored, n, k)
        return super().pack(stored, n, k)


@register_weight_scheme
@dataclass(frozen=True)
class UInt4Weights(_AffineWeights):
    """uint4 codes in [0, 15] with zero points (mid-range 8 when symmetric), per channel, per tensor
    or per group; weight-only."""

    name: ClassVar[str] = "uint4"
    options: ClassVar[dict[str, str]] = {"granularity": "granularity", "symmetric_weights": "symmetric",
                                         "group_size": "group_size"}
    data_name: ClassVar[str] = "weight_packed"
    group_size: Optional[int] = None  # type: ignore[assignment]
    granularity: str = "per_channel"
    symmetric: bool = True

    def __post_init__(self) -> None:
        _check_choice(self.granularity, _GRANULARITIES, "UInt4Weights.granularity")
        _check_bool(self.symmetric, "UInt4Weights.symmetric")
        if self.group_size is not None:
            _check_group(self.group_size, "UInt4Weights.group_size")
            if self.granularity != "per_channel":
                raise ValueError(f"granularity: uint4 weights with group_size={self.group_size} have one scale "
                                 "per group of each output channel; use granularity='per_channel'")

    @property
    def code_bits(self) -> int:
        return 4

    @property
    def granularity_label(self) -> str:
        return "per_group" if self.group_size is not None else self.granularity

    def describe(self) -> str:
        if self.group_size is not None:
            return f"uint4 weights group {self.group_size}"
        return super().describe()

    def storage_spec(self, n: int, k: int) -> dict[str, tuple[tuple, str]]:
        shape = (n,) if self.group_size is None else (n, -(-k // self.group_size))
        return {"weight_packed": ((n, (k + 1) // 2), "uint8"), "weight_scale": (shape, "float32"),
                "weight_zero_point": (shape, "int32")}

    def quantize(self, w: np.ndarray, scale: Any = None, zero_point: Any = None) -> dict[str, np.ndarray]:
        from .quantize import choose_qparams, quantize

        self._check_given(scale, zero_point)
        if w.size == 0:
            return self.empty_storage(*w.shape)
        if self.group_size is not None:
            return self._affine_groups(w, self.group_size)
        lo, hi = _row_ranges(w, self.granularity == "per_channel")
        s, z = choose_qparams(lo, hi, dtype="uint4", symmetric=self.symmetric)
        q = quantize(w, s, z, dtype="uint4", axis=0)
        return {"weight_packed": np.ascontiguousarray(q.data).view(np.uint8), "weight_scale": s,
                "weight_zero_point": z}

    def dequantize(self, stored: dict[str, np.ndarray], n: int, k: int) -> np.ndarray:
        return self._dequantize_affine(stored, n, k)


@register_weight_scheme
@dataclass(frozen=True)
class NF4Weights(WeightScheme):
    """bitsandbytes' NormalFloat-4 codes times the absmax of each group (block) of ``group_size``
    inputs of a row (64 as in QLoRA; a multiple of 32 for the 4-bit kernel). Runs the fused 4-bit
    kernel: int8 activations per row and group with "dynamic" (the levels rounded to int8),
    exact float32 with "float". ``double_quant``: the block scales are stored as int8 codes with
    one float32 scale per 256 of them and one offset (QLoRA's double quantization, with lowbit's
    symmetric linear int8 codes; about 4.13 instead of 4.5 bits per weight at block 64); the
    kernels read the decoded float32 scales."""

    name: ClassVar[str] = "nf4"
    options: ClassVar[dict[str, str]] = {"group_size": "group_size", "double_quant": "double_quant"}
    data_name: ClassVar[str] = "weight_packed"
    group_size: int = 64  # type: ignore[assignment]
    double_quant: bool = False

    def __post_init__(self) -> None:
        _check_group(self.group_size, "NF4Weights.group_size")
        _check_bool(self.double_quant, "NF4Weights.double_quant")
        if self.group_size % _KERNEL_GROUP:
            raise ValueError(f"group_size: the 4-bit kernel takes nf4 blocks that are multiples of "
                             f"{_KERNEL_GROUP} (32, 64, 128, ...), got {self.group_size}")

    @property
    def code_bits(self) -> int:
        return 4

    @property
    def granularity_label(self) -> str:
        return "per_block"

    def describe(self) -> str:
        return f"nf4 weights block {self.group_size}" + (" double-quant" if self.double_quant else "")

    def supports(self, act: ActivationScheme) -> bool:
        return not act.quantized or isinstance(act, DynamicActivations) and act.per == "row"

    def _activation_reason(self, act: ActivationScheme) -> str:
        return "the NF4 kernels take activations quantized per row and block ('dynamic') or float32"

    def kernel(self, act: ActivationScheme) -> str:
        return "linear_4bit"

    def activation_form(self, act: ActivationScheme) -> str:
        return "dynamic int8 act (per row and group)" if act.quantized else act.describe()

    def storage_spec(self, n: int, k: int) -> dict[str, tuple[tuple, str]]:
        g = -(-k // self.group_size)
        spec = {"weight_packed": ((n, (k + 1) // 2), "uint8")}
        if not self.double_quant:
            return {**spec, "weight_scale": ((n, g), "float32")}
        return {**spec, "weight_scale_codes": ((n, g), "int8"), "weight_scale_scale": ((-(-n * g // 256),), "float32"),
                "weight_scale_offset": ((), "float32")}

    def quantize(self, w: np.ndarray, scale: Any = None, zero_point: Any = None) -> dict[str, np.ndarray]:
        from .formats import _quantize_nf4

        self._check_given(scale, zero_point)
        n, k = w.shape
        if w.size == 0:
            return self.empty_storage(n, k)
        g = self.group_size
        groups = -(-k // g)
        if groups * g != k:  # zero-pad each row to whole blocks: a pad never raises a block's absmax
            w = np.concatenate([w, np.zeros((n, groups * g - k), np.float32)], axis=1)
        q = _quantize_nf4(np.ascontiguousarray(w, np.float32), g, self.double_quant)
        out = {"weight_packed": pack_nibbles(np.ascontiguousarray(q.int_repr()[:, :k]))}
        if not self.double_quant:
            return {**out, "weight_scale": np.asarray(q.scale, np.float32).reshape(n, groups)}
        nested = q.nested  # over the row-major (n, groups) block scales, 256 per nested scale
        return {**out, "weight_scale_codes": np.ascontiguousarray(nested.codes).reshape(n, groups),
                "weight_scale_scale": np.asarray(nested.scale, np.float32),
                "weight_scale_offset": np.asarray(nested.offset, np.float32)}

    def block_scales(self, stored: dict[str, np.ndarray], n: int, k: int) -> np.ndarray:
        """float32 (n, G) block absmax scales (decoded when double-quantized: ``codes *
        scale[i // 256] + offset`` in float32, as :class:`lowbit.formats.NestedScales`)."""
        if not self.double_quant:
            return np.asarray(stored["weight_scale"], np.float32)
        from .formats import NestedScales

        codes = np.asarray(stored["weight_scale_codes"], np.int8)
        nested = NestedScales(codes.reshape(-1), np.asarray(stored["weight_scale_scale"], np.float32),
                              float(np.asarray(stored["weight_scale_offset"], np.float32)))
        return nested.decode().reshape(codes.shape)

    def _codes(self, w: np.ndarray, absmax: np.ndarray) -> np.ndarray:
        """bitsandbytes' NF4 encoding of ``w`` (n, k) with the given absmax (n, k): the code is the
        number of decision thresholds below ``w * float32(1 / absmax)``."""
        from .reference import _nf4_thresholds

        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            inv = np.where(absmax > 0, np.float32(1) / np.where(absmax > 0, absmax, np.float32(1)), np.float32(0))
            y = w.astype(np.float32) * inv.astype(np.float32)
        return np.searchsorted(_nf4_thresholds(), y, side="left").astype(np.uint8)

    def column_quantizer(self, stored: dict[str, np.ndarray], n: int, k: int) -> Any:
        from .formats import NF4_LEVELS

        absmax = np.repeat(self.block_scales(stored, n, k), self.group_size, axis=1)[:, :k]

        def quantize_column(j: int, col: np.ndarray) -> np.ndarray:
            a = absmax[:, j]
            return (NF4_LEVELS[self._codes(col[:, None], a[:, None])[:, 0]] * a).astype(np.float32)

        return quantize_column

    def column_grid(self, stored: dict[str, np.ndarray], n: int, k: int) -> Optional[ColumnGrid]:
        from .formats import NF4_LEVELS
        from .reference import _nf4_thresholds

        return ColumnGrid(np.ascontiguousarray(self.block_scales(stored, n, k), np.float32), None, self.group_size,
                          levels=NF4_LEVELS, thresholds=_nf4_thresholds())

    def requantize(self, w: np.ndarray, stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n, k = w.shape
        absmax = np.repeat(self.block_scales(stored, n, k), self.group_size, axis=1)[:, :k]
        return {**stored, "weight_packed": pack_nibbles(self._codes(w, absmax))}

    def dequantize(self, stored: dict[str, np.ndarray], n: int, k: int) -> np.ndarray:
        from .formats import NF4_LEVELS

        codes = unpack_nibbles(stored["weight_packed"], k, signed=False)
        s = np.repeat(self.block_scales(stored, n, k), self.group_size, axis=1)[:, :k]
        return (NF4_LEVELS[codes] * s).astype(np.float32)

    def pack(self, stored: dict[str, np.ndarray], n: int, k: int) -> Any:
        from .linear_4bit import PackedWeight4

        return PackedWeight4.from_packed_codes(stored["weight_packed"], self.block_scales(stored, n, k),
                                               shape=(n, k), scheme=self)


@dataclass(frozen=True)
class _FloatWeights(WeightScheme):
    granularity_label: ClassVar[str] = "elementwise"  # type: ignore[assignment]

    @property
    def code_bits(self) -> int:
        return 16

    def describe(self) -> str:
        return f"{self.name} weights"

    @property
    def data_name(self) -> str:  # type: ignore[override]
        return f"weight_{self.name}"

    def storage_spec(self, n: int, k: int) -> dict[str, tuple[tuple, str]]:
        return {self.data_name: ((n, k), "float16" if self.name == "fp16" else "bfloat16")}

    def quantize(self, w: np.ndarray, scale: Any = None, zero_point: Any = None) -> dict[str, np.ndarray]:
        from .formats import quantize_format

        self._check_given(scale, zero_point)
        return {self.data_name: np.ascontiguousarray(quantize_format(w, dtype=self.name).data)}

    def dequantize(self, stored: dict[str, np.ndarray], n: int, k: int) -> np.ndarray:
        from .formats import FormatQTensor

        d = np.asarray(stored[self.data_name])
        return FormatQTensor(d, 1.0, 0, self.name, (n, k), code_bits=16).dequantize()


@register_weight_scheme
@dataclass(frozen=True)
class FP16Weights(_FloatWeights):
    """IEEE half-precision weights (round to nearest even), weight-only."""

    name: ClassVar[str] = "fp16"


@register_weight_scheme
@dataclass(frozen=True)
class BF16Weights(_FloatWeights):
    """bfloat16 weights (round to nearest even), weight-only; stored as bfloat16 (uint16 bit
    patterns in NumPy)."""

    name: ClassVar[str] = "bf16"


@dataclass(frozen=True)
class _CodeWeights(WeightScheme):
    """log2 / ternary / binary: codes times one magnitude per channel (or tensor), weight-only."""

    options: ClassVar[dict[str, str]] = {"granularity": "granularity"}
    granularity: str = "per_channel"

    def __post_init__(self) -> None:
        _check_choice(self.granularity, _GRANULARITIES, f"{type(self).__name__}.granularity")

    def _codes_shape(self, n: int, k: int) -> tuple:
        raise NotImplementedError

    def _options(self) -> dict[str, Any]:
        return {}

    def storage_spec(self, n: int, k: int) -> dict[str, tuple[tuple, str]]:
        return {"weight_codes": (self._codes_shape(n, k), "uint8"),
                "weight_scale": ((n,) if self.granularity == "per_channel" else (), "float32")}

    def quantize(self, w: np.ndarray, scale: Any = None, zero_point: Any = None) -> dict[str, np.ndarray]:
        from .formats import quantize_format

        self._check_given(scale, zero_point)
        if w.size == 0:
            return self.empty_storage(*w.shape)
        q = quantize_format(w, dtype=self.name, per_channel=self.granularity == "per_channel", **self._options())
        shape = (w.shape[0],) if self.granularity == "per_channel" else ()
        return {"weight_codes": np.ascontiguousarray(q.data),
                "weight_scale": np.asarray(q.scale, np.float32).reshape(shape)}

    def dequantize(self, stored: dict[str, np.ndarray], n: int, k: int) -> np.ndarray:
        from .formats import FormatQTensor

        s = np.asarray(stored["weight_scale"], np.float32)
        axis = 0 if s.ndim == 1 else None
        q = FormatQTensor(np.asarray(stored["weight_codes"]), s if axis == 0 else float(s), 0, self.name, (n, k),
                          axis=axis, code_bits=self.code_bits)
        return q.dequantize()


@register_weight_scheme
@dataclass(frozen=True)
class Log2Weights(_CodeWeights):
    """Sign + power-of-two codes (``bits`` 4 or 8) times one clipping magnitude per channel or
    tensor, weight-only."""

    name: ClassVar[str] = "log2"
    options: ClassVar[dict[str, str]] = {"granularity": "granularity", "log2_bits": "bits"}
    bits: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.bits, bool) or self.bits not in (4, 8):
            raise ValueError(f"Log2Weights.bits: expected 4 or 8, got {self.bits!r}")

    @property
    def code_bits(self) -> int:
        return self.bits

    def describe(self) -> str:
        return f"log2 ({self.bits}-bit) weights {self.granularity}"

    def _codes_shape(self, n: int, k: int) -> tuple:
        return (n, (k + 1) // 2 if self.bits == 4 else k)

    def _options(self) -> dict[str, Any]:
        return {"bits": self.bits}


@register_weight_scheme
@dataclass(frozen=True)
class TernaryWeights(_CodeWeights):
    """{-a, 0, +a} codes (TWN threshold 0.7 mean|w|), four per byte, weight-only."""

    name: ClassVar[str] = "ternary"

    @property
    def code_bits(self) -> int:
        return 2

    def _codes_shape(self, n: int, k: int) -> tuple:
        return (-(-n * k // 4),)


@register_weight_scheme
@dataclass(frozen=True)
class BinaryWeights(_CodeWeights):
    """{-a, +a} sign codes, eight per byte, weight-only."""

    name: ClassVar[str] = "binary"

    @property
    def code_bits(self) -> int:
        return 1

    def _codes_shape(self, n: int, k: int) -> tuple:
        return (-(-n * k // 8),)


def weight_scheme(value: Any, name: str = "weight", **options: Any) -> WeightScheme:
    """A :class:`WeightScheme` from a scheme, a shorthand name in :data:`WEIGHT_SCHEMES` or a
    :meth:`~WeightScheme.to_dict` form. ``options`` are the QuantConfig keywords (``group_size``,
    ``granularity``, ``symmetric_weights``, ``log2_bits``, ``double_quant``); None means "not
    given". An option the format does not take raises ValueError, unless it is the default value.

    Example:
        >>> weight_scheme("log2", log2_bits=8)
        Log2Weights(granularity='per_channel', bits=8)
    """
    given = {k: v for k, v in options.items() if v is not None}
    if isinstance(value, dict):
        d = dict(value)
        fmt = d.pop("format", None)
        cls = _scheme_class(fmt, name)
        return cls(**d)
    if isinstance(value, WeightScheme):
        if given:
            raise ValueError(f"{name}: options {sorted(given)} are given with the scheme object {value!r}; "
                             "set them on the scheme instead")
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a format name or a WeightScheme, got {type(value).__name__}")
    cls = _scheme_class(value, name)
    kwargs = {}
    defaults = {"granularity": "per_channel", "symmetric_weights": True, "double_quant": False}
    for opt, v in given.items():
        if opt in cls.options:
            kwargs[cls.options[opt]] = v
        elif opt == "group_size":
            grouped = sorted(n for n, c in WEIGHT_SCHEMES.items() if "group_size" in c.options)
            raise ValueError(f"group_size: weight={value!r} has no group scales (group_size is for "
                             f"{', '.join(grouped)}); use group_size=None")
        elif defaults.get(opt, object()) != v and not (opt == "log2_bits" and v == 4):
            raise ValueError(f"{opt}: not an option of {value!r} weights (they take "
                             f"{', '.join(cls.options) or 'no options'})")
    return cls(**kwargs)


def _scheme_class(fmt: Any, name: str) -> type:
    if fmt not in WEIGHT_SCHEMES:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, WEIGHT_SCHEMES))} or a WeightScheme, "
                         f"got {fmt!r}" + close_matches(fmt, WEIGHT_SCHEMES))
    return WEIGHT_SCHEMES[fmt]


def weight_scheme_from_key(key: str) -> WeightScheme:
    """Inverse of :attr:`WeightScheme.key` (cached: the torch ops pass keys on every call)."""
    hit = _KEY_CACHE.get(key)
    if hit is None:
        hit = weight_scheme(json.loads(key))
        _KEY_CACHE[key] = hit
    return hit


_KEY_CACHE: dict[str, WeightScheme] = {}

WeightLike = Union[str, WeightScheme, dict]
ActivationLike = Union[str, None, ActivationScheme, dict]
