"""Tests for lowbit.matmul: matmul_int8 exact vs int64 NumPy on every ISA; pack_weight and linear
bit-identical to lowbit.reference; bad input; pickling; proof that the best kernel ran."""

from __future__ import annotations

import pickle

import lowbit
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from lowbit import _core
from lowbit import reference as ref

DIMS = [1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65]
SHAPES = (
    [(0, 5, 3), (3, 0, 5), (4, 5, 0), (0, 0, 0)]
    + [(d, d, d) for d in DIMS]
    + [(7, 57, 9), (1, 64, 300), (1, 1000, 1), (1, 77, 49), (16, 33, 48), (17, 31, 97), (9, 5, 1), (50, 3, 50)]
    + [(8, 130, 47), (24, 1, 96), (13, 259, 65)]
    + [(64, 1100, 80), (96, 2000, 70)]  # AMX: K in 512-k chunks, 2-5 panel pairs, odd panels
)


def ints(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def check_mm(a, b):
    got = lowbit.matmul_int8(a, b)
    want = ref.matmul_int8(a, b)
    assert got.dtype == np.int32
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.astype(np.int64), want)


@pytest.mark.parametrize("adtype", [np.int8, np.uint8], ids=["s8s8", "u8s8"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_exact(isa, adtype, m, k, n, rng):
    check_mm(ints(rng, (m, k), adtype), ints(rng, (k, n), np.int8))


@pytest.mark.parametrize("adtype", [np.int8, np.uint8], ids=["s8s8", "u8s8"])
def test_matmul_deep_k(isa, adtype, rng):
    check_mm(ints(rng, (9, 4099), adtype), ints(rng, (4099, 35), np.int8))


@pytest.mark.parametrize("k", [1, 3, 4, 5, 63, 64, 65, 127, 1000])
@pytest.mark.parametrize("a_val,b_val", [(-128, -128), (127, -128), (-128, 127), (255, -128), (255, 127), (0, -128)])
def test_matmul_extremes_never_saturate(isa, k, a_val, b_val):
    adtype = np.uint8 if a_val > 127 or (a_val == 0) else np.int8
    a = np.full((9, k), a_val, adtype)
    b = np.full((k, 33), b_val, np.int8)
    got = lowbit.matmul_int8(a, b)
    assert np.all(got == a_val * b_val * k)


def test_matmul_largest_k_s8_is_exact(isa):
    k = _core.matmul_max_k_s8  # the worst case sum is exactly representable
    a = np.full((1, k), -128, np.int8)
    b = np.full((k, 17), -128, np.int8)
    got = lowbit.matmul_int8(a, b)
    assert np.all(got.astype(np.int64) == 16384 * k)


@pytest.mark.parametrize("offset", [1, 3])
def test_matmul_strided_views(isa, offset, rng):
    buf_a = ints(rng, (40, 200), np.int8)
    buf_b = ints(rng, (300, 90), np.int8)
    a = buf_a[offset : offset + 21 : 2, offset : offset + 3 * 37 : 3]  # (11, 37)
    b = buf_b[offset : offset + 37, offset::2][:, :19]  # (37, 19)
    a_copy, b_copy = a.copy(), b.copy()
    check_mm(a, b)
    check_mm(a[::-1], b[:, ::-1])  # negative strides
    check_mm(np.asfortranarray(a), np.asfortranarray(b))
    check_mm(a, buf_b[:111:3, :19].T.copy().T)
    np.testing.assert_array_equal(a, a_copy)  # inputs untouched
    np.testing.assert_array_equal(b, b_copy)


def test_matmul_batched_and_1d(isa, rng):
    z = lowbit.matmul_int8(np.zeros((2, 3, 0), np.int8), np.zeros((0, 4), np.int8))
    np.testing.assert_array_equal(z, np.zeros((2, 3, 4), np.int32))
    a = ints(rng, (2, 3, 5, 21), np.uint8)
    b = ints(rng, (21, 6), np.int8)
    got = lowbit.matmul_int8(a, b)
    assert got.shape == (2, 3, 5, 6)
    np.testing.assert_array_equal(got, ref.matmul_int8(a, b))
    v = ints(rng, (21,), np.int8)
    np.testing.assert_array_equal(lowbit.matmul_int8(v, b), ref.matmul_int8(v, b))


@pytest.mark.parametrize("adtype", [np.int8, np.uint8], ids=["s8s8", "u8s8"])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 57, 9), (33, 65, 17), (2, 4099, 40), (0, 3, 4)])
def test_matmul_with_packed_weight(isa, adtype, m, k, n, rng):
    q = ints(rng, (n, k), np.int8)
    pw = lowbit.pack_weight(q, scale=np.ones(n, np.float32))
    a = ints(rng, (2, m, k), adtype)
    np.testing.assert_array_equal(lowbit.matmul_int8(a, pw).astype(np.int64), ref.matmul_int8(a, q.T))
    with pytest.raises(ValueError, match="b:"):
        lowbit.matmul_int8(ints(rng, (m, k + 1), adtype), pw)


