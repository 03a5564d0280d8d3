"""Power-of-two histogram grids and the clipping-range searches of HistogramObserver.

Private helper layer under ``lowbit.observers``; NumPy only, no per-element Python loops.

The grid: bin width ``2**e``; bin ``i`` of a histogram covers ``[(base + i) * 2**e, (base + i + 1) *
2**e)``. ``(e, base)`` is a pure function of the observed ``(min, max)`` (the finest grid whose
``bins`` bins cover both), so a histogram grown batch by batch, one built in a single pass and one
merged from pieces are the same integers. Coarsening by ``2**k`` maps bin index ``g`` to ``g >> k``:
exact, because a coarse grid's edges are a subset of the fine grid's.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Bins", "entropy_range", "expected_sq_error", "grid_for", "mse_range", "percentile_range", "rebin"]

_E_MIN = -100  # 2**100 stays finite in float32
_E_MAX = 126  # 2**-126 is a normal float32
_MAG_BITS = 40  # finest bin width relative to the largest magnitude: 2**-40 of it


def grid_for(min_val: float, max_val: float, bins: int) -> tuple[int, int]:
    """``(e, base)`` of the finest power-of-two grid whose ``bins`` bins hold ``[min_val, max_val]``.

    Bin indices are exact: ``floor(x * 2**-e)`` computed in float64 (where the product of a
    float32 and a power of two in range is exact), matching ``lowbit._core.histogram_f32``.
    """
    lo, hi = float(np.float32(min_val)), float(np.float32(max_val))
    maxabs = max(abs(lo), abs(hi))
    e_floor = _E_MIN if maxabs == 0.0 else max(_E_MIN, math.frexp(maxabs)[1] - 1 - _MAG_BITS)

    def fits(e: int) -> bool:
        s = 2.0**-e
        return math.floor(hi * s) - math.floor(lo * s) + 1 <= bins

    span = hi - lo
    e = e_floor if span == 0.0 else max(e_floor, min(_E_MAX, math.floor(math.log2(span / bins))))
    while e < _E_MAX and not fits(e):
        e += 1
    while e > e_floor and fits(e - 1):
        e -= 1
    return e, math.floor(lo * 2.0**-e)


def rebin(counts: np.ndarray, e: int, base: int, e2: int, base2: int) -> np.ndarray:
    """Exact move of int64 ``counts`` from grid ``(e, base)`` to the coarser or equal ``(e2, base2)``."""
    n = counts.shape[0]
    if (e, base) == (e2, base2):
        return counts.copy()
    if e2 < e:
        raise ValueError("rebin: the target grid must not be finer")
    idx = np.clip(((base + np.arange(n, dtype=np.int64)) >> (e2 - e)) - base2, 0, n - 1)
    out = np.zeros(n, np.int64)
    starts = np.flatnonzero(np.diff(idx, prepend=-1))  # idx is nondecreasing: sum equal runs
    out[idx[starts]] = np.add.reduceat(counts, starts)
    return out


class Bins:
    """The occupied bins of a histogram, first and last clipped to the observed min and max.

    Values are modelled as uniform within each bin, except the exact zeros (``zeros`` of the
    counts of the bin holding 0), which become a zero-width bin at 0: a spike at zero (ReLU,
    padding) is exactly representable and must not look like rounding error. Attributes: ``left``,
    ``right`` (float64 edges, contiguous), ``count`` (float64), ``total``, ``zeros``.
    """

    def __init__(self, counts: np.ndarray, e: int, base: int, min_val: float, max_val: float, zeros: int = 0):
        w = 2.0**e
        i0 = min(max(math.floor(min_val / w) - base, 0), counts.shape[0] - 1)
        i1 = min(max(math.floor(max_val / w) - base, i0), counts.shape[0] - 1)
        idx = np.arange(i0, i1 + 1, dtype=np.float64)
        self.left = (base + idx) * w
        self.right = self.left + w
        self.left[0] = min_val
        self.right[-1] = max_val
        self.count = counts[i0 : i1 + 1].astype(np.float64)
        k = -base - i0  # the bin whose left edge is 0
        self.zeros = 0.0
        if zeros and 0 <= k < self.count.shape[0] and self.left[k] == 0.0 and self.right[k] > 0.0:
            self.zeros = float(zeros)
            self.left = np.insert(self.left, k, 0.0)
            self.right = np.insert(self.right, k, 0.0)
            self.count = np.insert(self.count, k, self.zeros)
            self.count[k + 1] -= self.zeros
        self.total = float(self.count.sum())
        self.min_val, self.max_val = float(min_val), float(max_val)
        self.width = w
        width = self.right - self.left
        self._width = np.where(width > 0, width, 1.0)
        # Per-bin moments of the uniform model, and their prefix sums for O(1) tail queries.
        m1 = self.count * (self.left + self.right) / 2
        m2 = self.count * (self.left**2 + self.left * self.right + self.right**2) / 3
        self._c0 = np.concatenate(([0.0], np.cumsum(self.count)))
        self._c1 = np.concatenate(([0.0], np.cumsum(m1)))
        self._c2 = np.concatenate(([0.0], np.cumsum(m2)))

    def moments_below(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Count, sum and sum of squares of the values below ``t`` (vectorized over ``t``)."""
        t_raw = np.asarray(t, np.float64)
        t = np.clip(t_raw, self.min_val, self.max_val)
        j = np.clip(np.searchsorted(self.right, t, side="left"), 0, self.count.shape[0] - 1)  # point bins at t: not below
        a = self.left[j]
        b = np.clip(t, a, self.right[j])
        frac = (b - a) / self._width[j]
        c = self.count[j] * frac
        n0 = self._c0[j] + c
        n1 = self._c1[j] + c * (a + b) / 2
        n2 = self._c2[j] + c * (a * a + a * b + b * b) / 3
        none = t_raw < self.min_val  # nothing lies below the minimum (not even a spike at it)
        return np.where(none, 0.0, n0), np.where(none, 0.0, n1), np.where(none, 0.0, n2)

    def cdf(self, t: np.ndarray) -> np.ndarray:
        return self.moments_below(t)[0]

    def quantile(self, q: float) -> float:
        """The value below which a fraction ``q`` of the mass lies (linear within a bin)."""
        target = q * self.total
        j = int(np.clip(np.searchsorted(self._c0, target, side="left") - 1, 0, self.count.shape[0] - 1))
        c = self.count[j]
        frac = 0.0 if c == 0 else (target - self._c0[j]) / c
        return float(self.left[j] + min(max(frac, 0.0), 1.0) * (self.right[j] - self.left[j]))


