"""Tests for 4-bit packed weights (lowbit.pack_weight(dtype="int4"|"nf4")) and lowbit.linear on them:
every ISA against the float64 NumPy reference within the documented bound, layout round trips,
the kernel that ran, bad inputs."""

from __future__ import annotations

import pickle

import lowbit
import numpy as np
import pytest
from lowbit import _core
from lowbit import reference as ref


def bound(x, w_deq, k, group, y_ref):
    """The documented accuracy bound of lowbit.packed4."""
    mag = np.abs(x.astype(np.float64)) @ np.abs(w_deq.astype(np.float64)).T
    return (k / group + 16) * 2.0**-23 * mag + 2.0**-24 * np.abs(y_ref) + 1e-30


@pytest.mark.parametrize("dtype", ["int4", "nf4"])
@pytest.mark.parametrize("m,n,k,group", [(1, 1, 32, 32), (1, 7, 64, 64), (2, 9, 96, 32), (3, 17, 128, 64), (4, 33, 256, 128),
                                         (5, 16, 64, 32), (8, 40, 512, 64), (16, 31, 192, 64), (17, 5, 64, 64), (1, 3, 4096, 64)])
def test_linear_4bit_matches_reference(isa, dtype, m, n, k, group, rng):
    w = (rng.standard_normal((n, k)) * rng.uniform(0.01, 1, (n, 1))).astype(np.float32)
    x = (rng.standard_normal((m, k)) * 3).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    pw = lowbit.pack_weight(w, dtype=dtype, group_size=group)
    y = lowbit.linear(x, pw, b)
    want = ref.linear_4bit(x, pw.int_repr(), pw.scale, dtype, group, b)
    assert y.shape == (m, n) and y.dtype == np.float32
    assert np.all(np.abs(y - want) <= bound(x, pw.dequantize(), k, group, want))
    y0 = lowbit.linear(x, pw)
    assert np.all(np.abs(y0 - (want - b)) <= bound(x, pw.dequantize(), k, group, want - b))


def test_bound_can_fail(rng):
    """The check above is not vacuous: a wrong scale by one float32 ulp-scale factor is caught."""
    w = rng.standard_normal((8, 256)).astype(np.float32)
    x = rng.standard_normal((2, 256)).astype(np.float32)
    pw = lowbit.pack_weight(w, dtype="int4")
    want = ref.linear_4bit(x, pw.int_repr(), pw.scale * np.float32(1.001), "int4", 64)
    assert not np.all(np.abs(lowbit.linear(x, pw) - want) <= bound(x, pw.dequantize(), 256, 64, want))


def test_quantization_matches_quantize(rng):
    w = rng.standard_normal((6, 128)).astype(np.float32)
    pn = lowbit.pack_weight(w, dtype="nf4", group_size=64)
    q = lowbit.quantize(w, dtype="nf4", block_size=64)
    np.testing.assert_array_equal(pn.int_repr(), q.int_repr())
    np.testing.assert_array_equal(pn.dequantize(), q.dequantize())
    pi = lowbit.pack_weight(w, dtype="int4", group_size=32)
    m = np.abs(w).reshape(6, 4, 32).max(axis=2)
    s, _ = lowbit.choose_qparams(-m, m, dtype="int4", symmetric=True)
    qi = lowbit.quantize(w, s, 0, dtype="int4", group_size=32)
    np.testing.assert_array_equal(pi.int_repr(), qi.int_repr())
    np.testing.assert_array_equal(pi.dequantize(), qi.dequantize())
    assert pi.nbytes == 6 * 64 + 6 * 4 * 4 and pn.bits_per_weight == pytest.approx(4.5)
    assert "int4 group_size=32" in repr(pi)