def test_matmul_qtensor_inputs(rng):
    x = rng.standard_normal((6, 10)).astype(np.float32)
    qa = lowbit.quantize(x, 0.05, 3, dtype="uint8")
    qb = lowbit.quantize(rng.standard_normal((10, 4)).astype(np.float32), 0.02, 0, dtype="int8")
    np.testing.assert_array_equal(lowbit.matmul_int8(qa, qb), ref.matmul_int8(qa.int_repr(), qb.int_repr()))


def test_matmul_reference_cpp_matches_numpy(rng):
    for adtype in (np.int8, np.uint8):
        a, b = ints(rng, (7, 57), adtype), ints(rng, (57, 9), np.int8)
        np.testing.assert_array_equal(_core.matmul_reference(a, b), ref.matmul_int8(a, b))


def test_matmul_bad_input(rng):
    a = ints(rng, (3, 4), np.int8)
    b = ints(rng, (4, 5), np.int8)
    with pytest.raises(TypeError, match="a:"):
        lowbit.matmul_int8(a.astype(np.int16), b)
    with pytest.raises(TypeError, match="a:"):
        lowbit.matmul_int8(a.astype(np.float32), b)
    with pytest.raises(TypeError, match="b:"):
        lowbit.matmul_int8(a, b.astype(np.uint8))
    with pytest.raises(ValueError, match="b:"):
        lowbit.matmul_int8(a, ints(rng, (5, 5), np.int8))
    with pytest.raises(ValueError, match="b:"):
        lowbit.matmul_int8(a, ints(rng, (4,), np.int8))
    with pytest.raises(ValueError, match="a:"):
        lowbit.matmul_int8(np.int8(3), b)
    k = _core.matmul_max_k_u8 + 1
    with pytest.raises(ValueError, match="overflow"):
        lowbit.matmul_int8(np.zeros((1, k), np.uint8), np.zeros((k, 1), np.int8))
    k = _core.matmul_max_k_s8 + 1
    with pytest.raises(ValueError, match="overflow"):
        lowbit.matmul_int8(np.zeros((1, k), np.int8), np.zeros((k, 1), np.int8))


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    m=st.integers(0, 20),
    k=st.integers(0, 80),
    n=st.integers(0, 40),
    signed=st.booleans(),
    isa=st.sampled_from(lowbit.cpu_info()["available"]),
)
def test_matmul_property_equals_int64_numpy(data, m, k, n, signed, isa):
    adtype = np.int8 if signed else np.uint8
    a = data.draw(hnp.arrays(adtype, (m, k)))
    b = data.draw(hnp.arrays(np.int8, (k, n)))
    with lowbit.arch(isa):
        got = lowbit.matmul_int8(a, b)
    np.testing.assert_array_equal(got.astype(np.int64), a.astype(np.int64) @ b.astype(np.int64))


# ----------------------------------------------------------------------------- pack_weight


@pytest.mark.parametrize("axis", [0, None])
@pytest.mark.parametrize("n,k", [(1, 1), (7, 57), (16, 64), (17, 65), (33, 3), (0, 5), (5, 0)])
def test_pack_weight_matches_reference(axis, n, k, rng):
    w = (rng.standard_normal((n, k)) * rng.uniform(0.01, 3, (n, 1))).astype(np.float32)
    pw = lowbit.pack_weight(w, axis=axis)
    q, s = ref.pack_weight_int8(w, axis=axis)
    np.testing.assert_array_equal(pw.int_repr().astype(np.int64), q)
    np.testing.assert_array_equal(pw.scale, s)
    assert pw.shape == (n, k)
    np.testing.assert_array_equal(pw.dequantize(), q.astype(np.float32) * s[:, None])
    assert pw.nbytes >= n * k


