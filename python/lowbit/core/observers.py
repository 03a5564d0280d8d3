"""Observers: streaming, mergeable statistics of tensors that choose quantization parameters.

Public API over the C++ reduction ops (``minmax_f32``, ``minmax_per_channel_f32``,
``histogram_f32``: SIMD, multithreaded, GIL released). Every observer keeps bounded state (a few
floats, one pair per channel, or ``bins`` integer counts), so calibration can stream any amount of
data, run in several processes and be merged: ``merge`` of min/max and histogram observers equals
one pass over the concatenated data exactly.

Common policy:
    - ``update(x)`` takes a NumPy array or a CPU torch tensor of any shape and floating dtype
      (converted to float32). Empty arrays are ignored.
    - NaN and +-inf are left out of every range and histogram; they are counted in ``nonfinite``
      and a ``RuntimeWarning`` is issued once per observer.
    - ``compute_qparams()`` before any finite value was seen raises ``RuntimeError``.
    - ``state_dict()`` is plain JSON-able data; ``Observer.from_state_dict(d)`` rebuilds any observer.
    - Defaults: ``dtype="int8"``, affine (``symmetric=False``), full range.
    - An observer is not thread-safe: give each thread (or process) its own and ``merge`` them.

Example:
    >>> import numpy as np, lowbit
    >>> obs = lowbit.MinMaxObserver(dtype="uint8")
    >>> obs.update(np.float32([-1.0, 0.5, 3.0]))
    >>> obs.compute_qparams()
    (0.01568627543747425, 64)
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .. import _core
from . import _histogram
from ._array import as_numpy
from .quantize import _check_dtype, choose_qparams, qrange

__all__ = [
    "HistogramObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver",
    "Observer",
    "PerChannelMinMaxObserver",
    "PowerOfTwoObserver",
]

_STATE_VERSION = 1
_INF = float("inf")


def _as_f32(x: Any) -> np.ndarray:
    a = as_numpy(x, "x")
    if a.dtype.kind != "f":
        raise TypeError(f"x: expected a floating-point array or tensor, got dtype {a.dtype}")
    if a.dtype != np.float32:
        with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf: counted as non-finite
            a = a.astype(np.float32)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)  # the flag test: a tenth of np.require


def _check_bool(v: Any, name: str) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    return bool(v)


def _f32(v: Any) -> float:
    """A float32 value as a Python float (exact)."""
    return float(np.float32(v))


class Observer:
    """Base class: configuration, the update/merge/state protocol and the non-finite policy.

    Args:
        dtype: target dtype, "int8", "uint8", "int4" or "uint4".
        symmetric: symmetric range (zero point 0, or the middle of an unsigned range).
        reduce_range: use one bit less of the integer range (as PyTorch's observers can).

    Attributes:
        nonfinite: number of NaN/inf values seen (and ignored) so far.
    """

    def __init__(self, *, dtype: str = "int8", symmetric: bool = False, reduce_range: bool = False):
        self.dtype = _check_dtype(dtype)
        self.symmetric = _check_bool(symmetric, "symmetric")
        self.reduce_range = _check_bool(reduce_range, "reduce_range")
        if self.symmetric and self.reduce_range and self.dtype in ("uint8", "uint4"):
            raise ValueError("reduce_range: not supported with symmetric unsigned ranges (as in PyTorch)")
        self.nonfinite = 0
        self._warned = False
        self.reset()

    # --- protocol -------------------------------------------------------------------------------
    def config(self) -> dict:
        """The constructor arguments, as a JSON-able dict."""
        return {"dtype": self.dtype, "symmetric": self.symmetric, "reduce_range": self.reduce_range}

    def reset(self) -> None:
        """Forgets everything observed (the configuration stays)."""
        self.nonfinite = 0
        self._warned = False
        self._reset()

    def update(self, x: Any) -> None:
        """Folds ``x`` (NumPy array or CPU torch tensor, any shape) into the statistics.

        Raises:
            TypeError: ``x`` is not floating point.
            ValueError: ``x`` is a tensor on another device, or its shape does not fit the observer.
        """
        a = _as_f32(x)
        if a.size == 0:
            return
        self._update(a)

    def compute_qparams(self) -> tuple[Any, Any]:
        """``(scale, zero_point)`` via :func:`lowbit.choose_qparams` on the observed range.

        Raises:
            RuntimeError: no finite value was observed yet.
        """
        lo, hi = self.qparams_range()
        return choose_qparams(lo, hi, dtype=self.dtype, symmetric=self.symmetric, reduce_range=self.reduce_range)

    def merge(self, other: Observer) -> Observer:
        """Folds the state of ``other`` (same type and configuration) into this observer.

        Returns:
            self.

        Raises:
            ValueError: different observer type or configuration.
        """
        if type(other) is not type(self):
            raise ValueError(f"other: cannot merge a {type(other).__name__} into a {type(self).__name__}")
        if other.config() != self.config():
            raise ValueError(f"other: configurations differ: {other.config()} vs {self.config()}")
        self._merge(other)
        self.nonfinite += other.nonfinite
        return self

    def state_dict(self) -> dict:
        """Type, configuration and statistics as JSON-able data (``json.dumps`` works as is)."""
        return {
            "type": type(self).__name__,
            "version": _STATE_VERSION,
            "config": self.config(),
            "nonfinite": int(self.nonfinite),
            "state": self._state(),
        }

    @classmethod
    def from_state_dict(cls, d: dict) -> Observer:
        """Rebuilds an observer from :meth:`state_dict` output.

        Called on ``Observer`` it builds whichever type ``d`` names; called on a subclass it checks
        that ``d`` is of that type.

        Raises:
            ValueError: malformed data, an unknown type or a version this lowbit cannot read.
        """
        if not isinstance(d, dict) or not {"type", "version", "config", "state"} <= set(d):
            raise ValueError("d: expected a dict from Observer.state_dict()")
        target = _TYPES.get(d["type"])
        if target is None:
            raise ValueError(f"d: unknown observer type {d['type']!r}")
        if cls is not Observer and target is not cls:
            raise ValueError(f"d: holds a {d['type']}, not a {cls.__name__}")
        if d["version"] != _STATE_VERSION:
            raise ValueError(f"d: state version {d['version']!r} is not supported (expected {_STATE_VERSION})")
        if not isinstance(d["config"], dict):
            raise ValueError("d: 'config' must be a dict")
        try:
            obs = target(**d["config"])
        except TypeError as exc:
            raise ValueError(f"d: bad {d['type']} config: {exc}") from None
        try:
            obs._load(d["state"])
            nonfinite = int(d.get("nonfinite", 0))
        except (KeyError, TypeError, IndexError, OverflowError) as exc:  # OverflowError: inf or huge counts
            raise ValueError(f"d: malformed {d['type']} state: {exc!r}") from None
        if nonfinite < 0:
            raise ValueError(f"d: 'nonfinite' must be >= 0, got {nonfinite}")
        obs.nonfinite = nonfinite
        return obs

    def plot(self, ax: Any = None) -> Any:
        """Draws the observed range (or histogram) and the chosen clipping range with matplotlib.

        Args:
            ax: a matplotlib Axes; a new figure's when None.

        Returns:
            The Axes.
        """
        import matplotlib.pyplot as plt  # optional dependency, imported on use

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3))
        self._plot(ax)
        ax.set_title(type(self).__name__)
        return ax

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({cfg})"

    # --- helpers for subclasses ------------------------------------------------------------------
    def _count_nonfinite(self, n: int) -> None:
        if n:
            self.nonfinite += int(n)
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"{type(self).__name__}: {n} NaN/inf values ignored (further ones are counted in .nonfinite)",
                    RuntimeWarning,
                    stacklevel=4,
                )

    def qparams_range(self) -> tuple[Any, Any]:
        """The ``(min, max)`` range that ``compute_qparams`` quantizes."""
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError

    def _update(self, a: np.ndarray) -> None:
        raise NotImplementedError

    def _merge(self, other: Observer) -> None:
        raise NotImplementedError

    def _state(self) -> dict:
        raise NotImplementedError

    def _load(self, s: dict) -> None:
        raise NotImplementedError

    def _plot(self, ax: Any) -> None:
        lo, hi = self.qparams_range()
        ax.axvspan(float(np.min(lo)), float(np.max(hi)), alpha=0.3, label="observed range")
        ax.legend()


def _no_data(obs: Observer) -> RuntimeError:
    return RuntimeError(f"{type(obs).__name__}.compute_qparams: no finite data observed yet; call update() first")


class MinMaxObserver(Observer):
    """Running min and max of everything observed (PyTorch's ``MinMaxObserver``).

    Same ``(scale, zero_point)`` as ``torch.ao.quantization.MinMaxObserver`` for the same finite
    data: dtype "uint8" <-> ``torch.quint8``, "int8" <-> ``torch.qint8``, ``symmetric`` <->
    ``per_tensor_symmetric``.

    Example:
        >>> import numpy as np, lowbit
        >>> obs = lowbit.MinMaxObserver(dtype="int8", symmetric=True)
        >>> obs.update(np.float32([-2.0, 1.0])); obs.update(np.float32([0.5, 3.0]))
        >>> (obs.min_val, obs.max_val)
        (-2.0, 3.0)
    """

    def _reset(self) -> None:
        self.min_val = _INF
        self.max_val = -_INF

    def _update(self, a: np.ndarray) -> None:
        mn, mx, bad = _core.minmax_f32(a)
        self._count_nonfinite(bad)
        if mn <= mx:
            self.min_val = min(self.min_val, mn)
            self.max_val = max(self.max_val, mx)

    def qparams_range(self) -> tuple[float, float]:
        if self.min_val > self.max_val:
            raise _no_data(self)
        return self.min_val, self.max_val

    def _merge(self, other: MinMaxObserver) -> None:
        self.min_val = min(self.min_val, other.min_val)
        self.max_val = max(self.max_val, other.max_val)

    def _state(self) -> dict:
        empty = self.min_val > self.max_val
        return {"min": None if empty else self.min_val, "max": None if empty else self.max_val}

    def _load(self, s: dict) -> None:
        if s["min"] is None:
            self._reset()
        else:
            self.min_val, self.max_val = _f32(s["min"]), _f32(s["max"])


class PowerOfTwoObserver(MinMaxObserver):
    """Min/max observer whose scale is rounded up to a power of two (for shift-only hardware).

    The scale from :func:`lowbit.choose_qparams` is rounded up to the next power of two, so the
    observed range still fits; an affine zero point is recomputed for the new scale with the same
    formula (``clamp(qmin - round(min / scale))``).

    Example:
        >>> import numpy as np, lowbit
        >>> obs = lowbit.PowerOfTwoObserver(dtype="int8", symmetric=True)
        >>> obs.update(np.float32([-1.0, 3.0]))
        >>> obs.compute_qparams()
        (0.03125, 0)
    """

    def compute_qparams(self) -> tuple[float, int]:
        lo, hi = self.qparams_range()
        scale, zp = choose_qparams(lo, hi, dtype=self.dtype, symmetric=self.symmetric, reduce_range=self.reduce_range)
        m, e = math.frexp(scale)
        scale2 = scale if m == 0.5 else math.ldexp(1.0, e)
        if not self.symmetric:
            qmin, qmax = qrange(self.dtype, self.reduce_range)
            min_neg = np.float32(min(lo, 0.0))
            zp = int(np.clip(np.float32(qmin) - np.rint(min_neg / np.float32(scale2)), qmin, qmax))
        return float(scale2), int(zp)


class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of each batch's min and max (PyTorch's
    ``MovingAverageMinMaxObserver``): ``m <- m + c * (batch_min - m)``, the first batch taken as is.

    Same numbers as PyTorch for the same finite batches. Batches with no finite value are skipped.
    ``merge(other)`` treats ``other``'s batches as coming after this observer's, and equals that
    sequential pass up to float rounding (the state keeps each side's first batch and batch count).

    Args:
        averaging_constant: ``c`` in (0, 1].

    Example:
        >>> import numpy as np, lowbit
        >>> obs = lowbit.MovingAverageMinMaxObserver(averaging_constant=0.5)
        >>> obs.update(np.float32([0.0, 2.0])); obs.update(np.float32([0.0, 4.0]))
        >>> obs.max_val
        3.0
    """

    def __init__(self, averaging_constant: float = 0.01, **kwargs: Any):
        if isinstance(averaging_constant, bool) or not isinstance(averaging_constant, (int, float, np.floating)):
            raise TypeError(f"averaging_constant: expected a float, got {type(averaging_constant).__name__}")
        if not 0.0 < float(averaging_constant) <= 1.0:
            raise ValueError(f"averaging_constant: expected a value in (0, 1], got {averaging_constant}")
        self.averaging_constant = float(averaging_constant)
        super().__init__(**kwargs)

    def config(self) -> dict:
        return {**super().config(), "averaging_constant": self.averaging_constant}

    def _reset(self) -> None:
        self.min_val = _INF
        self.max_val = -_INF
        self.batches = 0
        self._first = (_INF, -_INF)

    def _update(self, a: np.ndarray) -> None:
        mn, mx, bad = _core.minmax_f32(a)
        self._count_nonfinite(bad)
        if not mn <= mx:
            return
        if self.batches == 0:
            self.min_val, self.max_val = mn, mx
            self._first = (mn, mx)
        else:
            c = np.float32(self.averaging_constant)
            lo, hi = np.float32(self.min_val), np.float32(self.max_val)
            self.min_val = float(lo + c * (np.float32(mn) - lo))
            self.max_val = float(hi + c * (np.float32(mx) - hi))
        self.batches += 1

    def qparams_range(self) -> tuple[float, float]:
        if self.batches == 0:
            raise _no_data(self)
        return self.min_val, self.max_val

    def _merge(self, other: MovingAverageMinMaxObserver) -> None:
        if other.batches == 0:
            return
        if self.batches == 0:
            self.min_val, self.max_val, self.batches, self._first = other.min_val, other.max_val, other.batches, other._first
            return
        # other's EMA started from its first batch instead of our state: swap that start.
        k = (1.0 - self.averaging_constant) ** other.batches
        self.min_val = _f32(other.min_val + k * (self.min_val - other._first[0]))
        self.max_val = _f32(other.max_val + k * (self.max_val - other._first[1]))
        self.batches += other.batches

    def _state(self) -> dict:
        if self.batches == 0:
            return {"batches": 0}
        return {"batches": self.batches, "min": self.min_val, "max": self.max_val, "first": list(self._first)}

    def _load(self, s: dict) -> None:
        self._reset()
        if s["batches"]:
            self.batches = int(s["batches"])
            self.min_val, self.max_val = _f32(s["min"]), _f32(s["max"])
            self._first = (_f32(s["first"][0]), _f32(s["first"][1]))


class PerChannelMinMaxObserver(Observer):
    """Running min and max per index of ``axis`` (PyTorch's ``PerChannelMinMaxObserver``).

    Same per-channel ``(scale, zero_point)`` as PyTorch for the same finite data. The channel
    count is fixed by the first non-empty update. A channel that never saw a finite value gets the
    range [0, 0].

    Args:
        axis: the channel axis (negative counts from the end).

    Example:
        >>> import numpy as np, lowbit
        >>> obs = lowbit.PerChannelMinMaxObserver(axis=0, dtype="int8", symmetric=True)
        >>> obs.update(np.float32([[1.0, -2.0], [0.5, 0.25]]))
        >>> obs.compute_qparams()[0]
        array([0.01568628, 0.00392157], dtype=float32)
    """

    def __init__(self, axis: int = 0, **kwargs: Any):
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis: expected an int, got {type(axis).__name__}")
        self.axis = int(axis)
        super().__init__(**kwargs)

    def config(self) -> dict:
        return {**super().config(), "axis": self.axis}

    def _reset(self) -> None:
        self.min_val: np.ndarray | None = None
        self.max_val: np.ndarray | None = None

    def _batch(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if a.ndim == 0 or not -a.ndim <= self.axis < a.ndim:
            raise ValueError(f"axis: {self.axis} is out of range for an input with {a.ndim} dimensions")
        channels = a.shape[self.axis]
        if self.min_val is not None and channels != self.min_val.shape[0]:
            raise ValueError(
                f"x: expected {self.min_val.shape[0]} channels along axis {self.axis} (from earlier updates), got {channels}"
            )
        mn, mx, bad = _core.minmax_per_channel_f32(a, self.axis)
        self._count_nonfinite(bad)
        return mn, mx

    def _update(self, a: np.ndarray) -> None:
        mn, mx = self._batch(a)
        if self.min_val is None:
            self.min_val, self.max_val = mn, mx
        else:
            self.min_val = np.minimum(self.min_val, mn)
            self.max_val = np.maximum(self.max_val, mx)

    def qparams_range(self) -> tuple[np.ndarray, np.ndarray]:
        if self.min_val is None or not np.any(self.min_val <= self.max_val):
            raise _no_data(self)
        seen = self.min_val <= self.max_val
        return np.where(seen, self.min_val, np.float32(0)), np.where(seen, self.max_val, np.float32(0))

    def _check_channels(self, other: PerChannelMinMaxObserver) -> None:
        if self.min_val is not None and other.min_val is not None and self.min_val.shape != other.min_val.shape:
            raise ValueError(f"other: has {other.min_val.shape[0]} channels, this observer {self.min_val.shape[0]}")

    def _merge(self, other: PerChannelMinMaxObserver) -> None:
        self._check_channels(other)
        if other.min_val is None:
            return
        if self.min_val is None:
            self.min_val, self.max_val = other.min_val.copy(), other.max_val.copy()
        else:
            self.min_val = np.minimum(self.min_val, other.min_val)
            self.max_val = np.maximum(self.max_val, other.max_val)

    @staticmethod
    def _enc(v: np.ndarray) -> list:
        return [None if not math.isfinite(x) else x for x in v.astype(np.float64).tolist()]

    @staticmethod
    def _dec(v: list, fill: float) -> np.ndarray:
        return np.array([fill if x is None else x for x in v], np.float32)

    def _state(self) -> dict:
        if self.min_val is None:
            return {"min": None, "max": None}
        return {"min": self._enc(self.min_val), "max": self._enc(self.max_val)}

    def _load(self, s: dict) -> None:
        self._reset()
        if s["min"] is not None:
            self.min_val, self.max_val = self._dec(s["min"], _INF), self._dec(s["max"], -_INF)

    def _plot(self, ax: Any) -> None:
        lo, hi = self.qparams_range()
        ch = np.arange(lo.shape[0])
        ax.fill_between(ch, lo, hi, alpha=0.3, step="mid", label="observed range")
        ax.set_xlabel(f"channel (axis {self.axis})")
        ax.legend()


class MovingAveragePerChannelMinMaxObserver(PerChannelMinMaxObserver):
    """Per-channel moving average of each batch's min and max (PyTorch's
    ``MovingAveragePerChannelMinMaxObserver``); per channel as in
    :class:`MovingAverageMinMaxObserver`, merge included.

    Example:
        >>> import numpy as np, lowbit
        >>> obs = lowbit.MovingAveragePerChannelMinMaxObserver(axis=1, averaging_constant=0.5)
        >>> obs.update(np.float32([[0.0, 2.0]])); obs.update(np.float32([[2.0, 4.0]]))
        >>> obs.max_val
        array([1., 3.], dtype=float32)
    """

    def __init__(self, axis: int = 0, averaging_constant: float = 0.01, **kwargs: Any):
        if isinstance(averaging_constant, bool) or not isinstance(averaging_constant, (int, float, np.floating)):
            raise TypeError(f"averaging_constant: expected a float, got {type(averaging_constant).__name__}")
        if not 0.0 < float(averaging_constant) <= 1.0:
            raise ValueError(f"averaging_constant: expected a value in (0, 1], got {averaging_constant}")
        self.averaging_constant = float(averaging_constant)
        super().__init__(axis=axis, **kwargs)

    def config(self) -> dict:
        return {**super().config(), "averaging_constant": self.averaging_constant}

    def _reset(self) -> None:
        super()._reset()
        self.batches: np.ndarray | None = None
        self._first: tuple[np.ndarray, np.ndarray] | None = None

    def _update(self, a: np.ndarray) -> None:
        mn, mx = self._batch(a)
        ok = mn <= mx
        if self.min_val is None:
            self.min_val, self.max_val = mn.copy(), mx.copy()
            self.batches = ok.astype(np.int64)
            self._first = (mn.copy(), mx.copy())
            return
        c = np.float32(self.averaging_constant)
        if self._all_seen and ok.all():  # common case: every channel had data before and now
            self.min_val = self.min_val + c * (mn - self.min_val)
            self.max_val = self.max_val + c * (mx - self.max_val)
            self.batches += 1
            return
        new = ok & (self.batches == 0)
        old = ok & (self.batches > 0)
        with np.errstate(invalid="ignore"):
            ema_lo = self.min_val + c * (mn - self.min_val)
            ema_hi = self.max_val + c * (mx - self.max_val)
        self.min_val = np.where(old, ema_lo, np.where(new, mn, self.min_val)).astype(np.float32)
        self.max_val = np.where(old, ema_hi, np.where(new, mx, self.max_val)).astype(np.float32)
        self._first = (np.where(new, mn, self._first[0]), np.where(new, mx, self._first[1]))
        self.batches = self.batches + ok

    @property
    def _all_seen(self) -> bool:
        return self.batches is not None and bool(self.batches.min(initial=1) > 0)

    def qparams_range(self) -> tuple[np.ndarray, np.ndarray]:
        if self.batches is None or not np.any(self.batches > 0):
            raise _no_data(self)
        seen = self.batches > 0
        return np.where(seen, self.min_val, np.float32(0)), np.where(seen, self.max_val, np.float32(0))

    def _merge(self, other: MovingAveragePerChannelMinMaxObserver) -> None:
        self._check_channels(other)
        if other.min_val is None:
            return
        if self.min_val is None:
            self.min_val, self.max_val = other.min_val.copy(), other.max_val.copy()
            self.batches, self._first = other.batches.copy(), (other._first[0].copy(), other._first[1].copy())
            return
        k = (1.0 - self.averaging_constant) ** other.batches.astype(np.float64)
        mine, theirs = self.batches > 0, other.batches > 0
        with np.errstate(invalid="ignore"):
            lo = other.min_val + k * (self.min_val.astype(np.float64) - other._first[0])
            hi = other.max_val + k * (self.max_val.astype(np.float64) - other._first[1])
        both = mine & theirs
        only_theirs = theirs & ~mine
        self.min_val = np.where(both, lo, np.where(only_theirs, other.min_val, self.min_val)).astype(np.float32)
        self.max_val = np.where(both, hi, np.where(only_theirs, other.max_val, self.max_val)).astype(np.float32)
        self._first = (
            np.where(only_theirs, other._first[0], self._first[0]),
            np.where(only_theirs, other._first[1], self._first[1]),
        )
        self.batches = self.batches + other.batches

    def _state(self) -> dict:
        if self.min_val is None:
            return {"min": None}
        return {
            "min": self._enc(self.min_val),
            "max": self._enc(self.max_val),
            "batches": self.batches.tolist(),
            "first_min": self._enc(self._first[0]),
            "first_max": self._enc(self._first[1]),
        }

    def _load(self, s: dict) -> None:
        self._reset()
        if s["min"] is not None:
            self.min_val, self.max_val = self._dec(s["min"], _INF), self._dec(s["max"], -_INF)
            self.batches = np.array(s["batches"], np.int64)
            self._first = (self._dec(s["first_min"], _INF), self._dec(s["first_max"], -_INF))


_METHODS = ("mse", "percentile", "entropy")


class HistogramObserver(Observer):
    """Histogram of everything observed, then a clipping range chosen from it.

    The histogram has ``bins`` int64 counts on a power-of-two grid that grows with the observed
    range and re-bins exactly (see ``lowbit._histogram``): memory is ``bins`` counts whatever the
    data size, and ``merge`` gives exactly the histogram of one pass over all the data. The
    observed range spans between ``bins / 2`` and ``bins`` of the bins (the finest power-of-two
    width that fits). Exact zeros are also counted apart (``zeros``), so that a spike at zero is
    modelled as such.

    Methods:
        "mse": the range minimizing the expected quantization MSE of the histogram (as PyTorch's
            HistogramObserver intends; its result is at least as good on typical data).
        "percentile": keep ``percentile`` % of the values, cutting ``(100 - percentile) / 2`` %
            from each tail, or (symmetric) the top ``100 - percentile`` % by magnitude.
        "entropy": TensorRT-style minimum KL divergence between the histogram of ``|x|`` and its
            quantized version; the threshold ``t`` gives the range ``[-t, t]`` cut to the data.

    Args:
        bins: number of histogram bins, 16 to 2**16 (state: bins int64 counts; scratch while
            updating: 8 copies per thread).
        method: "mse", "percentile" or "entropy".
        percentile: for "percentile", in (50, 100].

    Example:
        >>> import numpy as np, lowbit
        >>> obs = lowbit.HistogramObserver(bins=256, method="percentile", percentile=90.0)
        >>> obs.update(np.arange(1000, dtype=np.float32))
        >>> [round(v) for v in obs.clip_range()]
        [50, 950]
    """

    def __init__(self, bins: int = 2048, method: str = "mse", percentile: float = 99.99, **kwargs: Any):
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)):
            raise TypeError(f"bins: expected an int, got {type(bins).__name__}")
        if not 16 <= int(bins) <= 1 << 16:
            raise ValueError(f"bins: expected 16 <= bins <= 2**16, got {bins}")
        if method not in _METHODS:
            raise ValueError(f"method: expected one of {', '.join(map(repr, _METHODS))}, got {method!r}")
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.floating)):
            raise TypeError(f"percentile: expected a float, got {type(percentile).__name__}")
        if not 50.0 < float(percentile) <= 100.0:
            raise ValueError(f"percentile: expected a value in (50, 100], got {percentile}")
        self.bins = int(bins)
        self.method = method
        self.percentile = float(percentile)
        super().__init__(**kwargs)

    def config(self) -> dict:
        return {**super().config(), "bins": self.bins, "method": self.method, "percentile": self.percentile}

    def _reset(self) -> None:
        self.min_val = _INF
        self.max_val = -_INF
        self.counts: np.ndarray | None = None
        self.zeros = 0
        self._grid = (0, 0)

    def _regrid(self, mn: float, mx: float) -> None:
        grid = _histogram.grid_for(mn, mx, self.bins)
        if self.counts is None:
            self.counts = np.zeros(self.bins, np.int64)
        elif grid != self._grid:
            self.counts = _histogram.rebin(self.counts, *self._grid, *grid)
        self._grid = grid
        self.min_val, self.max_val = mn, mx

    def _accumulate(self, a: np.ndarray) -> tuple:
        e, base = self._grid
        return _core.histogram_f32(a, 2.0**-e, float(base), self.bins)

    def _update(self, a: np.ndarray) -> None:
        # One pass when the data fits the current range (the kernel reports the batch's min/max
        # too); a batch that widens the range is binned again on the grown grid.
        if self.counts is None:
            mn, mx, bad = _core.minmax_f32(a)
            h = None
        else:
            h, bad, zeros, mn, mx = self._accumulate(a)
        self._count_nonfinite(bad)
        if not mn <= mx:
            return
        if h is None or mn < self.min_val or mx > self.max_val:
            self._regrid(min(self.min_val, mn), max(self.max_val, mx))
            h, _, zeros, _, _ = self._accumulate(a)
        self.counts += h
        self.zeros += zeros

    def _merge(self, other: HistogramObserver) -> None:
        if other.counts is None:
            return
        theirs = other.counts
        if self.counts is None:
            self.counts, self._grid = np.zeros(self.bins, np.int64), other._grid
        self._regrid(min(self.min_val, other.min_val), max(self.max_val, other.max_val))
        self.counts += _histogram.rebin(theirs, *other._grid, *self._grid)
        self.zeros += other.zeros

    def clip_range(self) -> tuple[float, float]:
        """The clipping range ``(lo, hi)`` chosen by ``method`` from the histogram.

        Raises:
            RuntimeError: no finite value was observed yet.
        """
        if self.counts is None:
            raise _no_data(self)
        if self.min_val == self.max_val:
            return self.min_val, self.max_val
        e, base = self._grid
        bins = _histogram.Bins(self.counts, e, base, self.min_val, self.max_val, self.zeros)
        qmin, qmax = qrange(self.dtype, self.reduce_range)
        if self.method == "percentile":
            lo, hi = _histogram.percentile_range(bins, self.percentile, self.symmetric)
        elif self.method == "entropy":
            lo, hi = _histogram.entropy_range(self.counts, e, base, bins, (qmax - qmin + 1) // 2)
        else:

            def choose(lo, hi):
                return choose_qparams(
                    np.asarray(lo, np.float32),
                    np.asarray(hi, np.float32),
                    dtype=self.dtype,
                    symmetric=self.symmetric,
                    reduce_range=self.reduce_range,
                )

            lo, hi = _histogram.mse_range(bins, choose, qmin, qmax, self.symmetric)
        return _f32(min(max(lo, self.min_val), self.max_val)), _f32(max(min(hi, self.max_val), self.min_val))

    qparams_range = clip_range

    def _state(self) -> dict:
        if self.counts is None:
            return {"counts": None}
        e, base = self._grid
        return {
            "min": self.min_val,
            "max": self.max_val,
            "exponent": e,
            "base": base,
            "zeros": int(self.zeros),
            "counts": self.counts.tolist(),
        }

    def _load(self, s: dict) -> None:
        self._reset()
        if s["counts"] is None:
            return
        counts = np.array(s["counts"], np.int64)
        if counts.shape != (self.bins,) or np.any(counts < 0):
            raise TypeError(f"counts must be {self.bins} non-negative integers")
        self.min_val, self.max_val = _f32(s["min"]), _f32(s["max"])
        grid = (int(s["exponent"]), int(s["base"]))
        if grid != _histogram.grid_for(self.min_val, self.max_val, self.bins):
            raise TypeError("exponent/base do not match min/max")
        self.counts, self._grid, self.zeros = counts, grid, int(s["zeros"])

    def _plot(self, ax: Any) -> None:
        if self.counts is None:
            raise _no_data(self)
        e, base = self._grid
        b = _histogram.Bins(self.counts, e, base, self.min_val, self.max_val)
        edges = np.concatenate((b.left, b.right[-1:]))
        ax.stairs(b.count, edges, fill=True, alpha=0.5, label="histogram")
        lo, hi = self.clip_range()
        ax.axvline(lo, color="C3", linestyle="--", label=f"clip ({self.method})")
        ax.axvline(hi, color="C3", linestyle="--")
        ax.set_yscale("log")
        ax.legend()


_TYPES = {
    cls.__name__: cls
    for cls in (
        MinMaxObserver,
        MovingAverageMinMaxObserver,
        PerChannelMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        HistogramObserver,
        PowerOfTwoObserver,
    )
}
