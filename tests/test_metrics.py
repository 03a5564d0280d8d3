"""Tests for lowbit.metrics and the error_stats_f32 kernel behind it: every ISA against the NumPy
float64 formulas, thread-count independence, edge values (empty, zeros, NaN, inf), torch inputs,
bad input, model sizes."""

from __future__ import annotations

import math

import lowbit
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from lowbit import _core, metrics

SIZES = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 65_536, 65_537, 300_007]
RTOL = 1e-12  # documented in lowbit/metrics.hpp: double accumulation, chunked summation


def numpy_stats(x, y):
    a, b = x.astype(np.float64), y.astype(np.float64)
    d = a - b
    return (float(np.sum(d * d)), float(np.sum(a * a)), float(np.sum(b * b)), float(np.sum(a * b)),
            float(np.max(np.abs(d))) if d.size else 0.0)


def pair(rng, n, offset=0, noise=0.01):
    buf = rng.standard_normal(n + offset).astype(np.float32) * 3
    x = buf[offset:]
    y = (x + noise * rng.standard_normal(n).astype(np.float32)).astype(np.float32)
    return x, y


# --- kernel, each ISA, against NumPy -------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_error_stats_matches_numpy(isa, rng, n, offset):
    x, y = pair(rng, n, offset)
    got = _core.error_stats_f32(x, y)
    want = numpy_stats(x, y)
    np.testing.assert_allclose(got[:4], want[:4], rtol=RTOL, atol=1e-300)
    assert got[4] == want[4]  # the max picks one exact double difference


def test_error_stats_runs_the_forced_isa_kernel(isa, rng):
    x, y = pair(rng, 1000)
    chosen = lowbit.cpu_info()["ops"]["error_stats_f32"]
    assert chosen == isa or isa not in dict(_core.op_isas())["error_stats_f32"]
    before = dict(dict(_core.kernel_calls())["error_stats_f32"]).get(chosen, 0)
    _core.error_stats_f32(x, y)
    assert dict(dict(_core.kernel_calls())["error_stats_f32"])[chosen] == before + 1


def test_error_stats_independent_of_threads(rng):
    x, y = pair(rng, 1_000_003)
    old = lowbit.get_num_threads()
    try:
        lowbit.set_num_threads(1)
        one = _core.error_stats_f32(x, y)
        lowbit.set_num_threads(2)
        two = _core.error_stats_f32(x, y)
    finally:
        lowbit.set_num_threads(old)
    assert one == two


def test_large_values_do_not_overflow(isa):
    x = np.full(1000, 3e38, np.float32)
    y = -x
    sdd, saa, _, sab, mx = _core.error_stats_f32(x, y)
    assert math.isfinite(sdd) and math.isfinite(saa)  # float32 sums would overflow
    assert sab < 0
    assert mx == 6e38 or math.isclose(mx, 2 * float(np.float32(3e38)))


def test_nan_and_inf(isa):
    x = np.ones(100, np.float32)
    y = x.copy()
    y[37] = np.nan
    sdd, _, _, _, mx = _core.error_stats_f32(x, y)
    assert math.isnan(sdd) and math.isnan(mx)
    y = x.copy()
    y[50] = np.inf
    sdd, _, _, _, mx = _core.error_stats_f32(x, y)
    assert sdd == math.inf and mx == math.inf
    assert math.isnan(metrics.mse(np.float32([np.inf]), np.float32([np.inf])))  # inf - inf


def test_kernel_bad_input():
    x = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="x: expected a float32"):
        _core.error_stats_f32(x.astype(np.float64), x)
    with pytest.raises(ValueError, match="y: expected 4 elements"):
        _core.error_stats_f32(x, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="y must be C-contiguous"):
        _core.error_stats_f32(x, np.ones(8, np.float32)[::2])


# --- Python metrics against NumPy formulas -----------------------------------------------------


@pytest.mark.parametrize("n", [1, 17, 4096, 100_003])
def test_metrics_match_numpy_formulas(isa, rng, n):
    x, y = pair(rng, n, noise=0.05)
    a, b = x.astype(np.float64), y.astype(np.float64)
    assert metrics.mse(x, y) == pytest.approx(np.mean((a - b) ** 2), rel=RTOL)
    assert metrics.sqnr(x, y) == pytest.approx(10 * np.log10(np.sum(a * a) / np.sum((a - b) ** 2)), rel=RTOL)
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    assert metrics.cosine_similarity(x, y) == pytest.approx(cos, rel=RTOL)
    assert metrics.max_abs_error(x, y) == np.max(np.abs(a - b))


def test_metrics_shapes_and_dtypes(rng):
    x = rng.standard_normal((4, 5, 6))
    y = x + 0.1
    # float64 inputs are rounded to float32 first (documented).
    assert metrics.mse(x, y) == pytest.approx(np.mean((x.astype(np.float32) - y.astype(np.float32)).astype(np.float64) ** 2))
    assert metrics.mse(np.arange(4), np.arange(4) + 1) == 1.0  # ints work too
    with pytest.raises(ValueError, match="test: expected shape"):
        metrics.mse(x, y[:2])
    with pytest.raises(TypeError, match="reference: expected real numbers"):
        metrics.mse(np.ones(3, complex), np.ones(3, complex))


