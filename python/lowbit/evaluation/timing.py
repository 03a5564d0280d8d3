"""Timings a user can trust: interleaved repeats, median and spread, ratios with their range, and a
TimingWarning when the machine is too noisy. The one timing helper of compare, the demo and the
benchmarks. NumPy only (no torch import). ``MIB`` / ``format_bytes`` (lowbit.metrics) are re-exported.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..core.metrics import MIB, format_bytes

__all__ = ["MIB", "Speedup", "Timer", "Timing", "TimingWarning", "format_bytes", "format_seconds", "timing_advice"]

# What to do when timings are noisy; shown in the TimingWarning and in the report text.
_ADVICE = ("close other programs, fix the threads (lowbit.set_num_threads(n) and torch.set_num_threads(n)), "
           "raise repeats, or start Python with OMP_WAIT_POLICY=PASSIVE")


class TimingWarning(UserWarning):
    """Timings were too noisy to trust (the spread of the repeats is large). Filter it with
    ``warnings.simplefilter("ignore", lowbit.TimingWarning)``."""


def format_seconds(s: float) -> str:
    """A duration with a readable unit: ``"12.3 ms"``, ``"45.6 µs"``, ``"1.23 s"``; NaN as ``"n/a"``.

    Example:
        >>> format_seconds(0.0123), format_seconds(4.56e-5), format_seconds(1.234)
        ('12.3 ms', '45.6 µs', '1.23 s')
    """
    if not math.isfinite(s):
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def timing_advice() -> str:
    """What to do about noisy timings (the text of every TimingWarning)."""
    return _ADVICE


@dataclass(frozen=True)
class Timing:
    """Repeated measurements of one function: seconds per call, one sample per repeat.

    Each sample times ``loops`` back-to-back calls (``loops > 1`` when one call is shorter than the
    timer's ``min_sample_s``: ``batched``) and divides by ``loops``.

    Attributes:
        samples: seconds per call of each repeat, in the order measured.
        loops: calls per sample.
    """

    samples: tuple[float, ...]
    loops: int = 1

    @property
    def median(self) -> float:
        """Median seconds per call (NaN without samples)."""
        return float(np.median(self.samples)) if self.samples else math.nan

    @property
    def quartiles(self) -> tuple[float, float]:
        """(first, third) quartile of the samples (linear interpolation)."""
        if not self.samples:
            return math.nan, math.nan
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float(q1), float(q3)

    @property
    def spread(self) -> float:
        """Half the interquartile range relative to the median: the ``±`` printed (0.05 = ±5%)."""
        q1, q3 = self.quartiles
        m = self.median
        return (q3 - q1) / (2 * m) if m > 0 else math.nan

    @property
    def batched(self) -> bool:
        """True when one call was too short to time alone (samples time ``loops`` calls)."""
        return self.loops > 1

    def __str__(self) -> str:
        return f"{format_seconds(self.median)} ±{100 * self.spread:.0f}%" if self.samples else "n/a"


@dataclass(frozen=True)
class Speedup:
    """``baseline`` over ``candidate`` (e.g. float over quantized), timed interleaved.

    ``ratio`` = median(baseline) / median(candidate); ``low``/``high`` divide the quartiles
    crosswise (``q1(base) / q3(cand)``, ``q3(base) / q1(cand)``), a range that contains ``ratio``.
    ``noisy`` when either spread is above the timer's ``max_spread``.
    """

    baseline: Timing
    candidate: Timing
    max_spread: float = 0.10

    @property
    def ratio(self) -> float:
        c = self.candidate.median
        return self.baseline.median / c if c > 0 else math.nan

    @property
    def low(self) -> float:
        q3 = self.candidate.quartiles[1]
        return self.baseline.quartiles[0] / q3 if q3 > 0 else math.nan

    @property
    def high(self) -> float:
        q1 = self.candidate.quartiles[0]
        return self.baseline.quartiles[1] / q1 if q1 > 0 else math.nan

    @property
    def noisy(self) -> bool:
        return _is_noisy((self.baseline, self.candidate), self.max_spread)

    def __str__(self) -> str:
        if not math.isfinite(self.ratio):
            return "n/a"
        return f"{self.ratio:.2f}x ({self.low:.2f}-{self.high:.2f})" + (" noisy" if self.noisy else "")


def _listed(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _is_noisy(timings: Sequence[Timing], max_spread: float) -> bool:
    return any(t.samples and not t.spread <= max_spread for t in timings)


@dataclass(frozen=True)
class Timer:
    """How to time: a small frozen config whose methods measure.

    Functions are timed **interleaved** (A B A B ...: load from other processes hits all alike),
    after ``warmup`` untimed calls each (first-call preparation, caches). Each sample times
    ``loops`` calls, ``loops`` chosen per function (1, 2, 5, 10, 20, 50, ...) so that one sample
    takes at least ``min_sample_s``: calls shorter than the timer can resolve are measured in
    batches. ``repeats`` samples per function, unless ``budget_s`` (seconds for the whole
    measurement) runs out first; at least 3 samples are always taken.

    Attributes:
        repeats: samples per function.
        min_sample_s: shortest sample; shorter calls are batched.
        max_spread: a spread (half the relative interquartile range) above this is noisy.
        max_ratio: a speedup beyond this (or below its inverse) is implausible for one kernel
            against another and flagged: on a busy machine torch's spinning OpenMP threads wait a
            whole scheduler tick for a core (a 20 µs Linear took 7 ms), which no repeat removes.
        budget_s: optional time budget for one measurement (None: exactly ``repeats``).
        warmup: untimed calls of each function before timing.
        clock: monotonic seconds (``time.perf_counter``; tests inject a fake clock).
        warn: emit a :class:`TimingWarning` when a result is noisy.

    Example:
        >>> t = iter(range(0, 10_000, 3))  # a fake clock: every reading 3/1024 s (~3 ms) later
        >>> timer = Timer(repeats=5, clock=lambda: next(t) / 1024)
        >>> a, b = timer.time([lambda: None, lambda: None])
        >>> str(a), a.loops, len(a.samples), a.spread
        ('2.93 ms ±0%', 1, 5, 0.0)
    """

    repeats: int = 7
    min_sample_s: float = 1e-3
    max_spread: float = 0.10
    max_ratio: float = 20.0
    budget_s: float | None = None
    warmup: int = 1
    clock: Callable[[], float] = field(default=time.perf_counter, repr=False)
    warn: bool = True

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats: expected >= 1, got {self.repeats}")
        if not self.min_sample_s >= 0:
            raise ValueError(f"min_sample_s: expected >= 0, got {self.min_sample_s}")

    def _loops(self, fn: Callable[[], Any]) -> int:
        """Smallest of 1, 2, 5, 10, 20, 50, ... calls that takes >= min_sample_s (as timeit's autorange)."""
        clock, loops = self.clock, 1
        for k in range(30):
            loops = (1, 2, 5)[k % 3] * 10 ** (k // 3)
            t0 = clock()
            for _ in range(loops):
                fn()
            if clock() - t0 >= self.min_sample_s:
                break
        return loops

    def time(self, fns: Sequence[Callable[[], Any]]) -> list[Timing]:
        """Times each function of ``fns`` interleaved; one :class:`Timing` per function, in order.

        Does not warn (see :meth:`check`)."""
        fns = list(fns)
        for fn in fns:
            for _ in range(self.warmup):
                fn()
        loops = [self._loops(fn) for fn in fns]
        samples: list[list[float]] = [[] for _ in fns]
        clock = self.clock
        start = clock()
        for r in range(self.repeats):
            for k, fn in enumerate(fns):
                n = loops[k]
                t0 = clock()
                for _ in range(n):
                    fn()
                samples[k].append((clock() - t0) / n)
            if self.budget_s is not None and r >= 2 and clock() - start > self.budget_s:
                break
        return [Timing(tuple(s), n) for s, n in zip(samples, loops)]

    def time_named(self, fns: Mapping[str, Callable[[], Any]], what: str = "timings") -> dict[str, Timing]:
        """:meth:`time` over a dict ``name -> function``, then :meth:`check` (may warn)."""
        out = dict(zip(fns, self.time(list(fns.values()))))
        self.check(out, what)
        return out

    def speedup(self, baseline: Callable[[], Any], candidate: Callable[[], Any], what: str = "speedup") -> Speedup:
        """``baseline`` and ``candidate`` timed interleaved; their :class:`Speedup` (may warn)."""
        a, b = self.time([baseline, candidate])
        s = Speedup(a, b, self.max_spread)
        self.check({"baseline": a, "candidate": b}, what, speedups={what: s})
        return s

    def noisy(self, timings: Mapping[str, Timing] | Sequence[Timing]) -> bool:
        """True when any timing's spread is above ``max_spread``."""
        values = list(timings.values()) if isinstance(timings, Mapping) else list(timings)
        return _is_noisy(values, self.max_spread)

    def check(self, timings: Mapping[str, Timing], what: str = "timings", stacklevel: int = 3,
              speedups: Mapping[str, Speedup] | None = None) -> str | None:
        """The warning text when ``timings`` are noisy or a ratio of ``speedups`` is implausible
        (beyond ``max_ratio`` either way), None otherwise; also warns a :class:`TimingWarning`
        with it when ``warn`` is set."""
        noisy = {k: t for k, t in timings.items() if t.samples and not t.spread <= self.max_spread}
        odd = {k: s for k, s in (speedups or {}).items()
               if math.isfinite(s.ratio) and not 1 / self.max_ratio <= s.ratio <= self.max_ratio}
        if not noisy and not odd:
            return None
        parts = []
        if noisy:
            ranked = sorted(noisy.items(), key=lambda kv: -kv[1].spread)
            parts.append("noisy timings (" + _listed([f"{k} ±{100 * t.spread:.0f}%" for k, t in ranked])
                         + f"; over ±{100 * self.max_spread:.0f}%)")
        if odd:
            ranked_s = sorted(odd.items(), key=lambda kv: -abs(math.log(kv[1].ratio)))
            parts.append("implausible speedups (" + _listed([f"{k} {s.ratio:.3g}x" for k, s in ranked_s])
                         + f"; beyond {self.max_ratio:g}x: one side stalls, typically torch's OpenMP threads "
                         "waiting for a core)")
        msg = f"{what}: {' and '.join(parts)}: the machine is busy; {_ADVICE}"
        if self.warn:
            warnings.warn(msg, TimingWarning, stacklevel=stacklevel)
        return msg
