"""Activation-aware scale migration (SmoothQuant, AWQ) and bias correction: the NumPy math.
Public API layer; NumPy only (the model transforms live in :mod:`lowbit.interop.equalize`).

A linear layer ``y = W x`` computes the same with ``x' = x / s`` and ``W' = W diag(s)`` for any
positive per-input-channel ``s``. Both algorithms choose ``s`` so that the quantized product
loses less; the division is then folded into the op that produces ``x`` (a LayerNorm's weight and
bias, a preceding Linear's output rows) or kept as an explicit input scale.

- **SmoothQuant** (Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization
  for Large Language Models", ICML 2023): ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` moves
  activation outliers into the weights, so per-tensor int8 activations (w8a8) lose less.
- **AWQ** (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
  Acceleration", MLSys 2024): ``s_j = mean|X_j|^alpha`` (normalized so that
  ``max(s) min(s) = 1``) with alpha on a grid in [0, 1] chosen to minimize the layer's output
  error ``tr((W - Q(W diag s) diag(s)^-1) H (...)^T) / n``, ``H = E[x x^T]`` (alpha = 0 is
  round-to-nearest, so the search never does worse on the calibration inputs).
- **Bias correction** (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
  Correction", ICCV 2019; the empirical variant): the expected output shift
  ``E[(W - Q) x] = (W - Q) E[x]`` is added to the bias (:func:`bias_correction`). ``quantize_model``
  measures the shift on the model instead, ``E[y_float] - E[y_quant]`` layer by layer, which also
  covers the quantized layers before it and activation rounding.

Example:
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((512, 64)).astype(np.float32)
    >>> x[:, 3] *= 30  # an outlier channel
    >>> w = (rng.standard_normal((32, 64)) * 0.1).astype(np.float32)
    >>> stats = ChannelStats(64); stats.update(x)
    >>> h = lowbit.HessianObserver(64); h.update(x)
    >>> s, info = awq_search([w], stats, h.hessian(), lowbit.Int4Weights(group_size=32))
    >>> bool(info["loss"] <= info["loss_rtn"])
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ._array import as_float_array, as_numpy
from .schemes import WeightScheme

__all__ = ["AWQ", "ChannelStats", "SmoothQuant", "awq_search", "bias_correction", "smoothquant_scales",
           "smoothquant_search"]


def _alpha_grid(value: Any, where: str) -> tuple[float, ...]:
    if isinstance(value, bool):
        raise TypeError(f"{where}: expected an int (grid points) or a sequence of alphas, got a bool")
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise ValueError(f"{where}: expected at least 1 grid point, got {value}")
        return tuple(float(a) for a in np.linspace(0.0, 1.0, int(value))) if value > 1 else (0.5,)
    try:
        grid = tuple(float(a) for a in value)
    except TypeError:
        raise TypeError(f"{where}: expected an int or a sequence of numbers, got {type(value).__name__}") from None
    if not grid or not all(0.0 <= a <= 1.0 for a in grid):
        raise ValueError(f"{where}: alphas must lie in [0, 1] (and at least one), got {grid}")
    return grid


@dataclass(frozen=True)
class AWQ:
    """AWQ options (the ``algorithm`` of a :class:`lowbit.QuantConfig`, or :func:`lowbit.apply_awq`).

    Attributes:
        alpha_grid: the exponents tried, an int (that many points on ``linspace(0, 1)``, 20) or a
            sequence of numbers in [0, 1].
        clip: after scaling, round with error-minimizing scales (:class:`lowbit.MSEClip`) instead
            of round-to-nearest ("AWQ + mse"). As in the paper, the scales are searched first (with
            round-to-nearest), then the clipping. AWQ needs only ``mean|x|`` and ``E[x x^T]`` of
            each input, both streamed (no calibration rows are kept).
        gptq: then round the scaled weights with GPTQ (:class:`lowbit.GPTQ`, layer by layer, starting
            from the MSE scales when ``clip``) instead of round-to-nearest ("AWQ + GPTQ").
    """

    alpha_grid: Any = 20
    clip: bool = False
    gptq: bool = False

    name = "awq"

    def __post_init__(self) -> None:
        grid = _alpha_grid(self.alpha_grid, "AWQ.alpha_grid")
        object.__setattr__(self, "alpha_grid", grid if not isinstance(self.alpha_grid, int) else self.alpha_grid)
        for field in ("clip", "gptq"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"AWQ.{field}: expected a bool, got {type(getattr(self, field)).__name__}")

    @property
    def alphas(self) -> tuple[float, ...]:
        return _alpha_grid(self.alpha_grid, "AWQ.alpha_grid")

    def to_dict(self) -> dict[str, Any]:
        grid = self.alpha_grid if isinstance(self.alpha_grid, int) else list(self.alpha_grid)
        return {"name": "awq", "alpha_grid": grid, "clip": self.clip, "gptq": self.gptq}


@dataclass(frozen=True)
class SmoothQuant:
    """SmoothQuant options (the ``algorithm`` of a :class:`lowbit.QuantConfig`, or
    :func:`lowbit.smooth_quant`).

    Attributes:
        alpha: migration strength in [0, 1] (0.5); ignored when ``alpha_grid`` is given.
        alpha_grid: None, or an int / sequence of alphas: per group of layers sharing an input, the
            alpha whose simulated w8a8 output error on sampled calibration rows is smallest.
        sample_rows: calibration rows kept per layer input (seeded reservoir) for the grid search (512).
        seed: seed of the reservoir sampling (0).
        holdout: in the grid search, take the scales and the static range from the first half of
            each calibration batch's rows and measure the error on the second half (False: fit and
            score on the same rows). Static ranges must hold for inputs never seen: an alpha that
            flattens every channel to its calibrated maximum leaves no headroom, wins on the rows it
            was fitted on and clips the next sentence (all-MiniLM-L6-v2 w8a8, FFN output layers at
            alpha 1: cosine 0.996 on the calibration sentences, 0.968 on the test sentences). On
            MiniLM the held-out half does not expose it (the test sentences are another domain than
            the docstring calibration sentences): worst test cosine 0.9850 with, 0.9837 without.
        min_scale: the smallest scale (0.0: the paper's formula). Scales below 1 amplify channels
            that were quiet in calibration; when such a channel fires on other inputs the static
            range clips it (all-MiniLM-L6-v2's FFN output inputs: channels with a calibrated maximum
            of 0.17 reach 3.3 on the test sentences, amplified 2.3x by s = 0.44, twice the
            calibrated range). 1.0 only divides channels down (outliers), never up.
    """

    alpha: float = 0.5
    alpha_grid: Any = None
    sample_rows: int = 512
    seed: int = 0
    holdout: bool = False
    min_scale: float = 0.0

    name = "smoothquant"

    def __post_init__(self) -> None:
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha <= 1:
            raise ValueError(f"SmoothQuant.alpha: expected a number in [0, 1], got {self.alpha!r}")
        if self.alpha_grid is not None:
            grid = _alpha_grid(self.alpha_grid, "SmoothQuant.alpha_grid")
            if not isinstance(self.alpha_grid, int):
                object.__setattr__(self, "alpha_grid", grid)
        if isinstance(self.sample_rows, bool) or not isinstance(self.sample_rows, int) or self.sample_rows < 1:
            raise ValueError(f"SmoothQuant.sample_rows: expected a positive int, got {self.sample_rows!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"SmoothQuant.seed: expected an int, got {type(self.seed).__name__}")
        if not isinstance(self.holdout, bool):
            raise TypeError(f"SmoothQuant.holdout: expected a bool, got {type(self.holdout).__name__}")
        if isinstance(self.min_scale, bool) or not isinstance(self.min_scale, (int, float)) or not (
                0 <= self.min_scale <= 1e5):
            raise ValueError(f"SmoothQuant.min_scale: expected a number >= 0, got {self.min_scale!r}")

    @property
    def alphas(self) -> tuple[float, ...]:
        if self.alpha_grid is None:
            return (float(self.alpha),)
        return _alpha_grid(self.alpha_grid, "SmoothQuant.alpha_grid")

    def to_dict(self) -> dict[str, Any]:
        grid = self.alpha_grid if self.alpha_grid is None or isinstance(self.alpha_grid, int) else list(self.alpha_grid)
        return {"name": "smoothquant", "alpha": self.alpha, "alpha_grid": grid, "sample_rows": self.sample_rows,
                "seed": self.seed, "holdout": self.holdout,
                "min_scale": self.min_scale}


class ChannelStats:
    """Streams per-input-channel statistics of a layer's inputs: ``max|x_j|``, ``sum |x_j|``,
    ``sum x_j`` (float64) and a row count; optionally a seeded reservoir sample of rows. Bounded
    state, mergeable across batches and processes (the maxima and sums exactly up to float64
    rounding; merged reservoirs are a sample of the union, not the same rows as one pass).

    Example:
        >>> st = ChannelStats(2); st.update(np.float32([[1, -4], [-3, 2]]))
        >>> st.absmax, st.mean_abs, st.mean
        (array([3., 4.]), array([2., 3.]), array([-1., -1.]))
    """

    def __init__(self, k: int, sample_rows: int = 0, seed: int = 0) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        if isinstance(sample_rows, bool) or not isinstance(sample_rows, (int, np.integer)) or sample_rows < 0:
            raise ValueError(f"sample_rows: expected an int >= 0, got {sample_rows!r}")
        self.k = int(k)
        self.count = 0
        self._absmax = np.zeros(self.k, np.float64)
        self._min = np.full(self.k, np.inf)
        self._max = np.full(self.k, -np.inf)
        self._sum_abs = np.zeros(self.k, np.float64)
        self._sum = np.zeros(self.k, np.float64)
        self.sample_rows = int(sample_rows)
        self._rng = np.random.default_rng(seed)
        self._sample = np.zeros((0, self.k), np.float32)
        self._keys = np.zeros(0, np.float64)

    def update(self, x: Any) -> None:
        """Adds inputs ``x`` of shape (..., k) (NumPy or CPU torch); non-finite values are refused."""
        a = as_float_array(as_numpy(x, "x"), "x")
        if a.ndim == 0 or a.shape[-1] != self.k:
            raise ValueError(f"x: expected shape (..., {self.k}), got {a.shape}")
        rows = a.reshape(-1, self.k)
        if not np.all(np.isfinite(rows)):
            raise ValueError("x: calibration inputs must be finite (found NaN or inf)")
        if rows.shape[0] == 0:
            return
        r64 = rows.astype(np.float64)
        ab = np.abs(r64)
        np.maximum(self._absmax, ab.max(axis=0), out=self._absmax)
        np.minimum(self._min, r64.min(axis=0), out=self._min)
        np.maximum(self._max, r64.max(axis=0), out=self._max)
        self._sum_abs += ab.sum(axis=0)
        self._sum += r64.sum(axis=0)
        self.count += rows.shape[0]
        if self.sample_rows:  # reservoir by random keys: keep the rows with the largest keys
            keys = self._rng.random(rows.shape[0])
            allk = np.concatenate([self._keys, keys])
            alls = np.concatenate([self._sample, rows.astype(np.float32)])
            keep = np.argsort(-allk, kind="stable")[: self.sample_rows]
            self._keys, self._sample = allk[keep], alls[keep]

    def merge(self, other: ChannelStats) -> ChannelStats:
        """Adds another ChannelStats (same k) into this one; returns self."""
        if not isinstance(other, ChannelStats) or other.k != self.k:
            raise ValueError("other: expected a ChannelStats of the same k")
        np.maximum(self._absmax, other._absmax, out=self._absmax)
        np.minimum(self._min, other._min, out=self._min)
        np.maximum(self._max, other._max, out=self._max)
        self._sum_abs += other._sum_abs
        self._sum += other._sum
        self.count += other.count
        if self.sample_rows:
            allk = np.concatenate([self._keys, other._keys])
            alls = np.concatenate([self._sample, other._sample])
            keep = np.argsort(-allk, kind="stable")[: self.sample_rows]
            self._keys, self._sample = allk[keep], alls[keep]
        return self

    def _check(self) -> None:
        if self.count == 0:
            raise ValueError("ChannelStats: no inputs observed (the layer never ran on the calibration data)")

    @property
    def absmax(self) -> np.ndarray:
        """``max |x_j|`` per channel (float64 (k,))."""
        self._check()
        return self._absmax.copy()

    @property
    def min(self) -> np.ndarray:
        """``min x_j`` per channel (float64 (k,))."""
        self._check()
        return self._min.copy()

    @property
    def max(self) -> np.ndarray:
        """``max x_j`` per channel (float64 (k,))."""
        self._check()
        return self._max.copy()

    @property
    def mean_abs(self) -> np.ndarray:
        """``mean |x_j|`` per channel (float64 (k,))."""
        self._check()
        return self._sum_abs / self.count

    @property
    def mean(self) -> np.ndarray:
        """``mean x_j`` per channel (float64 (k,)): the ``E[x]`` of bias correction."""
        self._check()
        return self._sum / self.count

    @property
    def sample(self) -> np.ndarray:
        """The reservoir sample (float32 (rows, k), at most ``sample_rows``)."""
        return self._sample.copy()


def _positive(s: np.ndarray) -> np.ndarray:
    """Scales clamped into a safe positive range (dead channels get 1)."""
    s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
    return np.clip(s, 1e-5, 1e5)


def smoothquant_scales(act_absmax: Any, weight_absmax: Any, alpha: float = 0.5,
                       min_scale: float = 0.0) -> np.ndarray:
    """SmoothQuant's per-input-channel scales ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``.

    Args:
        act_absmax: (k,) ``max |x_j|`` over the calibration inputs.
        weight_absmax: (k,) ``max |W_ij|`` over the rows of every layer reading that input.
        alpha: migration strength in [0, 1].
        min_scale: scales below it are raised to it (0: none; see :class:`SmoothQuant`).

    Returns:
        float64 (k,) positive scales (channels with a zero maximum get 1): divide the inputs by
        them, multiply the weight columns by them.

    Example:
        >>> smoothquant_scales(np.array([16.0, 1.0]), np.array([1.0, 1.0]), 0.5)
        array([4., 1.])
    """
    a = np.asarray(act_absmax, np.float64)
    w = np.asarray(weight_absmax, np.float64)
    if a.ndim != 1 or w.shape != a.shape:
        raise ValueError(f"act_absmax/weight_absmax: expected two (k,) arrays, got {a.shape} and {w.shape}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha: expected a number in [0, 1], got {alpha!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.power(a, alpha) / np.power(w, 1 - alpha)
    if isinstance(min_scale, bool) or not isinstance(min_scale, (int, float)) or min_scale < 0:
        raise ValueError(f"min_scale: expected a number >= 0, got {min_scale!r}")
    dead = (a <= 0) | (w <= 0)
    return _positive(np.maximum(np.where(dead, 1.0, s), min_scale))


def _fake_act(x: np.ndarray, per: str, lo_hi: Optional[tuple[float, float]]) -> np.ndarray:
    """Asymmetric uint8 fake quantization over the range ``lo_hi`` (the calibrated range of the
    whole input), per tensor from x's own range (``lo_hi`` None), or per row."""
    if per == "row":
        lo = np.minimum(x.min(axis=1, keepdims=True), 0)
        hi = np.maximum(x.max(axis=1, keepdims=True), 0)
    elif lo_hi is None:
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    else:
        lo, hi = min(lo_hi[0], 0.0), max(lo_hi[1], 0.0)
    scale = np.maximum((hi - lo) / 255.0, 1e-12)
    zp = np.round(-lo / scale)
    return (np.clip(np.round(x / scale) + zp, 0, 255) - zp) * scale


def smoothquant_search(
    weights: Sequence[Any], stats: ChannelStats, scheme: Any, alphas: Sequence[float],
    per: str = "static", holdout: Optional[tuple[ChannelStats, ChannelStats]] = None, min_scale: float = 0.0,
) -> tuple[np.ndarray, dict[str, float]]:
    """SmoothQuant scales for layers sharing one input, with alpha chosen on ``alphas`` by the
    simulated w8a8 output error ``sum_l ||X W_l^T - Qa(X / s) Qw(W_l diag s)^T||^2`` on the
    reservoir sample of ``stats`` (activations: asymmetric 8-bit over the calibrated range of
    ``X / s`` with ``per="static"``, over each sampled batch's range with ``per="tensor"`` (dynamic per
    tensor), or per row with ``per="row"``). One alpha: no search, no sample needed.

    With ``holdout = (fit, held)`` (two ChannelStats of disjoint calibration rows, ``held`` with a
    sample) the candidate scales and the static range come from ``fit`` and the error is measured on
    ``held``'s sample: the search scores how each alpha does on inputs its range was not fitted to.
    The returned scales are those of the chosen alpha on ``stats`` (all rows).

    Returns:
        ``(s, {"alpha", "loss_rtn", "loss"})``: the scales and the sample's output MSE without
        smoothing and with the chosen alpha (NaN when not searched).
    """
    ws = [np.asarray(as_float_array(as_numpy(w, "weights"), "weights"), np.float32) for w in weights]
    if not ws or any(w.ndim != 2 or w.shape[1] != stats.k for w in ws):
        raise ValueError(f"weights: expected 2-D (n, {stats.k}) weights")
    schemes = list(scheme) if isinstance(scheme, (list, tuple)) else [scheme] * len(ws)
    wmax = np.max([np.abs(w).max(axis=0) for w in ws], axis=0).astype(np.float64)
    amax, xmin, xmax = stats.absmax, stats.min, stats.max
    if per not in ("static", "tensor", "row"):
        raise ValueError(f"per: expected 'static', 'tensor' or 'row', got {per!r}")
    alphas = list(alphas)
    if len(alphas) == 1:
        return smoothquant_scales(amax, wmax, alphas[0], min_scale), {"alpha": alphas[0], "loss_rtn": float("nan"),
                                                            "loss": float("nan")}
    if holdout is not None:
        fit, held = holdout
        if not (isinstance(fit, ChannelStats) and isinstance(held, ChannelStats) and fit.k == held.k == stats.k):
            raise ValueError(f"holdout: expected two ChannelStats of k = {stats.k}")
        if fit.count == 0 or held.count == 0:
            raise ValueError("holdout: the SmoothQuant alpha search needs calibration rows in both halves (at "
                             "least 2 rows per batch), or SmoothQuant(holdout=False)")
        amax_fit, xmin, xmax, x = fit.absmax, fit.min, fit.max, held.sample.astype(np.float64)
    else:
        amax_fit, x = amax, stats.sample.astype(np.float64)
    if x.shape[0] == 0:
        raise ValueError("SmoothQuant alpha search: no sampled calibration rows (ChannelStats(sample_rows=...))")
    refs = [x @ w.T.astype(np.float64) for w in ws]

    def loss(s: np.ndarray) -> float:
        rng = (float(np.min(xmin / s)), float(np.max(xmax / s)))
        xs = _fake_act(x / s, per, rng if per == "static" else None)
        total = 0.0
        for w, ref, sc in zip(ws, refs, schemes):
            ww = (w * s).astype(np.float32)
            q = sc.dequantize(sc.quantize(ww), *ww.shape).astype(np.float64)
            total += float(np.mean((ref - xs @ q.T) ** 2))
        return total

    loss_rtn = loss(np.ones(stats.k))
    best = None
    for a in alphas:
        val = loss(smoothquant_scales(amax_fit, wmax, a, min_scale))
        if best is None or val < best[0]:
            best = (val, a)
    return smoothquant_scales(amax, wmax, best[1], min_scale), {"alpha": best[1], "loss_rtn": loss_rtn, "loss": best[0]}


def _quantize_dequantize(w: np.ndarray, scheme: WeightScheme, clip: bool) -> np.ndarray:
    if clip:
        from .clipping import mse_clip_quantize

        stored, _ = mse_clip_quantize(w, scheme)
    else:
        stored = scheme.quantize(w)
    return scheme.dequantize(stored, *w.shape).astype(np.float64)


def _output_loss(w: np.ndarray, q: np.ndarray, h: np.ndarray) -> float:
    d = w.astype(np.float64) - q
    return float(np.sum((d @ h) * d) / max(w.shape[0], 1))


def awq_search(
    weights: Sequence[Any], stats: ChannelStats, hessian: Any, scheme: Any,
    alphas: Sequence[float] = tuple(np.linspace(0, 1, 20)), clip: bool = False,
) -> tuple[np.ndarray, dict[str, float]]:
    """AWQ's scale search for layers sharing one input (see the module docstring).

    For each alpha: ``s = mean|X|^alpha`` normalized by ``sqrt(max(s) min(s))``, every weight
    ``W_l`` rounded as ``Q_l = Q(W_l diag s) diag(s)^-1`` (with error-minimizing scales when
    ``clip``), and the summed output error ``sum_l tr((W_l - Q_l) H (W_l - Q_l)^T) / n_l``; the
    alpha with the smallest error wins (ties keep the smaller alpha; alpha 0 is RTN).

    Args:
        weights: float (n_l, k) weights of the layers reading the same input.
        stats: :class:`ChannelStats` of that input.
        hessian: (k, k) ``E[x x^T]`` of the input (:class:`lowbit.HessianObserver`).
        scheme: the weight scheme the layers will be rounded to, or one per weight (any scheme
            with ``quantize`` / ``dequantize``).
        alphas: the exponents tried.
        clip: round every candidate with :func:`lowbit.mse_clip_quantize` (int8, int4, uint4,
            nf4; about ``MSEClip.grid`` times slower; ``quantize_model`` searches without it).

    Returns:
        ``(s, {"alpha", "loss_rtn", "loss"})``: float64 (k,) scales (divide inputs, multiply
        weight columns), the chosen alpha and the summed output errors of round-to-nearest and of
        the choice.
    """
    ws = [np.asarray(as_float_array(as_numpy(w, "weights"), "weights"), np.float32) for w in weights]
    if not ws or any(w.ndim != 2 or w.shape[1] != stats.k for w in ws):
        raise ValueError(f"weights: expected 2-D (n, {stats.k}) weights")
    schemes = list(scheme) if isinstance(scheme, (list, tuple)) else [scheme] * len(ws)
    if len(schemes) != len(ws) or not all(isinstance(sc, WeightScheme) for sc in schemes):
        raise TypeError("scheme: expected a WeightScheme or one per weight")
    h = np.asarray(as_numpy(hessian, "hessian"), np.float64)
    if h.shape != (stats.k, stats.k):
        raise ValueError(f"hessian: expected shape ({stats.k}, {stats.k}), got {h.shape}")
    alphas = [float(a) for a in alphas]
    if not alphas or not all(0 <= a <= 1 for a in alphas):
        raise ValueError(f"alphas: expected numbers in [0, 1], got {alphas}")
    mean_abs = stats.mean_abs
    loss_rtn = sum(_output_loss(w, _quantize_dequantize(w, sc, False), h) for w, sc in zip(ws, schemes))
    best = None
    for a in alphas:
        s = _positive(np.power(np.where(mean_abs > 0, mean_abs, 1.0), a))
        s = s / np.sqrt(s.max() * s.min())
        val = 0.0
        for w, sc in zip(ws, schemes):
            q = _quantize_dequantize((w * s).astype(np.float32), sc, clip) / s
            val += _output_loss(w, q, h)
        if best is None or val < best[0]:
            best = (val, a, s)
    return best[2], {"alpha": best[1], "loss_rtn": loss_rtn, "loss": best[0]}


def bias_correction(w: Any, q: Any, input_mean: Any) -> np.ndarray:
    """The bias shift that cancels a quantized layer's expected output error: ``(W - Q) E[x]``.

    Args:
        w: float (n, k) weight. q: the dequantized (n, k) weight the kernel uses.
        input_mean: (k,) mean of the layer's calibration inputs (:attr:`ChannelStats.mean`).

    Returns:
        float64 (n,): add it to the bias.

    Example:
        >>> bias_correction(np.float32([[1.0, 2.0]]), np.float32([[1.0, 1.5]]), np.array([0.0, 2.0]))
        array([1.])
    """
    w64 = np.asarray(as_numpy(w, "w"), np.float64)
    q64 = np.asarray(as_numpy(q, "q"), np.float64)
    m = np.asarray(as_numpy(input_mean, "input_mean"), np.float64)
    if w64.ndim != 2 or q64.shape != w64.shape or m.shape != (w64.shape[1],):
        raise ValueError(f"w/q/input_mean: expected (n, k), (n, k) and (k,), got {w64.shape}, {q64.shape}, {m.shape}")
    return (w64 - q64) @ m