def test_metric_edge_values():
    z = np.zeros(8, np.float32)
    o = np.ones(8, np.float32)
    assert metrics.sqnr(o, o) == math.inf
    assert metrics.sqnr(z, z) == math.inf
    assert metrics.sqnr(z, o) == -math.inf
    assert metrics.cosine_similarity(z, z) == 1.0
    assert metrics.cosine_similarity(z, o) == 0.0
    assert metrics.cosine_similarity(o, -o) == pytest.approx(-1.0)
    assert math.isnan(metrics.mse(z[:0], z[:0]))
    assert metrics.max_abs_error(z[:0], z[:0]) == 0.0
    assert math.isnan(metrics.sqnr(o, np.float32([np.nan] * 8)))


def test_sqnr_known_value():
    x = np.float32([3.0, 4.0])
    assert metrics.sqnr(x, x * np.float32(1.1)) == pytest.approx(20.0, abs=1e-5)


def test_kl_divergence_and_top1(rng):
    a = rng.standard_normal((32, 10)) * 3
    b = a + 0.3 * rng.standard_normal((32, 10))
    pa = np.exp(a) / np.exp(a).sum(1, keepdims=True)
    pb = np.exp(b) / np.exp(b).sum(1, keepdims=True)
    want = np.mean(np.sum(pa * np.log(pa / pb), axis=1))
    assert metrics.kl_divergence(a, b) == pytest.approx(want, rel=1e-9)
    assert metrics.kl_divergence(a, a) == 0.0
    assert metrics.kl_divergence(a, b) > 0
    # Huge logits do not overflow.
    assert math.isfinite(metrics.kl_divergence(a * 1e4, b * 1e4))
    assert metrics.kl_divergence(a.T, b.T, axis=0) == pytest.approx(want, rel=1e-9)
    assert metrics.top1_agreement(a, b) == pytest.approx(np.mean(a.argmax(1) == b.argmax(1)))
    assert metrics.top1_agreement(a, a) == 1.0
    assert metrics.top1_agreement(a, -a) == 0.0
    with pytest.raises(ValueError, match="test_logits: expected shape"):
        metrics.top1_agreement(a, b[:3])


def test_torch_inputs_and_sizes():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    x = torch.randn(16, 8)
    y = x + 0.01 * torch.randn(16, 8)
    assert metrics.mse(x, y) == pytest.approx(float(((x.double() - y.double()) ** 2).mean()), rel=1e-9)
    assert metrics.sqnr(x.t(), y.t()) == pytest.approx(metrics.sqnr(x.numpy(), y.numpy()))  # non-contiguous
    assert metrics.cosine_similarity(x.bfloat16(), x.bfloat16()) == pytest.approx(1.0)
    assert metrics.top1_agreement(x, x) == 1.0

    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    assert metrics.model_nbytes(model) == 4 * (64 * 32 + 32 + 32 * 4 + 4)
    q8 = lowbit.quantize_model(model, lowbit.QuantConfig(), progress=False)
    q4 = lowbit.quantize_model(model, lowbit.QuantConfig(weight="int4"), progress=False)
    # int8: 1 byte per weight + per-channel scale (4) + zero point (4) + float bias (4).
    assert metrics.model_nbytes(q8) == (64 * 32 + 32 * 12) + (32 * 4 + 4 * 12)
    assert metrics.model_nbytes(q4) == (64 * 32 // 2 + 32 * 12) + (32 * 4 // 2 + 4 * 12)
    assert metrics.compression_ratio(model, q8) == pytest.approx(metrics.model_nbytes(model) / metrics.model_nbytes(q8))
    assert metrics.compression_ratio(model, q4) > metrics.compression_ratio(model, q8) > 3
    tied = torch.nn.Linear(4, 4, bias=False)
    shared = torch.nn.Sequential(tied, tied)
    assert metrics.model_nbytes(shared) == 64


def test_model_nbytes_of_arrays():
    q = lowbit.quantize(np.ones((4, 8), np.float32), scale=0.1, dtype="int4")
    assert metrics.model_nbytes(q) == q.nbytes
    assert metrics.model_nbytes([np.zeros(3, np.float32), {"a": np.zeros(2, np.int8)}]) == 14
    assert metrics.compression_ratio(np.zeros(8, np.float32), np.zeros(8, np.int8)) == 4.0
    with pytest.raises(ValueError, match="quant_model: has no bytes"):
        metrics.compression_ratio(10, 0)


def test_docstring_examples():
    import doctest

    res = doctest.testmod(metrics, extraglobs={"lowbit": lowbit, "np": np}, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 8 and res.failed == 0


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float32, st.integers(0, 300), elements=st.floats(-1e6, 1e6, width=32)),
    st.integers(0, 300),
    st.floats(0.0, 2.0),
)
def test_properties(x, cut, noise):
    y = (x * np.float32(1 + noise / 10) + np.float32(noise)).astype(np.float32)
    # Streaming in two pieces gives the sums of the whole (what compare relies on).
    cut = min(cut, x.size)
    parts = metrics._ErrorStats().add(x[:cut], y[:cut]).add(x[cut:], y[cut:])
    whole = metrics._ErrorStats().add(x, y)
    for field in ("sdd", "saa", "sbb", "sab"):
        assert getattr(parts, field) == pytest.approx(getattr(whole, field), rel=1e-12, abs=1e-300)
    assert parts.max == whole.max and parts.n == whole.n == x.size
    cos = metrics.cosine_similarity(x, y)
    assert -1.0 - 1e-12 <= cos <= 1.0 + 1e-12
    assert metrics.mse(x, y) >= 0 or x.size == 0
    if x.size and np.any(x):
        # SQNR is invariant to doubling both arrays (exact in float32 in this range).
        assert metrics.sqnr(x * np.float32(2), y * np.float32(2)) == pytest.approx(metrics.sqnr(x, y), rel=1e-12)