def test_pack_weight_sources_agree(rng):
    w = rng.standard_normal((20, 30)).astype(np.float32)
    pw = lowbit.pack_weight(w)
    qt = lowbit.quantize(w, pw.scale, np.zeros(20, np.int32), dtype="int8", axis=0)
    pq = lowbit.pack_weight(qt)
    pi = lowbit.pack_weight(pw.int_repr(), scale=pw.scale)
    ps = lowbit.pack_weight(w, scale=pw.scale)
    for other in (pq, pi, ps):
        np.testing.assert_array_equal(other.int_repr(), pw.int_repr())
        np.testing.assert_array_equal(other.scale, pw.scale)
    w64 = w.astype(np.float64)
    np.testing.assert_array_equal(lowbit.pack_weight(w64).int_repr(), pw.int_repr())


def test_pack_weight_pickle_round_trip(rng):
    pw = lowbit.pack_weight(rng.standard_normal((37, 70)).astype(np.float32))
    back = pickle.loads(pickle.dumps(pw))
    assert isinstance(back, lowbit.PackedWeight)
    assert back.shape == pw.shape and back.layout == pw.layout and back.axis == pw.axis
    np.testing.assert_array_equal(back.int_repr(), pw.int_repr())
    np.testing.assert_array_equal(back.scale, pw.scale)
    x = rng.standard_normal((3, 70)).astype(np.float32)
    np.testing.assert_array_equal(lowbit.linear(x, back), lowbit.linear(x, pw))
    with pytest.raises(AttributeError):
        pw.scale = None


def test_pack_weight_bad_input(rng):
    w = rng.standard_normal((4, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="dtype.*did you mean.*'int4'"):
        lowbit.pack_weight(w, dtype="int3")
    with pytest.raises(ValueError, match="axis"):
        lowbit.pack_weight(w, axis=1)
    with pytest.raises(ValueError, match="zero_point"):
        lowbit.pack_weight(w, zero_point=3)
    with pytest.raises(ValueError, match="w:"):
        lowbit.pack_weight(w[0])
    bad = w.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="w:"):
        lowbit.pack_weight(bad)
    with pytest.raises(ValueError, match="scale"):
        lowbit.pack_weight(w.astype(np.int8))
    with pytest.raises(ValueError, match="scale"):
        lowbit.pack_weight(w, scale=np.array([1.0, np.inf, 1.0, 1.0]))
    with pytest.raises(ValueError, match="scale"):
        lowbit.pack_weight(w, scale=np.ones(3))
    with pytest.raises(TypeError, match="w:"):
        lowbit.pack_weight(w.astype(np.int32))
    with pytest.raises(ValueError, match="QTensor"):
        lowbit.pack_weight(lowbit.quantize(w, 0.1, 5, dtype="int8"))


# ----------------------------------------------------------------------------- linear

LINEAR_SHAPES = [(1, 1, 1), (1, 64, 48), (2, 17, 3), (7, 57, 9), (16, 31, 33), (17, 65, 64), (40, 96, 50), (3, 4099, 20),
                 (300, 9, 16), (70, 27, 40), (70, 1100, 80)]
LINEAR_MODES = [
    dict(),
    dict(relu=True),
    dict(activation="dynamic_per_tensor"),
    dict(activation="static", activation_scale=0.02, activation_zero_point=128),
    dict(activation="static", activation_scale=0.03, activation_zero_point=-7, activation_dtype="int8"),
    dict(out_scale=0.05, out_zero_point=-3),
    dict(out_scale=1e-6, out_zero_point=127),  # saturates at both ends
    dict(activation="static", activation_scale=0.025, activation_zero_point=0, activation_dtype="int8", relu=True, out_scale=0.02, out_zero_point=-128),
]


def ref_linear(x, pw, bias, **kw):
    return ref.linear(x, pw.int_repr(), pw.scale, bias, **kw)


