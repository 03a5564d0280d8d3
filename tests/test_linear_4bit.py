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
    """The documented accuracy bound of lowbit.core.linear_4bit for activation="float"."""
    mag = np.abs(x.astype(np.float64)) @ np.abs(w_deq.astype(np.float64)).T
    return (group + -(-k // group) + 2) * 2.0**-24 * mag + 2.0**-24 * np.abs(y_ref) + 1e-30


SHAPES = [(1, 1, 32, 32), (1, 7, 64, 64), (2, 9, 96, 32), (3, 17, 128, 64), (4, 33, 256, 128), (5, 16, 64, 32),
          (8, 40, 512, 64), (16, 31, 192, 64), (17, 5, 64, 64), (1, 3, 4096, 64), (1, 70, 100, 64), (7, 20, 33, 32),
          (9, 49, 200, 128), (1, 64, 1, 32),
          # AMX blocks (32 rows, pairs of panels, chunks of 512 k): row tails, odd panels, 32-wide
          # K steps (group 32, 96), several chunks, one group over all of K
          (13, 33, 300, 64), (40, 50, 1100, 32), (33, 70, 600, 96), (48, 32, 2048, 2048), (64, 47, 1030, 128)]


def _case(rng, m, n, k):
    w = (rng.standard_normal((n, k)) * rng.uniform(0.01, 1, (n, 1))).astype(np.float32)
    x = (rng.standard_normal((m, k)) * 3).astype(np.float32)
    return w, x, rng.standard_normal(n).astype(np.float32)


@pytest.mark.parametrize("dtype", ["int4", "nf4"])
@pytest.mark.parametrize("m,n,k,group", SHAPES)
def test_linear_4bit_float_matches_reference(isa, dtype, m, n, k, group, rng):
    w, x, b = _case(rng, m, n, k)
    pw = lowbit.pack_weight(w, dtype=dtype, group_size=group)
    y = lowbit.linear(x, pw, b, activation="float")
    want = ref.linear_4bit(x, pw.int_repr(), pw.scale, dtype, group, b)
    assert y.shape == (m, n) and y.dtype == np.float32
    assert np.all(np.abs(y - want) <= bound(x, pw.dequantize(), k, group, want))
    y0 = lowbit.linear(x, pw, activation="float")
    assert np.all(np.abs(y0 - (want - b)) <= bound(x, pw.dequantize(), k, group, want - b))
    # every ISA runs the same operation sequence: bit-identical to the scalar reference kernel
    with lowbit.cpu.arch("scalar"):
        np.testing.assert_array_equal(lowbit.linear(x, pw, b, activation="float"), y)


@pytest.mark.parametrize("dtype", ["int4", "nf4"])
@pytest.mark.parametrize("m,n,k,group", SHAPES)
def test_linear_4bit_int8_is_bit_exact(isa, dtype, m, n, k, group, rng):
    w, x, b = _case(rng, m, n, k)
    pw = lowbit.pack_weight(w, dtype=dtype, group_size=group)
    y = lowbit.linear(x, pw, b, activation="dynamic")
    np.testing.assert_array_equal(y, ref.linear_4bit_int8(x, pw.int_repr(), pw.scale, group, b, dtype=dtype))
    # and within the activation-rounding bound (plus, for nf4, the int8 level rounding: at most
    # 0.5 / 127 of the group absmax per weight) of the exact product with the stored weight
    xq, xs = ref.quantize_rows_s8_groups(x, group)
    groups = xs.shape[1]
    wabs = np.zeros((n, groups * group))
    wabs[:, :k] = np.abs(pw.dequantize()) + (0.5 / 127 * np.repeat(pw.scale, group, axis=1)[:, :k] if dtype == "nf4" else 0)
    per_group = wabs.reshape(n, groups, group).sum(axis=2)  # (n, G)
    exact = ref.linear_4bit(x, pw.int_repr(), pw.scale, dtype, group, b)
    tol = (xs.astype(np.float64) / 2) @ per_group.T * (1 + 1e-5) + 1e-5 * (np.abs(exact) + np.abs(x) @ wabs[:, :k].T)
    if dtype == "nf4":
        xg = np.zeros((m, groups * group))
        xg[:, :k] = np.abs(x)
        tol = tol + (xg.reshape(m, groups, group).sum(axis=2) @ (0.5 / 127 * pw.scale.astype(np.float64)).T)
    assert np.all(np.abs(y - exact) <= tol)


@pytest.mark.skipif("avx512vnni" not in lowbit.cpu_info()["available"], reason="the twins need AVX-512 VNNI")
@pytest.mark.parametrize("which", ["avxvnni", "amx"])
@pytest.mark.parametrize("dtype", ["int4", "nf4"])
@pytest.mark.parametrize("m,n,k,group", SHAPES)
def test_kernel_source_via_twins(which, dtype, m, n, k, group, rng):
    """Kernels this CPU may lack, from their own source: AVX-VNNI built with the EVEX encoding of
    the same instruction, AMX (blocking, decoding, epilogue) on scalar-emulated tiles. They must
    give the spec's bits."""
    w, x, b = _case(rng, m, n, k)
    pw = lowbit.pack_weight(w, dtype=dtype, group_size=group)
    scale_t, wsum = pw._int8_operands()
    y = _core._linear_4bit_twin(which, x, pw._packed, scale_t, b, n, group, dtype, wsum)
    np.testing.assert_array_equal(y, ref.linear_4bit_int8(x, pw.int_repr(), pw.scale, group, b, dtype=dtype))


@pytest.mark.skipif("amx" not in lowbit.cpu_info()["available"], reason="needs AMX")
@pytest.mark.skipif(lowbit.get_arch() != lowbit.cpu_info()["available"][0], reason="LOWBIT_ARCH forces a lower ISA")
@pytest.mark.parametrize("dtype", ["int4", "nf4"])
def test_amx_kernel_runs_on_larger_batches(dtype, rng):
    """With AMX, the int8 path of 12+ rows (int4) / 4+ rows (NF4) runs on tiles, bit-exact; extreme
    activations (one huge value per group) and all-zero groups included."""
    w, x, b = _case(rng, 37, 90, 700)
    x[3, :] = 0
    x[5, 100] = 1e30
    x[6, 200:264] = -1e-30
    pw = lowbit.pack_weight(w, dtype=dtype, group_size=64)
    op = "linear_s8_nf4w_f32" if dtype == "nf4" else "linear_s8_s4w_f32"
    before = dict(dict(_core.kernel_calls())[op]).get("amx", 0)
    y = lowbit.linear(x, pw, bias=b)
    assert dict(dict(_core.kernel_calls())[op]).get("amx", 0) > before
    np.testing.assert_array_equal(y, ref.linear_4bit_int8(x, pw.int_repr(), pw.scale, 64, b, dtype=dtype))
    with lowbit.arch("avx512vnni"):
        np.testing.assert_array_equal(lowbit.linear(x, pw, bias=b), y)


def test_nf4_int8_levels():
    """The int8 levels are NF4's levels times 127, rounded; no two codes collide."""
    lv = lowbit.formats.NF4_LEVELS.astype(np.float64) * 127
    np.testing.assert_array_equal(ref.NF4_INT8_LEVELS, np.round(lv).astype(np.int8))
    assert np.all(np.abs(ref.NF4_INT8_LEVELS - lv) <= 0.5) and len(set(ref.NF4_INT8_LEVELS.tolist())) == 16


def test_activation_quantization_edges(isa):
    x = np.zeros((5, 70), np.float32)
    x[0, :] = np.linspace(-3, 3, 70)
    x[1, 3] = np.nan
    x[2, 40] = -np.inf
    x[3, :] = 1e-40  # denormal group
    x[4, 64:] = 0.5  # only the partial last group is non-zero
    w = np.random.default_rng(1).standard_normal((3, 70)).astype(np.float32)
    pw = lowbit.pack_weight(w, dtype="int4", group_size=32)
    y = lowbit.linear(x, pw, activation="dynamic")
    np.testing.assert_array_equal(y, ref.linear_4bit_int8(x, pw.int_repr(), pw.scale, 32))
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all() and not np.isnan(y[[0, 3, 4]]).any()
    xq, xs = ref.quantize_rows_s8_groups(x, 32)
    assert xq.shape == (5, 96) and np.abs(xq[0]).max() == 127 and np.isnan(xs[1, 0]) and xs[1, 1] == 0


def test_act_modes_and_threshold(rng):
    w, x, b = _case(rng, 40, 24, 128)
    pi = lowbit.pack_weight(w, dtype="int4")
    pn = lowbit.pack_weight(w, dtype="nf4")
    for rows in (1, 3, 40):  # the default takes int8 activations for int4 whatever M
        np.testing.assert_array_equal(lowbit.linear(x[:rows], pi, b), lowbit.linear(x[:rows], pi, b, activation="dynamic"))
    assert not np.array_equal(lowbit.linear(x, pi, b, activation="float"), lowbit.linear(x, pi, b, activation="dynamic"))
    np.testing.assert_array_equal(lowbit.linear(x[:1], pn, b), lowbit.linear(x[:1], pn, b, activation="dynamic"))
    with pytest.raises(ValueError, match="act"):
        lowbit.linear(x, pi, activation="static")


def test_bound_can_fail(rng):
    """The checks above are not vacuous: a scale off by 0.1% is caught by both."""
    w = rng.standard_normal((8, 256)).astype(np.float32)
    x = rng.standard_normal((2, 256)).astype(np.float32)
    pw = lowbit.pack_weight(w, dtype="int4")
    want = ref.linear_4bit(x, pw.int_repr(), pw.scale * np.float32(1.001), "int4", 64)
    assert not np.all(np.abs(lowbit.linear(x, pw, activation="float") - want) <= bound(x, pw.dequantize(), 256, 64, want))
    want8 = ref.linear_4bit_int8(x, pw.int_repr(), pw.scale * np.float32(1.001), 64)
    assert not np.array_equal(lowbit.linear(x, pw, activation="dynamic"), want8)


def test_quantization_matches_quantize(rng):
    w = rng.standard_normal((6, 128)).astype(np.float32)
    pn = lowbit.pack_weight(w, dtype="nf4", group_size=64)
    q = lowbit.quantize(w, dtype="nf4", group_size=64)
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


def test_layout_storage_and_pickle(rng):
    w = rng.standard_normal((19, 70)).astype(np.float32)
    pw = lowbit.pack_weight(w, dtype="int4", group_size=32)
    u = pw.int_repr().astype(np.int64) + 8
    # panel layout (lowbit/linear_4bit.hpp): panel p, octet o, byte 4c + j: k = 8o + j low, 8o + 4 + j high
    assert pw._packed.shape == (2, 12, 64) and pw._scale_t.shape == (3, 32)
    assert pw._packed[1, 2, 4 * 1 + 3] & 15 == u[17, 19] and pw._packed[1, 2, 4 * 1 + 3] >> 4 == u[17, 23]
    assert pw._packed[0, 8, 4 * 15 + 0] >> 4 == u[15, 68]
    assert np.all(pw._packed[1, :, 4 * 3:] == 0x88)  # padding columns hold the code of 0.0
    assert pw.nbytes == 19 * 35 + 19 * 3 * 4
    codes = pw.packed_codes()
    assert codes.shape == (19, 35)
    np.testing.assert_array_equal(codes[:, 5] & 15, pw.int_repr()[:, 10].astype(np.uint8) & 15)
    back = lowbit.PackedWeight4.from_packed_codes(codes, pw.scale, shape=pw.shape, dtype="int4", group_size=32)
    np.testing.assert_array_equal(back._packed, pw._packed)
    np.testing.assert_array_equal(back.int_repr(), pw.int_repr())
    pn = lowbit.pack_weight(w, dtype="nf4", group_size=64)
    bn = lowbit.PackedWeight4.from_codes(pn.int_repr(), pn.scale, dtype="nf4", group_size=64)
    np.testing.assert_array_equal(bn.dequantize(), pn.dequantize())
    with pytest.raises(ValueError, match="codes"):
        lowbit.PackedWeight4.from_codes(np.full((2, 32), 9), np.ones((2, 1)), dtype="int4", group_size=32)
    with pytest.raises(ValueError, match="scale"):
        lowbit.PackedWeight4.from_codes(np.zeros((2, 32), np.int8), np.ones((2, 2)), dtype="int4", group_size=32)
    p2 = pickle.loads(pickle.dumps(pw))
    x = rng.standard_normal((1, 70)).astype(np.float32)
    np.testing.assert_array_equal(lowbit.linear(x, p2), lowbit.linear(x, pw))


def test_partial_group_quantization(rng):
    """K not a multiple of the group: the last group's scale comes from its own values only."""
    w = rng.standard_normal((4, 80)).astype(np.float32)
    w[:, 64:] *= 0.01
    pw = lowbit.pack_weight(w, dtype="int4", group_size=64)
    full = lowbit.pack_weight(np.concatenate([w, np.zeros((4, 48), np.float32)], axis=1), dtype="int4", group_size=64)
    np.testing.assert_array_equal(pw.scale, full.scale)
    np.testing.assert_array_equal(pw.int_repr(), full.int_repr()[:, :80])
    assert np.abs(pw.dequantize()[:, 64:] - w[:, 64:]).max() <= pw.scale[:, 1].max() / 2 * 1.0001


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


@pytest.mark.parametrize("op,act,dtype", [("linear_f32_s4w_f32", "float", "int4"), ("linear_s8_s4w_f32", "dynamic", "int4"),
                                          ("quantize_row_s8_groups", "dynamic", "int4"),
                                          ("linear_f32_nf4w_f32", "float", "nf4"), ("linear_s8_nf4w_f32", "dynamic", "nf4")])
def test_best_kernel_ran(rng, op, act, dtype):
    pw = lowbit.pack_weight(rng.standard_normal((4, 64)).astype(np.float32), dtype=dtype)
    best = lowbit.cpu_info()["ops"][op]  # the best kernel, or the one LOWBIT_ARCH allows
    before = dict(dict(_core.kernel_calls())[op]).get(best, 0)
    lowbit.linear(np.ones((1, 64), np.float32), pw, activation=act)
    assert dict(dict(_core.kernel_calls())[op]).get(best, 0) > before


def test_bad_inputs(rng):
    w = rng.standard_normal((4, 64)).astype(np.float32)
    with pytest.raises(ValueError, match="group_size"):
        lowbit.pack_weight(w, dtype="int4", group_size=48)
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
    x1 = np.ones((1, 64), np.float32)
    with pytest.raises(ValueError, match="scales"):
        _core.linear_4bit(x1, pw._packed, np.ones((4, 2), np.float32), None, 4, 64, "int4", "float")
    with pytest.raises(ValueError, match="kind"):
        _core.linear_4bit(x1, pw._packed, pw._scale_t, None, 4, 64, "int3", "float")
    with pytest.raises(ValueError, match="wsum"):
        _core.linear_4bit(x1, pw._packed, pw._scale_t, None, 4, 64, "nf4", "int8")
    with pytest.raises(ValueError, match="n"):
        _core.linear_4bit(x1, pw._packed, pw._scale_t, None, 17, 64, "int4", "float")
    with pytest.raises(ValueError, match="K"):
        _core.linear_4bit(np.ones((1, 70), np.float32), pw._packed, pw._scale_t, None, 4, 64, "int4", "float")
    with pytest.raises(TypeError, match="w"):
        _core.linear_4bit(x1, pw._packed.reshape(-1, 64), pw._scale_t, None, 4, 64, "int4", "float")
