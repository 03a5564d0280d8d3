"""Error and size metrics for comparing a quantized tensor or model with its float original.

Public API; NumPy arrays or CPU torch tensors in, Python floats out. The reductions over both
arrays (sum of squared differences, dot products, max |difference|) run in one pass of the C++
``error_stats_f32`` kernel, accumulating in double: results match the NumPy float64 formulas to a
relative 1e-12 (inputs are rounded to float32 first, as everywhere in lowbit). torch is never
imported here.

Example:
    >>> import numpy as np, lowbit
    >>> x = np.float32([1.0, 2.0, 3.0, 4.0])
    >>> round(lowbit.metrics.mse(x, x + 0.5), 6)
    0.25
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _core
from ._array import as_numpy

__all__ = [
    "MIB",
    "compression_ratio",
    "cosine_similarity",
    "format_bytes",
    "kl_divergence",
    "max_abs_error",
    "model_nbytes",
    "mse",
    "sqnr",
    "top1_agreement",
]


def _pair(reference: Any, test: Any) -> tuple[np.ndarray, np.ndarray]:
    a = as_numpy(reference, "reference")
    b = as_numpy(test, "test")
    if a.shape != b.shape:
        raise ValueError(f"test: expected shape {a.shape} like reference, got {b.shape}")
    for name, v in (("reference", a), ("test", b)):
        if v.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected real numbers, got dtype {v.dtype}")
    return (np.ascontiguousarray(a, dtype=np.float32).reshape(-1),
            np.ascontiguousarray(b, dtype=np.float32).reshape(-1))


class _ErrorStats:
    """Running error statistics of (reference, test) pairs: add batches, read the metrics.

    Private building block of the metrics below and of :func:`lowbit.compare` (which streams
    layer outputs batch by batch); sums of batches are sums of the whole, so the result does not
    depend on how the data was split (up to double rounding).
    """

    __slots__ = ("max", "n", "saa", "sab", "sbb", "sdd")

    def __init__(self) -> None:
        self.n, self.sdd, self.saa, self.sbb, self.sab, self.max = 0, 0.0, 0.0, 0.0, 0.0, 0.0

    def add(self, reference: Any, test: Any) -> _ErrorStats:
        a, b = _pair(reference, test)
        sdd, saa, sbb, sab, mx = _core.error_stats_f32(a, b)
        self.n += a.size
        self.sdd += sdd
        self.saa += saa
        self.sbb += sbb
        self.sab += sab
        self.max = mx if (math.isnan(mx) or mx > self.max) else self.max
        return self

    @property
    def mse(self) -> float:
        return self.sdd / self.n if self.n else math.nan

    @property
    def sqnr(self) -> float:
        if math.isnan(self.sdd) or math.isnan(self.saa):
            return math.nan
        if self.sdd == 0.0:
            return math.inf
        if self.saa == 0.0:
            return -math.inf
        return 10.0 * math.log10(self.saa / self.sdd)

    @property
    def cosine(self) -> float:
        if self.saa == 0.0 and self.sbb == 0.0:
            return 1.0
        if self.saa == 0.0 or self.sbb == 0.0:
            return 0.0
        return self.sab / (math.sqrt(self.saa) * math.sqrt(self.sbb))


def mse(reference: Any, test: Any) -> float:
    """Mean squared error ``mean((reference - test)**2)`` (NaN for empty inputs).

    Example:
        >>> lowbit.metrics.mse(np.zeros(4, np.float32), np.ones(4, np.float32))
        1.0
    """
    return _ErrorStats().add(reference, test).mse


def sqnr(reference: Any, test: Any) -> float:
    """Signal-to-quantization-noise ratio of ``test`` approximating ``reference``, in dB:
    ``10 * log10(sum(reference**2) / sum((reference - test)**2))``.

    ``inf`` when the two are equal (including all zeros); ``-inf`` for a zero reference and a
    nonzero error; NaN if an input holds NaN. Higher is better: int8 typically gives 35-45 dB.

    Example:
        >>> x = np.float32([3.0, 4.0])
        >>> round(lowbit.metrics.sqnr(x, x * 1.1), 2)
        20.0
    """
    return _ErrorStats().add(reference, test).sqnr


def cosine_similarity(reference: Any, test: Any) -> float:
    """Cosine of the angle between the two arrays, flattened: ``<a, b> / (|a| |b|)``.

    1.0 when both are all zeros, 0.0 when exactly one is.

    Example:
        >>> lowbit.metrics.cosine_similarity(np.float32([1, 0]), np.float32([1, 1]))
        0.7071067811865475
    """
    return _ErrorStats().add(reference, test).cosine


def max_abs_error(reference: Any, test: Any) -> float:
    """``max(|reference - test|)``; 0.0 for empty inputs, NaN if any difference is NaN.

    Example:
        >>> lowbit.metrics.max_abs_error(np.float32([1, 2]), np.float32([1.5, 0]))
        2.0
    """
    return _ErrorStats().add(reference, test).max


def _log_softmax(z: np.ndarray, axis: int) -> np.ndarray:
    z = z - np.max(z, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def kl_divergence(reference_logits: Any, test_logits: Any, *, axis: int = -1) -> float:
    """KL(softmax(reference) || softmax(test)) in nats, averaged over all other axes.

    Takes logits (pre-softmax outputs), e.g. classifier outputs of the float and the quantized
    model. Computed in float64 with log-softmax, so large logits do not overflow.

    Example:
        >>> z = np.float32([[2.0, 0.0, -1.0]])
        >>> lowbit.metrics.kl_divergence(z, z)
        0.0
    """
    a = as_numpy(reference_logits, "reference_logits").astype(np.float64)
    b = as_numpy(test_logits, "test_logits").astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"test_logits: expected shape {a.shape} like reference_logits, got {b.shape}")
    if a.ndim == 0 or a.size == 0:
        raise ValueError("reference_logits: expected at least one class axis with data")
    la, lb = _log_softmax(a, axis), _log_softmax(b, axis)
    kl = np.sum(np.exp(la) * (la - lb), axis=axis)
    return float(max(0.0, np.mean(kl)))


def top1_agreement(reference_logits: Any, test_logits: Any, *, axis: int = -1) -> float:
    """Fraction (0..1) of samples whose argmax along ``axis`` is the same in both outputs.

    Example:
        >>> lowbit.metrics.top1_agreement(np.float32([[1, 2], [3, 0]]), np.float32([[0, 2], [0, 3]]))
        0.5
    """
    a = as_numpy(reference_logits, "reference_logits")
    b = as_numpy(test_logits, "test_logits")
    if a.shape != b.shape:
        raise ValueError(f"test_logits: expected shape {a.shape} like reference_logits, got {b.shape}")
    if a.ndim == 0 or a.size == 0:
        raise ValueError("reference_logits: expected at least one class axis with data")
    return float(np.mean(np.argmax(a, axis=axis) == np.argmax(b, axis=axis)))


MIB = 1 << 20  # the one size unit lowbit prints


def format_bytes(n: float) -> str:
    """``n`` bytes in MiB (2**20 bytes), labelled: the one size unit lowbit prints.

    Two decimals from 1 MiB up, three significant digits below.

    Example:
        >>> format_bytes(3 << 20), format_bytes(150_000), format_bytes(90_859_520), format_bytes(64)
        ('3.00 MiB', '0.143 MiB', '86.65 MiB', '0.0000610 MiB')
    """
    v = n / MIB
    if not math.isfinite(v):
        return f"{v} MiB"
    if abs(v) >= 1 or v == 0:
        return f"{v:.2f} MiB"
    return f"{v:.{min(9, 2 - math.floor(math.log10(abs(v))))}f} MiB"  # 3 significant digits, no exponent


def model_nbytes(model: Any) -> int:
    """Storage bytes of a model's weights: every parameter and buffer of a ``torch.nn.Module``
    (shared tensors counted once; lowbit's quantized layers store their weights compactly, e.g.
    4-bit codes two per byte, so this is their real size); also accepts a NumPy array, a
    :class:`lowbit.QTensor` (its packed size) or a dict / list of those.

    Example:
        >>> lowbit.metrics.model_nbytes({"w": np.zeros((4, 4), np.float32)})
        64
    """
    if isinstance(model, np.ndarray):
        return int(model.nbytes)
    if hasattr(model, "named_modules") and hasattr(model, "parameters"):
        seen: set[int] = set()
        total = 0
        for m in model.modules():
            tensors = list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
            for t in tensors:
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                total += t.numel() * t.element_size()
        return total
    if isinstance(model, dict):
        return sum(model_nbytes(v) for v in model.values())
    if isinstance(model, (list, tuple)):
        return sum(model_nbytes(v) for v in model)
    nb = getattr(model, "nbytes", None)
    if isinstance(nb, int):
        return nb
    a = as_numpy(model, "model")
    return int(a.nbytes)


def compression_ratio(float_model: Any, quant_model: Any) -> float:
    """``model_nbytes(float_model) / model_nbytes(quant_model)``; either may also be a byte count.

    Example:
        >>> lowbit.metrics.compression_ratio(4000, 1000)
        4.0
    """
    before = float_model if isinstance(float_model, int) else model_nbytes(float_model)
    after = quant_model if isinstance(quant_model, int) else model_nbytes(quant_model)
    if after <= 0:
        raise ValueError("quant_model: has no bytes")
    return before / after