@pytest.mark.parametrize("mode", LINEAR_MODES, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()) or "dynamic")
@pytest.mark.parametrize("m,k,n", LINEAR_SHAPES)
def test_linear_bit_identical_to_reference(isa, m, k, n, mode, rng):
    # The float epilogue is the same sequence of float32 operations as the reference, so the
    # outputs are bit-identical (no tolerance needed).
    x = (rng.standard_normal((m, k)) * 2 + 0.3).astype(np.float32)
    pw = lowbit.pack_weight(rng.standard_normal((n, k)).astype(np.float32))
    bias = rng.standard_normal(n).astype(np.float32)
    got = lowbit.linear(x, pw, bias, **mode)
    want = ref_linear(x, pw, bias, **mode)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    if "out_scale" not in mode:
        np.testing.assert_array_equal(lowbit.linear(x, pw, **mode), ref_linear(x, pw, None, **mode))


def test_linear_close_to_float(rng):
    # Quantization error bound: |err| <= K * (|x| s_w + |w| s_x + s_x s_w) / 2 per output; check a
    # loose relative tolerance against float64 on typical data.
    x = rng.standard_normal((32, 256)).astype(np.float32)
    w = rng.standard_normal((64, 256)).astype(np.float32)
    y = lowbit.linear(x, lowbit.pack_weight(w))
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    assert np.abs(y - exact).max() <= 0.02 * np.abs(exact).max()


def test_linear_batched_and_per_tensor_weight(isa, rng):
    x = rng.standard_normal((2, 3, 5, 40)).astype(np.float32)
    pw = lowbit.pack_weight(rng.standard_normal((19, 40)).astype(np.float32), axis=None)
    assert np.all(pw.scale == pw.scale[0])
    got = lowbit.linear(x, pw, relu=True)
    assert got.shape == (2, 3, 5, 19)
    np.testing.assert_array_equal(got, ref_linear(x, pw, None, relu=True))
    np.testing.assert_array_equal(lowbit.linear(x[0, 0, 0], pw), ref_linear(x[0, 0, 0], pw, None))


