"""Tests for lowbit.observers and the reduction kernels behind them: every ISA against NumPy,
equality with PyTorch's observers, exact merges, bounded state, NaN/inf policy, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import lowbit
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from lowbit import _core
from lowbit.core import _histogram

SIZES = [0, 1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 1000, 100_003, 300_007]
ALL_OBSERVERS = [
    lowbit.MinMaxObserver,
    lowbit.MovingAverageMinMaxObserver,
    lowbit.PerChannelMinMaxObserver,
    lowbit.MovingAveragePerChannelMinMaxObserver,
    lowbit.HistogramObserver,
    lowbit.PowerOfTwoObserver,
]


def with_nonfinite(x, rng, k=5):
    x = x.copy()
    if x.size:
        idx = rng.choice(x.size, size=min(k, x.size), replace=False)
        x.flat[idx] = rng.choice(np.float32([np.nan, np.inf, -np.inf]), size=idx.size)
    return x


# --- kernels, each ISA, against NumPy ----------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_minmax_f32_matches_numpy(isa, rng, n, offset):
    buf = rng.standard_normal(n + offset).astype(np.float32) * 10
    x = with_nonfinite(buf, rng)[offset:]
    before = x.copy()
    mn, mx, bad = _core.minmax_f32(x)
    fin = x[np.isfinite(x)]
    assert bad == x.size - fin.size
    if fin.size:
        assert (mn, mx) == (fin.min(), fin.max())
    else:
        assert (mn, mx) == (np.inf, -np.inf)
    np.testing.assert_array_equal(x, before)


def test_minmax_f32_extremes(isa):
    big = np.finfo(np.float32).max
    x = np.float32([np.nan] * 40 + [-big, big, -0.0, 1e-45] + [np.inf] * 21)
    assert _core.minmax_f32(x) == (-big, big, 61)
    assert _core.minmax_f32(np.full(33, np.nan, np.float32)) == (np.inf, -np.inf, 33)


@pytest.mark.parametrize("layout", ["nan_block", "inf_blocks", "scattered"])
def test_minmax_f32_nonfinite_in_blocks(isa, rng, layout):
    """The fast path works on blocks of 2**14 elements and redoes a block holding NaN or +-inf
    exactly; the true extremes sit in other blocks than the non-finite values."""
    n = 3 * (1 << 14) + 77
    x = rng.standard_normal(n).astype(np.float32)
    x[2 * (1 << 14) + 5], x[40] = -7.5, 9.25
    if layout == "nan_block":
        x[: 1 << 14] = np.nan
    elif layout == "inf_blocks":
        x[(1 << 14) + 3], x[(1 << 14) + 100], x[-1] = np.inf, -np.inf, np.nan
    else:
        x[rng.choice(n, 200, replace=False)] = rng.choice(np.float32([np.nan, np.inf, -np.inf]), 200)
        x[2 * (1 << 14) + 5], x[40] = -7.5, 9.25
    fin = x[np.isfinite(x)]
    assert _core.minmax_f32(x) == (fin.min(), fin.max(), n - fin.size)


@pytest.mark.parametrize(
    "shape,axis",
    [((5, 7, 3), 1), ((64, 768), -1), ((64, 768), 0), ((4, 16, 40), 1), ((3, 1000), 0), ((2, 5, 17), 2),
     ((300, 33), 1), ((7,), 0), ((1, 1), 0), ((2, 3, 4, 5), 2), ((2048, 65), 0), ((40, 3, 31), 1)],
)
def test_minmax_per_channel_matches_numpy(isa, rng, shape, axis):
    x = with_nonfinite(rng.standard_normal(shape).astype(np.float32), rng)
    mn, mx, bad = _core.minmax_per_channel_f32(x, axis)
    y = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    fin = np.where(np.isfinite(y), y, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channels
        want_lo = np.where(np.isnan(np.nanmin(fin, 1)), np.inf, np.nanmin(fin, 1))
        want_hi = np.where(np.isnan(np.nanmax(fin, 1)), -np.inf, np.nanmax(fin, 1))
    np.testing.assert_array_equal(mn, want_lo)
    np.testing.assert_array_equal(mx, want_hi)
    assert bad == int((~np.isfinite(x)).sum())


def test_minmax_per_channel_empty_channels(isa):
    mn, mx, bad = _core.minmax_per_channel_f32(np.zeros((0, 4), np.float32), 1)
    np.testing.assert_array_equal(mn, np.full(4, np.inf, np.float32))
    np.testing.assert_array_equal(mx, np.full(4, -np.inf, np.float32))
    assert bad == 0


def numpy_histogram(x, e, base, bins):
    f = x[np.isfinite(x)]
    idx = np.clip(np.floor(f.astype(np.float64) * 2.0**-e) - base, 0, bins - 1).astype(np.int64)
    return np.bincount(idx, minlength=bins)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("grid", [(-8, -1024, 2048), (-20, 3_000_000, 16), (3, -2, 100)])
def test_histogram_f32_matches_numpy(isa, rng, n, grid):
    e, base, bins = grid
    x = with_nonfinite((rng.standard_normal(n + 1) * 4).astype(np.float32), rng)[1:]
    x[: n // 10] = 0.0
    x[n // 10 : n // 5] = -0.0
    counts, bad, zeros, mn, mx = _core.histogram_f32(x, 2.0**-e, float(base), bins)
    np.testing.assert_array_equal(counts, numpy_histogram(x, e, base, bins))
    assert bad == int((~np.isfinite(x)).sum())
    assert zeros == int((x == 0).sum())
    fin = x[np.isfinite(x)]
    assert (mn, mx) == ((fin.min(), fin.max()) if fin.size else (np.inf, -np.inf))


@pytest.mark.parametrize("grid", [(-20, -1024, 2048), (-8, 3, 64), (100, -5, 16), (-120, 0, 100)])
def test_histogram_f32_extreme_values(isa, rng, grid):
    """Values far outside the grid (products that overflow float32 or do not fit an int32), tiny
    and denormal values of both signs, integers at bin edges: the slot equals the exact one."""
    e, base, bins = grid
    big = np.finfo(np.float32).max
    special = np.float32([big, -big, 1e30, -1e30, 3e9, -3e9, 1e-45, -1e-45, 1.2e-38, -1.2e-38, 2.0**-140,
                          -(2.0**-140), 1.0, -1.0, 0.5, -0.5, 2.0**-20, -(2.0**-20), 2.0**-19 * 3, 0.0, -0.0])
    x = rng.permutation(np.concatenate([np.tile(special, 7), (rng.standard_normal(300) * 8).astype(np.float32)]))
    counts, bad, zeros, mn, mx = _core.histogram_f32(x, 2.0**-e, float(base), bins)
    np.testing.assert_array_equal(counts, numpy_histogram(x, e, base, bins))
    assert (bad, zeros, mn, mx) == (0, int((x == 0).sum()), x.min(), x.max())


def test_histogram_f32_over_one_chunk(rng):
    """One task over 2**24 elements flushes its 32-bit counters into 64-bit ones chunk by chunk."""
    x = np.tile(with_nonfinite(rng.standard_normal(4099).astype(np.float32), rng, 3), 4200)[: (1 << 24) + 999]
    x[::1001] = 0.0
    saved = lowbit.get_num_threads()
    try:
        lowbit.set_num_threads(1)
        counts, bad, zeros, mn, mx = _core.histogram_f32(x, 2.0**-6, -300.0, 512)
    finally:
        lowbit.set_num_threads(saved)
    np.testing.assert_array_equal(counts, numpy_histogram(x, 6, -300, 512))
    assert (bad, zeros) == (int((~np.isfinite(x)).sum()), int((x == 0).sum()))


def test_kernels_identical_across_thread_counts(rng):
    x = with_nonfinite(rng.standard_normal(1_000_003).astype(np.float32), rng, 50)
    results = []
    saved = lowbit.get_num_threads()
    try:
        for threads in (1, 2, 3):
            lowbit.set_num_threads(threads)
            pc = _core.minmax_per_channel_f32(x[:1_000_000].reshape(1000, 1000), 1)
            results.append(
                (
                    _core.minmax_f32(x),
                    _core.histogram_f32(x, 2.0**-6, -300.0, 2048)[0].tolist(),
                    _core.histogram_f32(np.maximum(x, 0), 2.0**-6, -300.0, 2048)[2],
                    pc[0].tolist(),
                    pc[1].tolist(),
                )
            )
    finally:
        lowbit.set_num_threads(saved)
    assert results[0] == results[1] == results[2]


def test_kernel_bad_input():
    with pytest.raises(TypeError, match="x"):
        _core.minmax_f32(np.zeros(3))
    with pytest.raises(ValueError, match="x"):
        _core.minmax_f32(np.zeros((4, 4), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="axis"):
        _core.minmax_per_channel_f32(np.zeros((2, 3), np.float32), 2)
    with pytest.raises(ValueError, match="scale"):
        _core.histogram_f32(np.zeros(3, np.float32), 3.0, 0.0, 16)
    with pytest.raises(ValueError, match="base"):
        _core.histogram_f32(np.zeros(3, np.float32), 1.0, 0.5, 16)
    with pytest.raises(ValueError, match="bins"):
        _core.histogram_f32(np.zeros(3, np.float32), 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="bins"):
        _core.histogram_f32(np.zeros(3, np.float32), 1.0, 0.0, (1 << 16) + 1)


def test_kernel_bindings_fuzz(rng):
    """Odd shapes, dtypes, layouts and arguments: a result or TypeError/ValueError, never a crash."""
    arrays = [
        np.float32(3.0), np.zeros(0, np.float32), np.zeros((3, 0, 4), np.float32), np.zeros((0, 5), np.float32),
        np.ones((2, 3), np.float64), np.ones((4, 4), np.float32)[:, ::2], np.ones(5, np.int32), np.ones(3, np.float16),
        rng.standard_normal((2, 1, 3, 1)).astype(np.float32), np.array(["a"]), np.ones((2, 2), np.float32).T,
    ]
    scales = [1.0, 0.0, -1.0, float("nan"), float("inf"), 3.0, 2.0**-149, 2.0**127]
    for a in arrays:
        for call in (
            lambda a=a: _core.minmax_f32(a),
            *[lambda a=a, ax=ax: _core.minmax_per_channel_f32(a, ax) for ax in (-5, -1, 0, 1, 3, 10)],
            *[lambda a=a, s=s, b=b, n=n: _core.histogram_f32(a, s, b, n)
              for s in scales for b in (0.0, 0.5, float("nan"), -1e30) for n in (-1, 0, 1, 16)],
        ):
            try:
                call()
            except (TypeError, ValueError):
                pass
    mn, _, bad = _core.minmax_per_channel_f32(np.zeros((3, 0, 4), np.float32), 0)
    assert mn.shape == (3,) and bad == 0 and np.all(np.isinf(mn))
    assert _core.minmax_per_channel_f32(np.zeros((3, 0, 4), np.float32), 1)[0].shape == (0,)


# --- the power-of-two grid ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "lo,hi", [(-1.0, 1.0), (0.0, 0.0), (1000.0, 1000.001), (-3e38, 3e38), (1e-30, 2e-30), (-5.0, -4.0), (0.0, 1e-40)]
)
@pytest.mark.parametrize("bins", [16, 2048])
def test_grid_is_finest_that_fits(lo, hi, bins):
    e, base = _histogram.grid_for(lo, hi, bins)
    lo, hi = float(np.float32(lo)), float(np.float32(hi))
    top = int(np.floor(hi * 2.0**-e)) - base
    assert int(np.floor(lo * 2.0**-e)) == base and 0 <= top < bins
    if hi > lo and e > -100:  # one step finer would not fit (unless at the magnitude floor)
        finer = int(np.floor(hi * 2.0 ** -(e - 1))) - int(np.floor(lo * 2.0 ** -(e - 1))) + 1
        e_floor = np.frexp(max(abs(lo), abs(hi)))[1] - 41
        assert finer > bins or e - 1 < e_floor


def test_histogram_bins_exact_for_underflowing_products(isa):
    """A tiny negative value times 2**-e underflows to -0 in float32 yet must land in bin -1."""
    x = np.float32([-8.98232e-43, -1e-45, -1.31073e05, 1e-45, -3e-39])
    e, base = _histogram.grid_for(x.min(), x.max(), 128)
    counts = _core.histogram_f32(x, 2.0**-e, float(base), 128)[0]
    np.testing.assert_array_equal(counts, numpy_histogram(x, e, base, 128))
    single = lowbit.HistogramObserver(bins=128)
    single.update(x)
    merged = lowbit.HistogramObserver(bins=128)
    for v in x:
        part = lowbit.HistogramObserver(bins=128)
        part.update(np.float32([v]))
        merged.merge(part)
    assert merged.state_dict() == single.state_dict()


# --- equality with PyTorch ----------------------------------------------------------------------

TORCH_CONFIGS = [("uint8", False, False), ("int8", False, False), ("int8", True, False), ("uint8", True, False),
                 ("uint8", False, True), ("int8", True, True)]


def torch_observer(torch, cls, dtype, symmetric, reduce_range, per_channel=False, **kw):
    from torch.ao import quantization as tq

    tdt = {"uint8": torch.quint8, "int8": torch.qint8}[dtype]
    if per_channel:
        scheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    else:
        scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reduce_range deprecation notice
        return getattr(tq, cls)(dtype=tdt, qscheme=scheme, reduce_range=reduce_range, **kw)


def batches_for(rng, shape=(16, 24), n=5):
    return [(rng.standard_normal(shape) * (1 + i) + (i - 2) * 0.3).astype(np.float32) for i in range(n)]


@pytest.mark.parametrize("dtype,symmetric,reduce_range", TORCH_CONFIGS)
@pytest.mark.parametrize("cls", ["MinMaxObserver", "MovingAverageMinMaxObserver"])
def test_per_tensor_matches_torch(rng, cls, dtype, symmetric, reduce_range):
    torch = pytest.importorskip("torch")
    kw = {"averaging_constant": 0.1} if cls.startswith("Moving") else {}
    ours = getattr(lowbit, cls)(dtype=dtype, symmetric=symmetric, reduce_range=reduce_range, **kw)
    theirs = torch_observer(torch, cls, dtype, symmetric, reduce_range, **kw)
    for b in batches_for(rng):
        ours.update(b)
        theirs(torch.from_numpy(b))
    assert (ours.min_val, ours.max_val) == (theirs.min_val.item(), theirs.max_val.item())
    scale, zp = ours.compute_qparams()
    tscale, tzp = theirs.calculate_qparams()
    assert np.float32(scale) == tscale.item() and zp == tzp.item()


@pytest.mark.parametrize("dtype,symmetric,reduce_range", TORCH_CONFIGS)
@pytest.mark.parametrize("cls", ["PerChannelMinMaxObserver", "MovingAveragePerChannelMinMaxObserver"])
@pytest.mark.parametrize("shape,axis", [((16, 24), 0), ((8, 6, 5), 1), ((4, 3, 40), -1)])
def test_per_channel_matches_torch(rng, cls, dtype, symmetric, reduce_range, shape, axis):
    torch = pytest.importorskip("torch")
    kw = {"averaging_constant": 0.1} if cls.startswith("Moving") else {}
    ours = getattr(lowbit, cls)(axis=axis, dtype=dtype, symmetric=symmetric, reduce_range=reduce_range, **kw)
    theirs = torch_observer(torch, cls, dtype, symmetric, reduce_range, per_channel=True,
                            ch_axis=axis % len(shape), **kw)
    for b in batches_for(rng, shape):
        ours.update(b)
        theirs(torch.from_numpy(b))
    np.testing.assert_array_equal(ours.min_val, theirs.min_val.numpy())
    np.testing.assert_array_equal(ours.max_val, theirs.max_val.numpy())
    scale, zp = ours.compute_qparams()
    tscale, tzp = theirs.calculate_qparams()
    np.testing.assert_array_equal(scale, tscale.numpy())
    np.testing.assert_array_equal(zp, tzp.numpy())


def quant_mse(x, scale, zp, dtype):
    qmin, qmax = lowbit.qrange(dtype)
    inv = np.float32(1.0) / np.float32(scale)
    q = np.clip(np.rint(x * inv) + zp, qmin, qmax)
    return float(np.mean(((q - zp) * np.float32(scale) - x).astype(np.float64) ** 2))


DISTRIBUTIONS = {
    "normal": lambda rng, n: rng.standard_normal(n),
    "laplace": lambda rng, n: rng.laplace(size=n),
    "student_t2": lambda rng, n: rng.standard_t(2, size=n),
    "lognormal": lambda rng, n: rng.lognormal(0.0, 1.0, n),
    "relu": lambda rng, n: np.maximum(rng.standard_normal(n), 0.0),
}


@pytest.mark.parametrize("dist", list(DISTRIBUTIONS))
@pytest.mark.parametrize("dtype,symmetric", [("uint8", False), ("int8", False), ("int8", True)])
def test_histogram_mse_not_worse_than_torch(rng, dist, dtype, symmetric):
    torch = pytest.importorskip("torch")
    batches = [(DISTRIBUTIONS[dist](rng, 40_000) * (1 + 0.3 * i)).astype(np.float32) for i in range(4)]
    ours = lowbit.HistogramObserver(dtype=dtype, symmetric=symmetric)
    theirs = torch_observer(torch, "HistogramObserver", dtype, symmetric, False)
    for b in batches:
        ours.update(b)
        theirs(torch.from_numpy(b))
    x = np.concatenate(batches)
    scale, zp = ours.compute_qparams()
    tscale, tzp = theirs.calculate_qparams()
    assert quant_mse(x, scale, zp, dtype) <= quant_mse(x, tscale.item(), int(tzp.item()), dtype)


# --- histogram observer -------------------------------------------------------------------------


def test_histogram_counts_match_numpy_after_growth(rng):
    obs = lowbit.HistogramObserver(bins=512)
    data = [rng.standard_normal(5000).astype(np.float32) * s + o for s, o in [(0.01, 0), (1, 3), (100, -50), (0.5, 0)]]
    for b in data:
        obs.update(b)
    x = np.concatenate(data)
    e, base = obs._grid
    assert (e, base) == _histogram.grid_for(x.min(), x.max(), 512)
    np.testing.assert_array_equal(obs.counts, numpy_histogram(x, e, base, 512))
    assert (obs.min_val, obs.max_val) == (x.min(), x.max())


def test_histogram_constant_and_single_value():
    obs = lowbit.HistogramObserver()
    obs.update(np.full(100, 2.5, np.float32))
    assert obs.clip_range() == (2.5, 2.5)
    assert obs.compute_qparams() == lowbit.choose_qparams(2.5, 2.5, dtype="int8")
    obs.update(np.float32([-1.0]))
    assert int(obs.counts.sum()) == 101


@pytest.mark.parametrize("symmetric", [False, True])
def test_percentile_range(rng, symmetric):
    x = rng.uniform(-1, 3, 200_000).astype(np.float32)
    obs = lowbit.HistogramObserver(method="percentile", percentile=99.0, symmetric=symmetric)
    obs.update(x)
    lo, hi = obs.clip_range()
    w = 4 / 1024
    if symmetric:
        t = np.quantile(np.abs(x), 0.99)
        assert abs(hi - min(t, 3)) < w and abs(lo + min(t, 1)) < w
    else:
        assert abs(lo - np.quantile(x, 0.005)) < w and abs(hi - np.quantile(x, 0.995)) < w


def kl_threshold_reference(counts, e, base, levels):
    """TensorRT/MXNet-style KL threshold search, one threshold at a time (the spec)."""
    g = base + np.arange(counts.size)
    k = np.where(g >= 0, g, -g - 1)
    hist = np.bincount(k, weights=counts.astype(np.float64))
    best, best_kl = None, np.inf
    for i in range(levels, hist.size + 1):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()
        nz = p > 0
        m = i // levels
        q = np.zeros(i)
        for j in range(levels):
            a, b = j * m, (i if j == levels - 1 else (j + 1) * m)
            n = nz[a:b].sum()
            if n:
                q[a:b][nz[a:b]] = hist[a:b].sum() / n
        if np.any(nz & (q == 0)):
            continue
        pn, qn = p[nz] / p.sum(), q[nz] / q.sum()
        kl = float(np.sum(pn * np.log(pn / qn)))
        if kl < best_kl - 1e-12:
            best, best_kl = i, kl
    return best * 2.0**e


@pytest.mark.parametrize("dist", ["normal", "laplace"])
def test_entropy_matches_reference_search(rng, dist):
    x = (DISTRIBUTIONS[dist](rng, 200_000)).astype(np.float32)
    obs = lowbit.HistogramObserver(bins=512, method="entropy", symmetric=True)
    obs.update(x)
    lo, hi = obs.clip_range()
    t = kl_threshold_reference(obs.counts, *obs._grid, 128)
    assert hi == pytest.approx(min(t, obs.max_val), rel=1e-6)
    assert lo == pytest.approx(max(-t, obs.min_val), rel=1e-6)
    _, zp = obs.compute_qparams()
    assert zp == 0


@pytest.mark.parametrize("method", ["mse", "percentile", "entropy"])
@pytest.mark.parametrize("dtype,symmetric", [("uint8", False), ("int8", True), ("int4", False), ("uint4", True)])
@pytest.mark.parametrize(
    "data",
    [[1000.0, 1000.001, 1000.5], [-2.0, -1.0, -1.5], [1e-45, 2e-45], [-1e-40, 1e30], [0.0, -0.0], [7.0] * 3,
     [-1.0, 0.0, 1e6]],
)
def test_histogram_methods_on_odd_data(rng, method, dtype, symmetric, data):
    x = np.float32(data)
    obs = lowbit.HistogramObserver(bins=64, method=method, dtype=dtype, symmetric=symmetric)
    obs.update(x)
    lo, hi = obs.clip_range()
    assert obs.min_val <= lo <= hi <= obs.max_val
    scale, zp = obs.compute_qparams()
    qmin, qmax = lowbit.qrange(dtype)
    assert np.isfinite(scale) and scale > 0 and qmin <= zp <= qmax


# --- merge, state, memory -----------------------------------------------------------------------


def make(cls, **kw):
    if cls in (lowbit.PerChannelMinMaxObserver, lowbit.MovingAveragePerChannelMinMaxObserver):
        kw.setdefault("axis", 1)
    return cls(**kw)


@pytest.mark.parametrize("cls", ALL_OBSERVERS)
def test_merge_equals_single_pass(rng, cls):
    batches = [(rng.standard_t(3, (20, 12)) * (1 + i % 3)).astype(np.float32) for i in range(9)]
    single = make(cls)
    for b in batches:
        single.update(b)
    parts = [make(cls) for _ in range(3)]
    for i, b in enumerate(batches):
        parts[i // 3].update(b)  # contiguous shards, so moving averages see the same order
    merged = make(cls)
    for p in parts:
        merged.merge(p)
    if "MovingAverage" in cls.__name__:
        np.testing.assert_allclose(merged.min_val, single.min_val, rtol=1e-5)
        np.testing.assert_allclose(merged.max_val, single.max_val, rtol=1e-5)
    else:
        assert merged.state_dict() == single.state_dict()
        for got, want in zip(merged.compute_qparams(), single.compute_qparams()):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("cls", [lowbit.MinMaxObserver, lowbit.HistogramObserver, lowbit.PerChannelMinMaxObserver])
def test_merge_is_order_independent(rng, cls):
    batches = [(rng.standard_normal((10, 7)) * 3**i).astype(np.float32) for i in range(4)]
    obs = [make(cls) for _ in batches]
    for o, b in zip(obs, batches):
        o.update(b)
    a, b = make(cls), make(cls)
    for o in obs:
        a.merge(o)
    for o in reversed(obs):
        b.merge(o)
    assert a.state_dict() == b.state_dict()


@pytest.mark.parametrize("cls", ALL_OBSERVERS)
def test_state_dict_json_round_trip(rng, cls):
    obs = make(cls)
    empty = json.loads(json.dumps(obs.state_dict(), allow_nan=False))
    assert type(lowbit.Observer.from_state_dict(empty)) is cls
    for _ in range(3):
        obs.update(rng.standard_normal((6, 5)).astype(np.float32))
    d = json.loads(json.dumps(obs.state_dict(), allow_nan=False))
    back = cls.from_state_dict(d)
    assert back.state_dict() == obs.state_dict()
    s1, z1 = back.compute_qparams()
    s2, z2 = obs.compute_qparams()
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(z1, z2)


def test_from_state_dict_bad_input():
    d = lowbit.MinMaxObserver().state_dict()
    with pytest.raises(ValueError, match="d"):
        lowbit.Observer.from_state_dict({"type": "Nope", "version": 1, "config": {}, "state": {}})
    with pytest.raises(ValueError, match="d"):
        lowbit.HistogramObserver.from_state_dict(d)
    with pytest.raises(ValueError, match="version"):
        lowbit.Observer.from_state_dict({**d, "version": 99})
    with pytest.raises(ValueError, match="d"):
        lowbit.Observer.from_state_dict([1, 2])
    with pytest.raises(ValueError, match="config"):
        lowbit.Observer.from_state_dict({**d, "config": {**d["config"], "colour": 1}})
    with pytest.raises(ValueError, match="dtype"):
        lowbit.Observer.from_state_dict({**d, "config": {**d["config"], "dtype": "int3"}})
    h = lowbit.HistogramObserver(bins=16)
    h.update(np.float32([1, 2, 3]))
    bad = h.state_dict()
    bad["state"]["counts"] = bad["state"]["counts"][:-1]
    with pytest.raises(ValueError, match="malformed"):
        lowbit.Observer.from_state_dict(bad)


def test_memory_is_bounded(rng):
    obs = lowbit.HistogramObserver(bins=256)
    sizes = []
    for i in range(40):
        obs.update((rng.standard_normal(1000) * 1.5**i).astype(np.float32))
        sizes.append(len(json.dumps(obs.state_dict())))
        assert obs.counts.shape == (256,)
    assert max(sizes) < 256 * 12 + 400
    assert int(obs.counts.sum()) == 40_000
    pc = lowbit.PerChannelMinMaxObserver(axis=0)
    for _ in range(20):
        pc.update(rng.standard_normal((8, 100)).astype(np.float32))
    assert pc.min_val.shape == (8,)


def test_merge_incompatible_raises():
    with pytest.raises(ValueError, match="other"):
        lowbit.MinMaxObserver().merge(lowbit.PowerOfTwoObserver())
    with pytest.raises(ValueError, match="other"):
        lowbit.MinMaxObserver(dtype="int8").merge(lowbit.MinMaxObserver(dtype="uint8"))
    with pytest.raises(ValueError, match="other"):
        lowbit.HistogramObserver(bins=64).merge(lowbit.HistogramObserver(bins=128))
    a, b = lowbit.PerChannelMinMaxObserver(axis=0), lowbit.PerChannelMinMaxObserver(axis=0)
    a.update(np.zeros((3, 2), np.float32))
    b.update(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="channels"):
        a.merge(b)


def test_merge_with_empty_and_reset(rng):
    for cls in ALL_OBSERVERS:
        a = make(cls)
        a.update(rng.standard_normal((4, 3)).astype(np.float32))
        before = a.state_dict()
        a.merge(make(cls))
        assert a.state_dict() == before
        b = make(cls).merge(a)
        assert b.state_dict() == before
        a.reset()
        assert a.state_dict() == make(cls).state_dict()
        with pytest.raises(RuntimeError, match="no finite data"):
            a.compute_qparams()


# --- input policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_OBSERVERS)
def test_nonfinite_ignored_counted_warned_once(rng, cls):
    x = rng.standard_normal((6, 5)).astype(np.float32)
    clean = make(cls)
    clean.update(x)
    obs = make(cls)
    dirty = x.copy()
    dirty[0, 0], dirty[1, 1], dirty[2, 2] = np.nan, np.inf, -np.inf
    clean2 = make(cls)
    clean2.update(np.where(np.isfinite(dirty), dirty, 0.0).astype(np.float32)[3:])
    with pytest.warns(RuntimeWarning, match="NaN/inf"):
        obs.update(dirty)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obs.update(dirty)  # warned once only
    assert obs.nonfinite == 6
    one = make(cls)
    with pytest.warns(RuntimeWarning):
        one.update(dirty)
    if cls in (lowbit.MinMaxObserver, lowbit.PowerOfTwoObserver, lowbit.HistogramObserver):
        fin = dirty[np.isfinite(dirty)]
        assert (one.min_val, one.max_val) == (fin.min(), fin.max())


def test_all_nonfinite_batch_is_skipped():
    obs = lowbit.MovingAverageMinMaxObserver()
    with pytest.warns(RuntimeWarning):
        obs.update(np.full(4, np.nan, np.float32))
    assert obs.batches == 0
    with pytest.raises(RuntimeError):
        obs.compute_qparams()


@pytest.mark.parametrize("cls", ALL_OBSERVERS)
def test_empty_arrays_are_ignored(cls):
    obs = make(cls)
    obs.update(np.zeros((0, 3), np.float32))
    assert obs.state_dict() == make(cls).state_dict()
    with pytest.raises(RuntimeError, match="update"):
        obs.compute_qparams()


def test_torch_tensors_and_dtypes(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((8, 12)).astype(np.float32)
    a, b = lowbit.PerChannelMinMaxObserver(axis=1), lowbit.PerChannelMinMaxObserver(axis=1)
    a.update(x.T.copy().T)
    b.update(torch.from_numpy(x.T.copy()).t())  # non-contiguous tensor view
    np.testing.assert_array_equal(a.min_val, b.min_val)
    h = lowbit.HistogramObserver()
    h.update(torch.from_numpy(x).to(torch.bfloat16))
    h.update(x.astype(np.float64))
    h.update(x.astype(np.float16))
    assert int(h.counts.sum()) == 3 * x.size
    with pytest.warns(RuntimeWarning):
        h.update(np.float64([1e300]))  # overflows float32: non-finite
    assert h.nonfinite == 1


def test_caller_data_untouched(rng):
    x = rng.standard_normal((5, 7)).astype(np.float32)
    x[0, 0] = np.nan
    before = x.copy()
    for cls in ALL_OBSERVERS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            make(cls).update(x)
    np.testing.assert_array_equal(x, before)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="dtype"):
        lowbit.MinMaxObserver(dtype="int16")
    with pytest.raises(TypeError, match="symmetric"):
        lowbit.MinMaxObserver(symmetric="yes")
    with pytest.raises(ValueError, match="reduce_range"):
        lowbit.MinMaxObserver(dtype="uint8", symmetric=True, reduce_range=True)
    with pytest.raises(TypeError, match="x"):
        lowbit.MinMaxObserver().update(np.arange(4))
    with pytest.raises(TypeError, match="x"):
        lowbit.MinMaxObserver().update("abc")
    with pytest.raises(ValueError, match="averaging_constant"):
        lowbit.MovingAverageMinMaxObserver(averaging_constant=0.0)
    with pytest.raises(ValueError, match="averaging_constant"):
        lowbit.MovingAveragePerChannelMinMaxObserver(averaging_constant=1.5)
    with pytest.raises(TypeError, match="axis"):
        lowbit.PerChannelMinMaxObserver(axis=1.0)
    with pytest.raises(ValueError, match="axis"):
        lowbit.PerChannelMinMaxObserver(axis=2).update(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="axis"):
        lowbit.PerChannelMinMaxObserver(axis=0).update(np.float32(1.0))
    pc = lowbit.PerChannelMinMaxObserver(axis=0)
    pc.update(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="channels"):
        pc.update(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="bins"):
        lowbit.HistogramObserver(bins=8)
    with pytest.raises(ValueError, match="bins"):
        lowbit.HistogramObserver(bins=1 << 17)
    with pytest.raises(TypeError, match="bins"):
        lowbit.HistogramObserver(bins=2048.0)
    with pytest.raises(ValueError, match="method"):
        lowbit.HistogramObserver(method="kl")
    with pytest.raises(ValueError, match="percentile"):
        lowbit.HistogramObserver(percentile=100.5)


def test_power_of_two(rng):
    for dtype, symmetric in [("int8", True), ("uint8", False), ("int4", False), ("int8", False)]:
        obs = lowbit.PowerOfTwoObserver(dtype=dtype, symmetric=symmetric)
        x = (rng.standard_normal(1000) * 3 + 1).astype(np.float32)
        obs.update(x)
        scale, zp = obs.compute_qparams()
        base, _ = lowbit.choose_qparams(x.min(), x.max(), dtype=dtype, symmetric=symmetric)
        m, _ = np.frexp(scale)
        assert m == 0.5 and base <= scale < 2 * base
        qmin, qmax = lowbit.qrange(dtype)
        assert qmin <= zp <= qmax
        q = np.rint(x / np.float32(scale)) + zp
        assert q.min() >= qmin - 1 and q.max() <= qmax + 1  # the observed range still fits


def test_plot_draws(rng):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for cls in ALL_OBSERVERS:
        obs = make(cls)
        obs.update(rng.standard_normal((20, 6)).astype(np.float32))
        ax = obs.plot()
        assert ax.get_title() == cls.__name__
        plt.close("all")


def test_import_lowbit_stays_light():
    code = "import sys, lowbit; print([m for m in ('torch', 'matplotlib', 'tqdm') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- properties -------------------------------------------------------------------------------

ANY_F32 = hnp.arrays(
    np.float32, st.integers(0, 300), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)
)


@settings(max_examples=150, deadline=None)
@given(x=ANY_F32)
def test_property_minmax_and_histogram_match_numpy(x):
    mn, mx, bad = _core.minmax_f32(x)
    fin = x[np.isfinite(x)]
    assert bad == x.size - fin.size
    assert (mn, mx) == ((fin.min(), fin.max()) if fin.size else (np.inf, -np.inf))
    if fin.size:
        e, base = _histogram.grid_for(mn, mx, 64)
        counts, bad2, zeros, mn2, mx2 = _core.histogram_f32(x, 2.0**-e, float(base), 64)
        np.testing.assert_array_equal(counts, numpy_histogram(x, e, base, 64))
        assert zeros == int((fin == 0).sum()) and bad2 == bad and (mn2, mx2) == (mn, mx)


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(np.float32, st.integers(1, 400), elements=st.floats(-1e6, 1e6, width=32)),
    cuts=st.lists(st.integers(0, 400), max_size=4),
)
def test_property_histogram_merge_equals_single_pass(x, cuts):
    pieces = np.split(x, sorted(c % (x.size + 1) for c in cuts))
    single = lowbit.HistogramObserver(bins=128)
    single.update(x)
    merged = lowbit.HistogramObserver(bins=128)
    streamed = lowbit.HistogramObserver(bins=128)
    for p in pieces:
        part = lowbit.HistogramObserver(bins=128)
        part.update(p)
        merged.merge(part)
        streamed.update(p)
    assert merged.state_dict() == single.state_dict() == streamed.state_dict()


def test_observers_in_concurrent_python_threads(rng):
    """The kernels release the GIL; observers used from several threads at once stay exact."""
    from concurrent.futures import ThreadPoolExecutor

    data = [rng.standard_normal((64, 4096)).astype(np.float32) * (i + 1) for i in range(6)]

    def run(x):
        obs = [lowbit.HistogramObserver(), lowbit.MinMaxObserver(), lowbit.PerChannelMinMaxObserver(axis=1)]
        for _ in range(3):
            for o in obs:
                o.update(x)
        return [o.state_dict() for o in obs]

    want = [run(x) for x in data]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(run, data))
    assert got == want


@pytest.mark.parametrize("name", ["lowbit.observers", "lowbit.calibration"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0