def test_layout_and_pickle(rng):
    w = rng.standard_normal((3, 64)).astype(np.float32)
    pw = lowbit.pack_weight(w, dtype="int4", group_size=32)
    codes = pw.int_repr().astype(np.uint8) & 15
    # byte j of each 32-chunk: element j (low nibble), element j + 16 (high nibble)
    np.testing.assert_array_equal(pw._packed[:, 3] & 15, codes[:, 3])
    np.testing.assert_array_equal(pw._packed[:, 3] >> 4, codes[:, 19])
    np.testing.assert_array_equal(pw._packed[:, 16 + 5] >> 4, codes[:, 32 + 21])
    p2 = pickle.loads(pickle.dumps(pw))
    x = rng.standard_normal((1, 64)).astype(np.float32)
    np.testing.assert_array_equal(lowbit.linear(x, p2), lowbit.linear(x, pw))


def test_shapes_relu_torch_and_extremes(rng):
    w = rng.standard_normal((5, 64)).astype(np.float32)
    pw = lowbit.pack_weight(w, dtype="nf4")
    x = rng.standard_normal((2, 3, 64)).astype(np.float32)
    y = lowbit.linear(x, pw)
    assert y.shape == (2, 3, 5)
    np.testing.assert_array_equal(lowbit.linear(x[0, 0], pw), lowbit.linear(x[0, :1], pw)[0])
    np.testing.assert_array_equal(lowbit.linear(x, pw, relu=True), np.maximum(y, 0))
    assert lowbit.linear(np.zeros((0, 64), np.float32), pw).shape == (0, 5)
    z = lowbit.pack_weight(np.zeros((4, 64), np.float32), dtype="int4")
    np.testing.assert_array_equal(lowbit.linear(x[0], z), np.zeros((3, 4), np.float32))
    xn = x[0].copy()
    xn[0, 0] = np.nan
    assert np.isnan(lowbit.linear(xn, pw)[0]).all() and not np.isnan(lowbit.linear(xn, pw)[1:]).any()
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(lowbit.linear(torch.from_numpy(x), pw), y)


def test_best_kernel_ran(rng):
    pw = lowbit.pack_weight(rng.standard_normal((4, 64)).astype(np.float32), dtype="int4")
    isas = dict(_core.op_isas())["linear_f32_s4w_f32"]
    best = next(a for a in lowbit.cpu_info()["available"] if a in isas)
    before = dict(dict(_core.kernel_calls())["linear_f32_s4w_f32"]).get(best, 0)
    lowbit.linear(np.ones((1, 64), np.float32), pw)
    assert dict(dict(_core.kernel_calls())["linear_f32_s4w_f32"]).get(best, 0) > before


def test_bad_inputs(rng):
    w = rng.standard_normal((4, 64)).astype(np.float32)
    with pytest.raises(ValueError, match="group_size"):
        lowbit.pack_weight(w, dtype="int4", group_size=48)
    with pytest.raises(ValueError, match="group_size"):
        lowbit.pack_weight(rng.standard_normal((4, 80)).astype(np.float32), dtype="nf4")
    with pytest.raises(ValueError, match="group_size"):
        lowbit.pack_weight(w, group_size=64)
    with pytest.raises(ValueError, match="scale"):
        lowbit.pack_weight(w, dtype="int4", scale=0.1)
    with pytest.raises(ValueError, match="dtype"):
        lowbit.pack_weight(w, dtype="int2")
    w2 = w.copy()
    w2[0, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        lowbit.pack_weight(w2, dtype="nf4")
    with pytest.raises(ValueError, match="w"):
        lowbit.pack_weight(w[0], dtype="nf4")
    pw = lowbit.pack_weight(w, dtype="int4")
    with pytest.raises(ValueError, match="K"):
        lowbit.linear(np.ones((1, 32), np.float32), pw)
    with pytest.raises(ValueError, match="bias"):
        lowbit.linear(np.ones((1, 64), np.float32), pw, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="out_scale"):
        lowbit.linear(np.ones((1, 64), np.float32), pw, out_scale=0.1)
    with pytest.raises(TypeError, match="x"):
        lowbit.linear(np.ones((1, 64), np.int32), pw)
    with pytest.raises(ValueError, match="scales"):
        _core.linear_4bit(np.ones((1, 64), np.float32), pw._packed, np.ones((4, 2), np.float32), None, 64, "int4")
    with pytest.raises(ValueError, match="kind"):
        _core.linear_4bit(np.ones((1, 64), np.float32), pw._packed, pw.scale, None, 64, "int3")