@pytest.mark.parametrize("k", [9, 33])  # short rows take the batched activation path
def test_linear_non_finite_activations(isa, rng, k):
    x = rng.standard_normal((4, k)).astype(np.float32)
    x[0, 3] = np.nan
    x[1, 5] = np.inf
    x[2, 7] = -np.inf
    x[3, :] = np.nan
    x_copy = x.copy()
    pw = lowbit.pack_weight(rng.standard_normal((10, k)).astype(np.float32))
    for act in ("dynamic", "dynamic_per_tensor"):
        np.testing.assert_array_equal(lowbit.linear(x, pw, activation=act), ref_linear(x, pw, None, activation=act))
    huge = np.array([[3e38, -3e38, 1.0]], np.float32)
    pw3 = lowbit.pack_weight(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(lowbit.linear(huge, pw3), ref_linear(huge, pw3, None))
    np.testing.assert_array_equal(x, x_copy)


def test_linear_strided_and_other_float_inputs(rng):
    buf = rng.standard_normal((30, 100)).astype(np.float32)
    x = buf[1:25:3, 3:50]
    pw = lowbit.pack_weight(rng.standard_normal((8, 47)).astype(np.float32))
    want = ref_linear(np.ascontiguousarray(x), pw, None)
    np.testing.assert_array_equal(lowbit.linear(x, pw), want)
    np.testing.assert_array_equal(lowbit.linear(x.astype(np.float64), pw), want)


def test_linear_empty(rng):
    pw = lowbit.pack_weight(rng.standard_normal((5, 7)).astype(np.float32))
    assert lowbit.linear(np.zeros((0, 7), np.float32), pw).shape == (0, 5)
    pw0 = lowbit.pack_weight(np.zeros((5, 0), np.float32))
    y = lowbit.linear(np.zeros((3, 0), np.float32), pw0, np.arange(5, dtype=np.float32))
    np.testing.assert_array_equal(y, np.broadcast_to(np.arange(5, dtype=np.float32), (3, 5)))


def test_linear_bad_input(rng):
    pw = lowbit.pack_weight(rng.standard_normal((5, 7)).astype(np.float32))
    x = rng.standard_normal((3, 7)).astype(np.float32)
    with pytest.raises(TypeError, match="w:"):
        lowbit.linear(x, np.ones((5, 7), np.float32))
    with pytest.raises(ValueError, match="x:"):
        lowbit.linear(x[:, :6], pw)
    with pytest.raises(TypeError, match="x:"):
        lowbit.linear(x.astype(np.int32), pw)
    with pytest.raises(ValueError, match="bias:"):
        lowbit.linear(x, pw, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="bias"):
        lowbit.linear(x, pw, np.array([1, 2, np.nan, 4, 5], np.float32))
    with pytest.raises(ValueError, match="activation:"):
        lowbit.linear(x, pw, activation="per_row")
    with pytest.raises(ValueError, match="activation_scale"):
        lowbit.linear(x, pw, activation="static")
    with pytest.raises(ValueError, match="activation_scale"):
        lowbit.linear(x, pw, activation="static", activation_scale=float("nan"))
    with pytest.raises(ValueError, match="activation_scale"):
        lowbit.linear(x, pw, activation="static", activation_scale=-1.0)
    with pytest.raises(ValueError, match="activation_scale"):
        lowbit.linear(x, pw, activation_scale=0.1)
    with pytest.raises(ValueError, match="activation_zero_point"):
        lowbit.linear(x, pw, activation="static", activation_scale=0.1, activation_zero_point=256)
    with pytest.raises(ValueError, match="activation_zero_point"):
        lowbit.linear(x, pw, activation="static", activation_scale=0.1, activation_zero_point=-1)
    with pytest.raises(ValueError, match="activation_zero_point"):
        lowbit.linear(x, pw, activation="static", activation_scale=0.1, activation_zero_point=128, activation_dtype="int8")
    with pytest.raises(ValueError, match="out_scale"):
        lowbit.linear(x, pw, out_scale=float("inf"))
    with pytest.raises(ValueError, match="out_zero_point"):
        lowbit.linear(x, pw, out_zero_point=3)
    with pytest.raises(ValueError, match="out_zero_point"):
        lowbit.linear(x, pw, out_scale=0.1, out_zero_point=200)
    with pytest.raises(TypeError, match="activation_zero_point"):
        lowbit.linear(x, pw, activation="static", activation_scale=0.1, activation_zero_point=1.5)


def test_linear_torch_inputs_match_numpy(rng):
    torch = pytest.importorskip("torch")
    w = rng.standard_normal((12, 20)).astype(np.float32)
    x = rng.standard_normal((4, 20)).astype(np.float32)
    pt = lowbit.pack_weight(torch.from_numpy(w))
    np.testing.assert_array_equal(pt.int_repr(), lowbit.pack_weight(w).int_repr())
    np.testing.assert_array_equal(lowbit.linear(torch.from_numpy(x), pt), lowbit.linear(x, pt))


def test_best_isa_gemm_kernels_ran(rng):
    """The best matmul kernel of this CPU must run for each GEMM op name."""
    best = lowbit.cpu_info()["available"][0]
    ops = dict(_core.op_isas())
    a = ints(rng, (9, 40), np.int8)
    b = ints(rng, (40, 20), np.int8)
    pw = lowbit.pack_weight(rng.standard_normal((20, 40)).astype(np.float32))
    x = rng.standard_normal((9, 40)).astype(np.float32)
    before = {op: dict(c) for op, c in _core.kernel_calls()}
    with lowbit.arch(best):
        lowbit.matmul_int8(a, b)
        lowbit.matmul_int8(a.view(np.uint8), b)
        lowbit.linear(x, pw)
        lowbit.linear(x, pw, out_scale=0.1)
    after = {op: dict(c) for op, c in _core.kernel_calls()}
    for op in ("matmul_s8s8_s32", "matmul_u8s8_s32", "linear_f32_s8w_f32", "linear_f32_s8w_s8"):
        want = next(i for i in lowbit.cpu_info()["available"] if i in ops[op])
        assert after[op].get(want, 0) > before.get(op, {}).get(want, 0), f"{op}: {want} kernel did not run"
    for isa in ("amx", "avx512vnni"):  # the fastest int8 path present must be the one chosen
        if isa in lowbit.cpu_info()["available"]:
            assert want == isa
            break


def test_gemm_kernels_built_for_every_x86_isa():
    """AVX-VNNI and AMX cannot run on the development machine; they must at least be built."""
    if "avx2" not in lowbit.cpu_info()["available"]:
        pytest.skip("not an x86-64 CPU with AVX2")
    isas = dict(_core.op_isas())["matmul_s8s8_s32"]
    assert {"scalar", "avx2", "avxvnni", "avx512vnni", "amx"} <= set(isas)
    assert "avx512" not in isas  # forcing avx512 (no VNNI) runs the exact AVX2 kernel


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    m=st.integers(0, 12),
    k=st.integers(1, 70),
    n=st.integers(1, 40),
    activation=st.sampled_from(["dynamic", "dynamic_per_tensor"]),
    relu=st.booleans(),
)
def test_linear_property_matches_reference(data, m, k, n, activation, relu):
    act = activation
    x = data.draw(hnp.arrays(np.float32, (m, k), elements=st.floats(-1e6, 1e6, width=32) | st.sampled_from([np.nan, np.inf, -np.inf])))
    w = data.draw(hnp.arrays(np.float32, (n, k), elements=st.floats(-10, 10, width=32)))
    pw = lowbit.pack_weight(w)
    np.testing.assert_array_equal(lowbit.linear(x, pw, activation=act, relu=relu), ref_linear(x, pw, None, activation=act, relu=relu))


