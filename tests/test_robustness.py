"""Regression tests of issue 19 (no crash, no undefined behaviour, only TypeError/ValueError on any
input): overflow-free size arithmetic, bounded thread pool, overlap and alignment checks."""

import subprocess
import sys
import textwrap

import lowbit
import numpy as np
import pytest
from lowbit.core.linear_4bit import PackedWeight4


def misaligned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` whose data starts at an odd byte address."""
    buf = np.zeros(a.nbytes + 1, np.uint8)[1:]
    v = buf.view(a.dtype).reshape(a.shape)
    v[...] = a
    assert not v.flags.aligned
    return v


# item 2: huge group / block sizes
@pytest.mark.parametrize("n", [10, 70000])
def test_nf4_huge_block_size_raises(n):
    x = np.ones(n, np.float32)
    with pytest.raises(ValueError, match="group_size"):
        lowbit.quantize(x, dtype="nf4", group_size=2**63 - 2)
    with pytest.raises(ValueError, match="block_size"):
        lowbit._core.quantize_nf4(x, 2**63 - 2)


def test_nf4_block_at_the_cap_is_one_block():
    x = np.random.default_rng(0).standard_normal(70000).astype(np.float32)
    q = lowbit.quantize(x, dtype="nf4", group_size=2**48)
    np.testing.assert_array_equal(q.dequantize(), lowbit.quantize(x, dtype="nf4", group_size=70000).dequantize())


def test_huge_group_size_raises():
    x = np.ones((2, 10), np.float32)
    with pytest.raises(ValueError, match="group_size: must be at most 2"):
        lowbit.quantize(x, np.ones((2, 1), np.float32), dtype="int8", group_size=2**63 - 1)
    with pytest.raises(ValueError, match="group_size"):
        lowbit._core.quantize(x, "int8", "group", 1, 2**63 - 1, np.ones(2, np.float32), np.zeros(2, np.int32), -128,
                              127, "nearest", 0)


# item 3: shapes whose product overflows int64
@pytest.mark.parametrize("shape, axis", [((4, 2**62, 1), 0), ((2**62, 2**62, 4), None), ((2**32, 2**32, 4), None)])
def test_qtensor_shape_overflow_raises(shape, axis):
    scale = np.ones(4, np.float32) if axis is not None else 1.0
    zp = np.zeros(4, np.int32) if axis is not None else 0
    q = lowbit.QTensor(np.zeros(4, np.int8), scale, zp, "int8", shape, axis)
    with pytest.raises(ValueError, match="shape"):
        q.dequantize()
    with pytest.raises(ValueError, match="shape"):
        lowbit._core.dequantize(np.zeros(4, np.int8), list(shape), "int8", "row", 2**62, 0, np.ones(4, np.float32),
                                np.zeros(4, np.int32), -128, 127)


def test_conv2d_static_kernel_product_overflow_raises():
    w = lowbit.pack_weight(np.ones((4, 0), np.float32))
    x = np.zeros((1, 4, 4, 1), np.float32)
    f = lowbit.matmul.prepare_conv2d_static(w, None, activation_scale=0.1, activation_zero_point=0,
                                            kernel_size=(2**32, 2**32), padding=(2**31, 2**31))
    with pytest.raises(ValueError, match="kernel_size"):
        f(x)
    with pytest.raises(ValueError, match="padding"):
        lowbit._core.im2col(x, 1, 1, 1, 1, 2**62, 0, 1, 1)


# items 4 and 12: the thread pool does not leak its workers when it grows
def test_thread_count_sweep_keeps_os_threads_bounded():
    code = textwrap.dedent(
        """
        import numpy as np, lowbit
        def threads():
            with open("/proc/self/status") as f:
                return int(next(l for l in f if l.startswith("Threads:")).split()[1])
        x = np.random.default_rng(0).standard_normal(1 << 21).astype(np.float32)
        lowbit.set_num_threads(2)
        lowbit.quantize(x, 0.1)
        base = threads()
        for n in list(range(1, 17)) + list(range(16, 0, -1)) + list(range(2, 17)):
            lowbit.set_num_threads(n)
            lowbit.quantize(x, 0.1)
        print(base, threads())
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    base, after = map(int, r.stdout.split())
    assert after - base <= 16, (base, after)  # one pool of 15 workers; the leak left 119 more


# item 6: 4-bit linear with float activations overflows only where the exact result does
@pytest.mark.parametrize("dtype", ["int4", "nf4"])
def test_linear_4bit_float_large_inputs_stay_finite(dtype):
    rng = np.random.default_rng(0)
    w = lowbit.pack_weight(rng.standard_normal((16, 64)).astype(np.float32) * 0.01, dtype=dtype, group_size=32)
    x = np.full((2, 64), 1e37, np.float32)
    x[1, ::2] = -3e37
    bias = rng.standard_normal(16).astype(np.float32)
    y = lowbit.linear(x, w, bias, activation="float")
    exact = x.astype(np.float64) @ w.dequantize().T.astype(np.float64) + bias
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, exact, rtol=1e-5)
    small = x / np.float32(2**100)  # the pre-scaled path is exact: same bits as the plain one, scaled
    np.testing.assert_array_equal(lowbit.linear(x, w, activation="float"),
                                  lowbit.linear(small, w, activation="float") * np.float32(2**100))
    w2 = lowbit.pack_weight(np.tile(np.float32([1, 0, 0, 0, 0, 0, 0, 0] * 8), (16, 1)) * np.arange(16, dtype=np.float32)[:, None],
                            dtype=dtype, group_size=32)
    big = np.full((1, 64), 1e38, np.float32)
    exact = big.astype(np.float64) @ w2.dequantize().T.astype(np.float64)
    y = lowbit.linear(big, w2, activation="float")
    over = np.abs(exact) > np.finfo(np.float32).max
    assert over.any() and not over.all()
    assert np.all(np.isinf(y[over])) and np.all(np.isfinite(y[~over]))  # inf where the exact result overflows


# item 7
@pytest.mark.parametrize("dtype", ["int4", "uint4", "int8"])
def test_zero_d_int_repr_keeps_shape(dtype):
    q = lowbit.quantize(np.float32(1.0), 0.5, dtype=dtype, zero_point=0 if dtype != "uint4" else 8)
    assert q.int_repr().shape == ()
    assert q.dequantize().shape == ()
    assert lowbit.dequantize(np.int32(3), 0.5, dtype=dtype if dtype != "uint4" else "int4").shape == ()


# item 8
def test_fake_quantize_partially_overlapping_out_raises():
    buf = np.arange(20, dtype=np.float32)
    with pytest.raises(ValueError, match="overlap"):
        lowbit.fake_quantize(buf[:10], 1.0, out=buf[5:15])
    out = buf[10:]  # adjacent, not overlapping: fine
    np.testing.assert_array_equal(lowbit.fake_quantize(buf[:10], 1.0, out=out), np.arange(10, dtype=np.float32))


# item 9: documented exception types
def test_qtensor_with_format_dtype_raises_value_error():
    with pytest.raises(ValueError, match="dtype"):
        lowbit.QTensor(np.zeros(2, np.uint8), 1.0, 0, "nf4", (4,)).dequantize()


def test_from_codes_bad_group_size_raises_value_error():
    codes = np.zeros((4, 64), np.int8)
    for g in (0, 48, -32):
        with pytest.raises(ValueError, match="group_size"):
            PackedWeight4.from_codes(codes, np.ones((4, 2), np.float32), dtype="int4", group_size=g)


def test_zero_d_4bit_qtensor_in_matmul_raises_value_error():
    q = lowbit.quantize(np.float32(1.0), 0.5, dtype="int4")
    b = np.ones((1, 3), np.int8)
    with pytest.raises(ValueError):
        lowbit.matmul_int8(q, b)
    with pytest.raises(ValueError):
        lowbit.matmul_int8(b, q)


@pytest.mark.parametrize("key, value", [("counts", [np.inf] * 16), ("counts", [2**80] * 16), ("zeros", np.inf),
                                        ("nonfinite", np.inf), ("nonfinite", -5), ("nonfinite", np.nan)])
def test_observer_state_with_bad_counts_raises_value_error(key, value):
    obs = lowbit.HistogramObserver(bins=16)
    obs.update(np.linspace(-1, 1, 100, dtype=np.float32))
    d = obs.state_dict()
    if key == "nonfinite":
        d[key] = value
    else:
        d["state"][key] = value
    with pytest.raises(ValueError):
        lowbit.Observer.from_state_dict(d)


# item 11: arrays at odd addresses are copied (public API) or rejected (bindings), never loaded misaligned
def test_misaligned_inputs_match_aligned_copies():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 65)).astype(np.float32)
    xm = misaligned(x)
    np.testing.assert_array_equal(lowbit.quantize(xm, 0.05).data, lowbit.quantize(x, 0.05).data)
    np.testing.assert_array_equal(lowbit.fake_quantize(xm, 0.05, dtype="int4"), lowbit.fake_quantize(x, 0.05, dtype="int4"))
    np.testing.assert_array_equal(lowbit.quantize(xm, dtype="nf4").dequantize(), lowbit.quantize(x, dtype="nf4").dequantize())
    w = lowbit.pack_weight(rng.standard_normal((16, 65)).astype(np.float32))
    np.testing.assert_array_equal(lowbit.linear(xm, w), lowbit.linear(x, w))
    a, b = lowbit.MinMaxObserver(), lowbit.MinMaxObserver()
    a.update(xm)
    b.update(x)
    assert a.compute_qparams() == b.compute_qparams()
    with pytest.raises(ValueError, match="aligned"):
        lowbit._core.quantize(xm, "int8", "tensor", 1, 0, 0.05, 0, -128, 127, "nearest", 0)
    with pytest.raises(ValueError, match="aligned"):
        lowbit._core.im2col(misaligned(np.zeros((1, 3, 3, 2), np.float32)), 1, 1, 1, 1, 0, 0, 1, 1)


def test_misaligned_parameter_arrays_match_aligned_copies():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 65)).astype(np.float32)
    s = rng.uniform(0.01, 0.1, 7).astype(np.float32)
    z = rng.integers(-5, 5, 7).astype(np.int32)
    got = lowbit.quantize(x, misaligned(s), misaligned(z), axis=0)
    np.testing.assert_array_equal(got.data, lowbit.quantize(x, s, z, axis=0).data)
    w = lowbit.pack_weight(rng.standard_normal((16, 65)).astype(np.float32))
    b = rng.standard_normal(16).astype(np.float32)
    np.testing.assert_array_equal(lowbit.linear(x, w, misaligned(b)), lowbit.linear(x, w, b))
    ok = lowbit._core.quantize(x, "int8", "row", 1, 0, misaligned(s), misaligned(z), -128, 127, "nearest", 0)
    np.testing.assert_array_equal(ok, got.data)