def _approx_error(bins: Bins, lo_q: np.ndarray, hi_q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Expected total squared error (fast model): ``scale**2 / 12`` per value inside the
    representable range, squared distance to the clamp level outside it."""
    n0l, n1l, n2l = bins.moments_below(lo_q)
    n0h, n1h, n2h = bins.moments_below(hi_q)
    t0, t1, t2 = bins.total - n0h, bins._c1[-1] - n1h, bins._c2[-1] - n2h
    below = n2l - 2 * lo_q * n1l + lo_q * lo_q * n0l
    above = t2 - 2 * hi_q * t1 + hi_q * hi_q * t0
    inside = np.maximum(n0h - n0l - bins.zeros, 0) * scale * scale / 12  # zeros are exact
    return np.maximum(below, 0) + np.maximum(above, 0) + inside


def _h(y: np.ndarray, qmin: float, qmax: float) -> np.ndarray:
    """Antiderivative of ``(y - clamp(round(y), qmin, qmax))**2``, zero at ``qmin - 0.5``.

    Inside ``[qmin - 0.5, qmax + 0.5]`` each unit cell adds 1/12; beyond it the clamp error grows
    as a cube. The outer terms vanish inside, so no branches are needed.
    """
    c0, c1 = qmin - 0.5, qmax + 0.5
    yc = np.clip(y, c0, c1)
    k = np.floor(yc + 0.5)
    np.minimum(k, qmax, out=k)
    yc -= k  # offset from the nearest level
    h = yc * yc
    h *= yc
    u = np.maximum(y, c1)
    u -= qmax
    h += u * u * u
    np.minimum(y, c0, out=u)
    u -= qmin
    h += u * u * u
    h += 0.125
    h /= 3
    k -= qmin
    k /= 12
    h += k
    return h


def expected_sq_error(bins: Bins, scale: np.ndarray, zero_point: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    """Expected total squared quantization error of the histogram's values for each candidate
    ``(scale, zero_point)`` (1-d arrays), values uniform within each bin."""
    s = np.asarray(scale, np.float64)[:, None]
    zp = np.asarray(zero_point, np.float64)[:, None]
    edges = np.concatenate((bins.left, bins.right[-1:]))  # bins are contiguous
    y = edges / s + zp
    h = _h(y, qmin, qmax)
    dy = np.diff(y, axis=1)
    width = np.diff(edges)
    mean_sq = np.diff(h, axis=1) / np.where(dy > 0, dy, 1.0)
    if np.any(width <= 0):  # a zero-width last bin: values all equal to max
        point = y[:, :-1]
        point_err = (point - np.clip(np.rint(point), qmin, qmax)) ** 2
        mean_sq = np.where(width > 0, mean_sq, point_err)
    return (mean_sq @ bins.count) * (s[:, 0] ** 2)


def _levels(lo: np.ndarray, hi: np.ndarray, choose, qmin: int, qmax: int):
    scale, zp = choose(lo, hi)
    scale = np.asarray(scale, np.float64)
    zp = np.asarray(zp, np.float64)
    return scale, zp, (qmin - zp) * scale, (qmax - zp) * scale


def mse_range(bins: Bins, choose, qmin: int, qmax: int, symmetric: bool) -> tuple[float, float]:
    """The clipping range ``(lo, hi)`` minimizing expected quantization MSE.

    Coordinate descent over bin edges with the fast error model (every candidate costs O(1) via
    prefix sums), then the best few candidates are re-ranked with the exact uniform-bin error.
    ``choose(lo, hi)`` maps candidate arrays to ``(scale, zero_point)`` arrays.
    """
    edges = np.unique(np.concatenate((bins.left, bins.right)))
    mn, mx = bins.min_val, bins.max_val
    pool_lo: list[np.ndarray] = []
    pool_hi: list[np.ndarray] = []
    pool_err: list[np.ndarray] = []

    def evaluate(lo, hi):
        scale, _, lo_q, hi_q = _levels(lo, hi, choose, qmin, qmax)
        err = _approx_error(bins, lo_q, hi_q, scale)
        pool_lo.append(lo)
        pool_hi.append(hi)
        pool_err.append(err)
        return err

    # Symmetric ranges are [-t, t]; below the data's smallest magnitude t only clips everything.
    t_min = 0.0 if mn <= 0.0 <= mx else min(abs(mn), abs(mx))
    if symmetric:
        t = np.unique(np.abs(edges[(edges >= mn) & (edges <= mx)]))
        t = t[(t > 0) & (t >= t_min)]
        if t.size == 0:
            return mn, mx
        lo = np.maximum(-t, mn)
        hi = np.minimum(t, mx)
        evaluate(lo, hi)
    else:
        # Every other edge is enough here: the local refinement below walks the half-bin lattice.
        cand_hi = edges[(edges >= max(mn, 0.0)) & (edges <= mx)][::-2]
        cand_lo = edges[(edges <= min(mx, 0.0)) & (edges >= mn)][::2]
        cand_hi = cand_hi if cand_hi.size else np.array([mx])
        cand_lo = cand_lo if cand_lo.size else np.array([mn])
        a, b = mn, mx
        for _ in range(2):
            err = evaluate(np.full(cand_hi.shape, a), cand_hi)
            b_new = float(cand_hi[int(np.argmin(err))])
            err = evaluate(cand_lo, np.full(cand_lo.shape, b_new))
            a_new = float(cand_lo[int(np.argmin(err))])
            if (a_new, b_new) == (a, b):
                break
            a, b = a_new, b_new
    best = int(np.argmin(np.concatenate(pool_err)))
    a, b = float(np.concatenate(pool_lo)[best]), float(np.concatenate(pool_hi)[best])
    half = bins.width / 2

    def local(a, b, offsets, score):
        """Coordinate descent on a half-bin lattice around (a, b) under ``score``."""
        if symmetric:
            t = np.clip(max(-a, b) + offsets, max(half, t_min), max(-mn, mx))
            cl, ch = np.maximum(-t, mn), np.minimum(t, mx)
            k = int(np.argmin(score(cl, ch)))
            return float(cl[k]), float(ch[k])
        ch = np.clip(b + offsets, max(mn, 0.0), mx)
        b = float(ch[int(np.argmin(score(np.full(ch.shape, a), ch)))])
        cl = np.clip(a + offsets, mn, min(mx, 0.0))
        a = float(cl[int(np.argmin(score(cl, np.full(cl.shape, b))))])
        return a, b

    for _ in range(2):  # the fast model between the bin edges
        a2, b2 = local(a, b, np.arange(-16, 17) * half, evaluate)
        if (a2, b2) == (a, b):
            break
        a, b = a2, b2

    # Re-rank the best distinct candidates with the exact uniform-bin error, then polish locally.
    lo = np.concatenate(pool_lo + [np.array([mn])])
    hi = np.concatenate(pool_hi + [np.array([mx])])
    err = np.concatenate(pool_err + [np.array([np.inf])])
    keep: list[int] = []
    seen: set = set()
    for k in np.argsort(err, kind="stable")[:400].tolist():
        if (lo[k], hi[k]) not in seen:
            seen.add((lo[k], hi[k]))
            keep.append(k)
            if len(keep) == 6:
                break
    lo = np.concatenate((lo[keep], [mn]))
    hi = np.concatenate((hi[keep], [mx]))

    def exact(lo, hi):
        scale, zp, _, _ = _levels(lo, hi, choose, qmin, qmax)
        # Small batches keep the temporaries near 64 KiB: below malloc's mmap threshold.
        rows = max(1, (1 << 13) // max(1, bins.count.shape[0]))
        return np.concatenate(
            [expected_sq_error(bins, scale[i : i + rows], zp[i : i + rows], qmin, qmax) for i in range(0, scale.size, rows)]
        )

    k = int(np.argmin(exact(lo, hi)))
    a, b = float(lo[k]), float(hi[k])
    # One exact polish step: both ends moved by up to 3 half-bins, in a single batch.
    d = np.arange(-3, 4) * half
    if symmetric:
        t = np.clip(max(-a, b) + d, max(half, t_min), max(-mn, mx))
        cl, ch = np.maximum(-t, mn), np.minimum(t, mx)
    else:
        cl = np.concatenate((np.clip(a + d, mn, min(mx, 0.0)), np.full(d.shape, a)))
        ch = np.concatenate((np.full(d.shape, b), np.clip(b + d, max(mn, 0.0), mx)))
    k = int(np.argmin(exact(cl, ch)))
    return float(cl[k]), float(ch[k])


def percentile_range(bins: Bins, percentile: float, symmetric: bool) -> tuple[float, float]:
    """Keeps ``percentile`` % of the values: cuts ``(100 - percentile) / 2`` % from each tail, or
    (symmetric) the top ``100 - percentile`` % by magnitude."""
    keep = percentile / 100.0
    mn, mx = bins.min_val, bins.max_val
    if not symmetric:
        tail = (1.0 - keep) / 2
        return bins.quantile(tail), bins.quantile(1.0 - tail)
    edges = np.unique(np.abs(np.concatenate((bins.left, bins.right, [mn, mx]))))
    inside = bins.cdf(edges) - bins.cdf(-edges)  # mass with |x| <= t, t on the edges
    target = keep * bins.total
    j = int(np.searchsorted(inside, target, side="left"))
    if j >= edges.size:
        t = float(edges[-1])
    elif j == 0:
        t = float(edges[0])
    else:  # linear between the two edges around the target mass
        m0, m1 = inside[j - 1], inside[j]
        f = 0.0 if m1 == m0 else (target - m0) / (m1 - m0)
        t = float(edges[j - 1] + f * (edges[j] - edges[j - 1]))
    return max(-t, mn), min(t, mx)


def entropy_range(counts: np.ndarray, e: int, base: int, bins: Bins, levels: int) -> tuple[float, float]:
    """TensorRT-style KL-divergence threshold on the histogram of ``|x|``.

    For each threshold ``i`` (in bins of the ``|x|`` grid, ``i >= levels``): ``P`` is the histogram
    up to ``i`` with the outliers added to its last bin, ``Q`` merges those ``i`` bins into
    ``levels`` groups and spreads each group's mass over its nonzero bins; the threshold minimizing
    ``KL(P || Q)`` wins. Vectorized over thresholds with prefix sums (O(levels) per threshold).
    """
    n = counts.shape[0]
    g = base + np.arange(n, dtype=np.int64)
    nz = counts != 0
    g, c = g[nz], counts[nz]
    k_abs = np.where(g >= 0, g, -g - 1)  # |x| bin on the same grid: exact fold
    shift = 0
    while int(k_abs.max()) >> shift >= 4 * max(n, levels):  # data far from 0: coarsen exactly
        shift += 1
    k_abs = k_abs >> shift
    w = 2.0 ** (e + shift)
    size = int(k_abs.max()) + 1
    hist = np.bincount(k_abs, weights=c.astype(np.float64), minlength=size)
    total = hist.sum()
    mn, mx = bins.min_val, bins.max_val
    if size <= levels:
        return mn, mx
    s0 = np.concatenate(([0.0], np.cumsum(hist)))
    with np.errstate(divide="ignore", invalid="ignore"):
        hlogh = np.where(hist > 0, hist * np.log(np.where(hist > 0, hist, 1.0)), 0.0)
    s_hlogh = np.concatenate(([0.0], np.cumsum(hlogh)))
    s_nz = np.concatenate(([0], np.cumsum(hist > 0)))
    best_i, best_kl = size, np.inf
    cand = np.arange(levels, size + 1)
    for chunk in np.array_split(cand, max(1, cand.size * levels // (1 << 18))):
        i = chunk[:, None]
        m = i // levels
        j = np.arange(levels)[None, :]
        start = j * m
        stop = np.where(j == levels - 1, i, (j + 1) * m)
        q = s0[stop] - s0[start]
        nzc = (s_nz[stop] - s_nz[start]).astype(np.float64)
        out = total - s0[chunk]  # outliers beyond the threshold
        last = hist[chunk - 1]
        # The last bin of P holds the outliers too: it may be nonzero even where hist is zero.
        nzc[:, -1] += ((last == 0) & (out > 0)).astype(np.float64)
        pmass = q.copy()
        pmass[:, -1] += out
        sq = s0[chunk]
        with np.errstate(divide="ignore", invalid="ignore"):
            logq = np.where(nzc > 0, np.log(np.where(q > 0, q, 1.0)) - np.log(np.where(nzc > 0, nzc, 1.0)), 0.0)
            bad = ((pmass > 0) & (q <= 0)).any(axis=1)
            p_last = last + out
            plogp = s_hlogh[chunk - 1] + np.where(p_last > 0, p_last * np.log(np.where(p_last > 0, p_last, 1.0)), 0.0)
            cross = (pmass * logq).sum(axis=1) - total * np.log(sq)
            kl = (plogp - cross) / total - np.log(total)
        kl = np.where(bad | (sq <= 0), np.inf, kl)
        k = int(np.argmin(kl))
        if kl[k] < best_kl:
            best_kl, best_i = float(kl[k]), int(chunk[k])
    t = best_i * w
    return max(-t, mn), min(t, mx)