def test_results_do_not_depend_on_thread_count(rng):
    x = rng.standard_normal((200, 300)).astype(np.float32)
    pw = lowbit.pack_weight(rng.standard_normal((130, 300)).astype(np.float32))
    a = ints(rng, (200, 300), np.int8)
    old = lowbit.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            lowbit.set_num_threads(t)
            outs.append((lowbit.linear(x, pw, activation="dynamic_per_tensor"), lowbit.matmul_int8(a, pw)))
    finally:
        lowbit.set_num_threads(old)
    for y, c in outs[1:]:
        np.testing.assert_array_equal(y, outs[0][0])
        np.testing.assert_array_equal(c, outs[0][1])


def test_concurrent_calls_from_python_threads(rng):
    import threading

    x = rng.standard_normal((64, 256)).astype(np.float32)
    pw = lowbit.pack_weight(rng.standard_normal((96, 256)).astype(np.float32))
    want = lowbit.linear(x, pw)
    errors = []

    def work():
        for _ in range(20):
            if not np.array_equal(lowbit.linear(x, pw), want):
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.skipif("avx512vnni" not in lowbit.cpu_info()["available"], reason="the twin needs AVX-512 VNNI")
@pytest.mark.parametrize("adtype", [np.int8, np.uint8], ids=["s8s8", "u8s8"])
@pytest.mark.parametrize("m,k,n", [(0, 3, 4), (1, 1, 1), (3, 2, 100), (5, 7, 17), (7, 57, 9), (33, 65, 17), (64, 64, 64), (5, 4099, 40)])
def test_avxvnni_kernel_source_via_evex_twin(adtype, m, k, n, rng):
    """The AVX-VNNI kernel cannot run here; its source, built with EVEX vpdpbusd, must be exact."""
    a, b = ints(rng, (m, k), adtype), ints(rng, (k, n), np.int8)
    np.testing.assert_array_equal(_core._matmul_avxvnni_twin(a, b).astype(np.int64), ref.matmul_int8(a, b))
    extreme = np.full((m, k), np.iinfo(adtype).max if adtype == np.uint8 else -128, adtype)
    np.testing.assert_array_equal(_core._matmul_avxvnni_twin(extreme, np.full((k, n), -128, np.int8)).astype(np.int64), ref.matmul_int8(extreme, np.full((k, n), -128, np.int8)))


@pytest.mark.skipif("avx512vnni" not in lowbit.cpu_info()["available"], reason="the twin needs AVX-512 VNNI")
@pytest.mark.parametrize("adtype", [np.int8, np.uint8], ids=["s8s8", "u8s8"])
@pytest.mark.parametrize("m,k,n", [(0, 3, 4), (1, 1, 1), (32, 1, 32), (32, 64, 32), (33, 65, 17), (64, 200, 64), (70, 130, 50), (96, 1100, 33), (64, 1600, 80)])
def test_amx_kernel_source_via_emulated_tiles(adtype, m, k, n, rng):
    """The AMX kernel cannot run here; its blocking and addressing, on scalar-emulated tiles, must be exact."""
    a, b = ints(rng, (m, k), adtype), ints(rng, (k, n), np.int8)
    np.testing.assert_array_equal(_core._matmul_amx_twin(a, b).astype(np.int64), ref.matmul_int8(a, b))
