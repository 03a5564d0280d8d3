"""Error-minimizing weight scales: a clipping search per channel or group. Public API layer;
NumPy only.

Round-to-nearest takes each scale from the absolute maximum, so one outlier stretches the grid for
the whole channel or group. Shrinking the scale by a ratio ``r`` clips the outliers and refines the
grid for everything else; for each channel / group the ratio on the grid ``linspace(min_ratio, 1,
grid)`` that minimizes the squared rounding error of the weights (the "mse" criterion of the
observers, applied to weights) is kept. The weights are then rounded with those scales. Per-tensor
weights choose one ratio for the whole tensor.

Example:
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((8, 64)).astype(np.float32)
    >>> w[0, 0] = 12.0  # an outlier
    >>> stored, stats = mse_clip_quantize(w, lowbit.Int4Weights(group_size=32))
    >>> bool(stats["weight_mse"] < stats["weight_mse_rtn"])
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ._array import as_float_array, as_numpy
from .schemes import WeightScheme

__all__ = ["MSEClip", "mse_clip_quantize"]


@dataclass(frozen=True)
class MSEClip:
    """Options of the clipping search (the ``algorithm`` of a :class:`lowbit.QuantConfig`).

    Attributes:
        grid: ratios tried per channel / group (20).
        min_ratio: the smallest ratio of the round-to-nearest scale tried (0.5).
    """

    grid: int = 20
    min_ratio: float = 0.5

    name = "mse"

    def __post_init__(self) -> None:
        if isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < 1:
            raise ValueError(f"MSEClip.grid: expected a positive int, got {self.grid!r}")
        if not (isinstance(self.min_ratio, (int, float)) and 0 < self.min_ratio <= 1):
            raise ValueError(f"MSEClip.min_ratio: expected a number in (0, 1], got {self.min_ratio!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": "mse", "grid": self.grid, "min_ratio": self.min_ratio}


def _group_sums(err: np.ndarray, group: Optional[int], per_tensor: bool) -> np.ndarray:
    """Squared errors (n, k) summed like the scales are shaped: (n,), (n, G) or ()."""
    if per_tensor:
        return err.sum()
    if group is None:
        return err.sum(axis=1)
    return np.add.reduceat(err, np.arange(0, err.shape[1], group), axis=1)


def mse_clip_quantize(
    w: Any, scheme: WeightScheme, options: Optional[MSEClip] = None
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Rounds a float weight (n, k) into ``scheme``'s stored form with error-minimizing scales.

    Args:
        w: float (n, k) weight, finite.
        scheme: a weight scheme with fixed-parameter rounding and a float32 ``weight_scale``
            (int8, int4, uint4, nf4 without double quantization).
        options: :class:`MSEClip` (defaults when None).

    Returns:
        ``(stored, stats)`` with ``stats = {"weight_mse_rtn", "weight_mse"}`` (mean squared weight
        error of round-to-nearest and of the chosen scales).
    """
    opts = options or MSEClip()
    a = np.ascontiguousarray(as_float_array(as_numpy(w, "w"), "w"), np.float32)
    if a.ndim != 2:
        raise ValueError(f"w: expected a 2-D (n, k) weight, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("w: weights must be finite (found NaN or inf)")
    n, k = a.shape
    rtn = scheme.quantize(a)
    if "weight_scale" not in rtn or getattr(scheme, "double_quant", False):
        raise ValueError(f"MSE clipping: {scheme.describe()} have no float32 scales to search")
    scheme.requantize(a, rtn)  # raises for schemes without fixed-parameter rounding
    if a.size == 0:
        return rtn, {"weight_mse_rtn": 0.0, "weight_mse": 0.0}
    per_tensor = getattr(scheme, "granularity", "per_channel") == "per_tensor"
    s0 = np.asarray(rtn["weight_scale"], np.float32)
    best_err = best_scale = None
    for r in np.linspace(opts.min_ratio, 1.0, opts.grid, dtype=np.float32)[::-1]:  # 1.0 first: ties keep RTN
        cand = {**rtn, "weight_scale": (s0 * r).astype(np.float32)}
        q = scheme.requantize(a, cand)
        err = _group_sums((scheme.dequantize(q, n, k) - a).astype(np.float64) ** 2, scheme.group_size, per_tensor)
        if best_err is None:
            best_err, best_scale = err, cand["weight_scale"].copy()
            continue
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_scale = np.where(better, cand["weight_scale"], best_scale).astype(np.float32)
    stored = scheme.requantize(a, {**rtn, "weight_scale": best_scale})
    mse_rtn = float(np.mean((scheme.dequantize(rtn, n, k) - a).astype(np.float64) ** 2))
    mse = float(np.mean((scheme.dequantize(stored, n, k) - a).astype(np.float64) ** 2))
    return stored, {"weight_mse_rtn": mse_rtn, "weight_mse": mse}
