"""Tests for lowbit.quantize: every ISA bit-exact against the NumPy reference and PyTorch."""

from __future__ import annotations

import threading

import lowbit
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from lowbit import reference as ref

DTYPES = ["int8", "uint8", "int4", "uint4"]
SIZES = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 1000]


def qparams_for(x, dtype, rng=None):
    qmin, qmax = ref.qrange(dtype)
    lo, hi = (float(np.nanmin(x)), float(np.nanmax(x))) if x.size else (-1.0, 1.0)
    return lowbit.choose_qparams(min(lo, 0.0), max(hi, 0.0), dtype=dtype)


def check(x, scale, zp, dtype, axis=None, group_size=None, rounding="nearest", seed=7):
    q = lowbit.quantize(x, scale, zp, dtype=dtype, axis=axis, group_size=group_size, rounding=rounding, seed=seed)
    want = ref.quantize(x, scale, zp, dtype, axis, group_size, rounding, seed)
    np.testing.assert_array_equal(q.int_repr().astype(np.int64), want)
    if dtype.endswith("4"):
        np.testing.assert_array_equal(q.data.view(np.uint8), ref.pack_int4(want))
    deq = q.dequantize()
    np.testing.assert_array_equal(deq, ref.dequantize(want, scale, zp, axis, group_size))
    fq = lowbit.fake_quantize(x, scale, zp, dtype=dtype, axis=axis, group_size=group_size, rounding=rounding, seed=seed)
    np.testing.assert_array_equal(fq.view(np.int32), deq.view(np.int32))  # bit-identical, signed zeros too
    return q


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_per_tensor(isa, dtype, n, rng):
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    s, z = qparams_for(x, dtype)
    check(x, s, z, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((5, 17), 0), ((5, 17), 1), ((3, 4, 33), 1), ((2, 3, 4, 5), 2), ((7,), 0), ((4, 65), 1), ((1, 1), 0)])
def test_per_channel(isa, dtype, shape, axis, rng):
    x = (rng.standard_normal(shape) * rng.uniform(0.1, 10, shape[axis]).reshape([-1 if i == axis else 1 for i in range(len(shape))])).astype(np.float32)
    lo = np.minimum(x.min(axis=tuple(i for i in range(x.ndim) if i != axis)), 0)
    hi = np.maximum(x.max(axis=tuple(i for i in range(x.ndim) if i != axis)), 0)
    s, z = lowbit.choose_qparams(lo, hi, dtype=dtype)
    check(x, s, z, dtype, axis=axis)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,g", [((4, 64), 32), ((3, 100), 32), ((2, 3, 17), 4), ((5, 7), 3), ((1, 5), 1), ((2, 130), 128), ((3, 9), 64)])
def test_per_group(isa, dtype, shape, g, rng):
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    ng = -(-shape[-1] // g)
    scale = rng.uniform(0.01, 0.5, shape[:-1] + (ng,)).astype(np.float32)
    qmin, qmax = ref.qrange(dtype)
    zp = rng.integers(qmin, qmax + 1, shape[:-1] + (ng,))
    check(x, scale, zp, dtype, group_size=g)


@pytest.mark.parametrize("g", [16, 48, 128])
@pytest.mark.parametrize("threads", [1, 3])
def test_per_group_whole_group_path(isa, g, threads, rng):
    """Groups of a multiple of the vector width run a dedicated loop; thread pieces start inside
    groups (64-element alignment) and rows end in a partial group; NaN and +-inf included."""
    x = (rng.standard_normal((37, 2000)) * 3).astype(np.float32)
    x.flat[rng.choice(x.size, 40, replace=False)] = rng.choice(np.float32([np.nan, np.inf, -np.inf]), 40)
    ng = -(-2000 // g)
    scale = rng.uniform(0.01, 0.5, (37, ng)).astype(np.float32)
    saved = lowbit.get_num_threads()
    try:
        lowbit.set_num_threads(threads)
        for dtype in ("int8", "uint8", "int4"):
            qmin, qmax = ref.qrange(dtype)
            check(x, scale, rng.integers(qmin, qmax + 1, (37, ng)), dtype, group_size=g)
    finally:
        lowbit.set_num_threads(saved)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
def test_stochastic_matches_reference(isa, dtype, granularity, rng):
    x = (rng.standard_normal((6, 67)) * 2).astype(np.float32)
    x[0, :5] = [np.nan, np.inf, -np.inf, 0.0, -0.0]
    kw = {}
    if granularity == "tensor":
        s, z = 0.05, ref.qrange(dtype)[0] + 3
    elif granularity == "channel":
        s, z, kw = rng.uniform(0.02, 0.2, 67).astype(np.float32), 1 if dtype[0] == "u" else 0, {"axis": 1}
    else:
        s, z, kw = rng.uniform(0.02, 0.2, (6, 5)).astype(np.float32), 2, {"group_size": 16}
    check(x, s, z, dtype, rounding="stochastic", seed=2**40 + 99, **kw)


def test_stochastic_reproducible_and_thread_independent(rng):
    x = rng.standard_normal(300_000).astype(np.float32)
    n = lowbit.get_num_threads()
    try:
        lowbit.set_num_threads(1)
        a = lowbit.quantize(x, 0.01, rounding="stochastic", seed=5).data
        lowbit.set_num_threads(2)
        b = lowbit.quantize(x, 0.01, rounding="stochastic", seed=5).data
    finally:
        lowbit.set_num_threads(n)
    np.testing.assert_array_equal(a, b)
    c = lowbit.quantize(x, 0.01, rounding="stochastic", seed=6).data
    assert (a != c).mean() > 0.2


def test_stochastic_is_unbiased():
    x = np.full(200_000, 0.3, np.float32)  # 0.3 / 1.0 lies 30% of the way from 0 to 1
    q = lowbit.quantize(x, 1.0, rounding="stochastic", seed=1).int_repr()
    assert set(np.unique(q)) == {0, 1}
    assert abs(q.mean() - 0.3) < 0.005  # ~5 sigma


def test_stochastic_counter_crosses_2_pow_32():
    # The generator's key changes at element index 2**32: kernels and reference must agree there.
    from lowbit import _core

    x = np.linspace(-3, 3, 100, dtype=np.float32)
    for isa in lowbit.cpu_info()["available"]:
        with lowbit.arch(isa):
            q = lowbit.quantize(x, 0.1, rounding="stochastic", seed=3).int_repr()
        np.testing.assert_array_equal(q, ref.quantize(x, 0.1, 0, "int8", rounding="stochastic", seed=3))
    assert "quantize" in dir(_core)


EDGE = np.array(
    [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-38, np.finfo(np.float32).max,
     -np.finfo(np.float32).max, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, 128.5, -127.5, -128.5, -129.5,
     254.5, 255.5, 256.5, 1e10, -1e10, 3e9, -3e9, 2.0**31, -(2.0**31), 0.49999997, -0.49999997],
    dtype=np.float32,
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1.0, 1e-30, 1e30, 0.1, 3.0])
def test_edge_values(isa, dtype, scale):
    qmin, qmax = ref.qrange(dtype)
    for zp in (qmin, qmax, (qmin + qmax) // 2):
        x = np.tile(EDGE, 3)  # several vector widths so edges hit SIMD lanes and tails
        q = check(x, scale, zp, dtype)
        vals = q.int_repr()[: len(EDGE)]
        assert vals[0] == zp and vals[1] == zp  # NaN -> zero point
        assert vals[2] == qmax and vals[3] == qmin  # +-inf saturate


def test_nan_dequantizes_to_zero():
    q = lowbit.quantize(np.float32([np.nan]), 0.1, 17, dtype="uint8")
    assert q.dequantize()[0] == 0.0


def test_ties_round_half_even():
    x = np.float32([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5])
    np.testing.assert_array_equal(lowbit.quantize(x, 1.0).int_repr(), [0, 2, 2, 0, -2, -2, 4])
    # The zero point is added after rounding: an odd zero point does not move the ties.
    np.testing.assert_array_equal(lowbit.quantize(x, 1.0, 1).int_repr(), [1, 3, 3, 1, -1, -1, 5])
    np.testing.assert_array_equal(lowbit.quantize(x * 0.1, np.float32(0.1), 1).int_repr(), [1, 3, 3, 1, -1, -1, 5])


@pytest.mark.parametrize("offset", [1, 3])
def test_unaligned_views_and_strides(isa, offset, rng):
    buf = rng.standard_normal(4096 + 8).astype(np.float32)
    x = buf[offset : offset + 4096]
    check(x, 0.02, 3, "int8")
    check(buf[offset::3], 0.02, 3, "int8")  # strided input
    x2 = rng.standard_normal((33, 40)).astype(np.float32).T  # Fortran-order view
    check(x2, np.full(40, 0.05, np.float32), 0, "int4", axis=0)


def test_float16_and_float64_inputs(isa, rng):
    x16 = (rng.standard_normal(1003) * 4).astype(np.float16)
    x16[:4] = [np.nan, np.inf, -np.inf, 6.0e-8]  # subnormal half too
    a = lowbit.quantize(x16, 0.03, 2)
    b = lowbit.quantize(x16.astype(np.float32), 0.03, 2)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(
        lowbit.fake_quantize(x16, 0.03, 2), lowbit.fake_quantize(x16.astype(np.float32), 0.03, 2)
    )
    x64 = rng.standard_normal(100)
    np.testing.assert_array_equal(lowbit.quantize(x64, 0.1).data, lowbit.quantize(x64.astype(np.float32), 0.1).data)


def test_large_multithreaded_equals_single_thread(rng):
    x = rng.standard_normal((300, 1001)).astype(np.float32)
    n = lowbit.get_num_threads()
    outs = []
    try:
        for t in (1, 2):
            lowbit.set_num_threads(t)
            outs.append((lowbit.quantize(x, 0.01, 5, dtype="uint4").data, lowbit.quantize(x, 0.02).dequantize()))
    finally:
        lowbit.set_num_threads(n)
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    check(x, 0.01, 5, "uint4")


def test_streaming_dequantize_large(isa, rng):
    x = rng.standard_normal(5_000_001).astype(np.float32)  # > 16 MiB of output: non-temporal stores
    q = lowbit.quantize(x, 0.03)
    np.testing.assert_array_equal(q.dequantize(), ref.dequantize(q.int_repr(), 0.03))


def test_concurrent_python_threads(rng):
    xs = [rng.standard_normal(400_000).astype(np.float32) for _ in range(4)]
    want = [ref.quantize(x, 0.01, 0, "int8").astype(np.int8) for x in xs]
    errors = []

    def work(i):
        for _ in range(5):
            if not np.array_equal(lowbit.quantize(xs[i], 0.01).data, want[i]):
                errors.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_input_not_modified(rng):
    x = rng.standard_normal(1000).astype(np.float32)
    x[3] = np.nan
    before = x.copy()
    lowbit.quantize(x, 0.1, rounding="stochastic", seed=1)
    lowbit.fake_quantize(x, 0.1)
    np.testing.assert_array_equal(x, before)


def test_empty_and_scalar(isa):
    for dtype in DTYPES:
        q = lowbit.quantize(np.zeros((0, 5), np.float32), 0.1, dtype=dtype)
        assert q.dequantize().shape == (0, 5)
        q = lowbit.quantize(np.zeros((3, 0), np.float32), np.ones(3, np.float32), dtype=dtype, axis=0)
        assert q.int_repr().shape == (3, 0)
    for shape, axis in [((0, 5), 0), ((2, 0, 5), 1), ((0,), 0), ((3, 0), 1)]:
        c = shape[axis]
        q = lowbit.quantize(np.zeros(shape, np.float32), np.ones(c, np.float32), dtype="int8", axis=axis)
        assert q.dequantize().shape == shape
    q = lowbit.quantize(np.float32(2.6), 1.0)
    assert q.shape == () and int(q.int_repr()) == 3 and q.dequantize() == np.float32(3.0)


def test_constant_input():
    x = np.full(100, 7.0, np.float32)
    s, z = lowbit.choose_qparams(x.min(), x.max())
    np.testing.assert_allclose(lowbit.fake_quantize(x, s, z), x, rtol=0, atol=s / 2)


def test_qtensor_properties():
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    q = lowbit.quantize(x, np.float32([0.5, 1.0]), np.array([1, 2]), dtype="uint4", axis=0)
    assert q.shape == (2, 5) and q.dtype == "uint4" and q.axis == 0 and q.granularity == "per_channel"
    assert q.data.shape == (2, 3) and q.data.dtype == np.uint8
    assert q.nbytes == 6 + 2 * 4 + 2 * 4
    assert "QTensor(shape=(2, 5), dtype=uint4" in repr(q)
    assert q.int_repr().dtype == np.uint8
    g = lowbit.quantize(x, np.ones((2, 2), np.float32), dtype="int4", group_size=3)
    assert g.granularity == "per_group" and "group_size=3" in repr(g)
    assert g.int_repr().dtype == np.int8


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(x=np.arange(4)), TypeError, "x"),
        (dict(x=np.ones(4, bool)), TypeError, "x"),
        (dict(x="abc"), TypeError, "x"),
        (dict(scale=0.0), ValueError, "scale"),
        (dict(scale=-1.0), ValueError, "scale"),
        (dict(scale=np.nan), ValueError, "scale"),
        (dict(scale=np.inf), ValueError, "scale"),
        (dict(scale=1e-45), ValueError, "scale"),
        (dict(scale=np.ones(4, np.float32)), ValueError, "scale"),
        (dict(scale="a"), TypeError, "scale"),
        (dict(zero_point=128), ValueError, "zero_point"),
        (dict(zero_point=1.5), ValueError, "zero_point"),
        (dict(zero_point=8, dtype="int4"), ValueError, "zero_point"),
        (dict(dtype="int16"), ValueError, "dtype"),
        (dict(rounding="up"), ValueError, "rounding"),
        (dict(seed=-1, rounding="stochastic"), ValueError, "seed"),
        (dict(seed=1.5, rounding="stochastic"), TypeError, "seed"),
        (dict(axis=2, scale=np.ones(4, np.float32)), ValueError, "axis"),
        (dict(axis=0, scale=np.ones(3, np.float32)), ValueError, "scale"),
        (dict(axis=0, scale=np.ones(4, np.float32), zero_point=np.zeros(3, int)), ValueError, "zero_point"),
        (dict(axis=0.0, scale=np.ones(4, np.float32)), TypeError, "axis"),
        (dict(group_size=0, scale=np.ones((4, 1), np.float32)), ValueError, "group_size"),
        (dict(group_size=2, scale=np.ones((4, 2), np.float32)), ValueError, "scale"),
        (dict(group_size=2, axis=0, scale=np.ones(4, np.float32)), ValueError, "axis"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = dict(x=np.ones((4, 6), np.float32), scale=0.1)
    args.update(kwargs)
    x = args.pop("x")
    scale = args.pop("scale")
    with pytest.raises(exc, match=match):
        lowbit.quantize(x, scale, **args)
    if "seed" not in kwargs:
        with pytest.raises(exc, match=match):
            lowbit.fake_quantize(x, scale, **args)


def test_dequantize_bad_input():
    with pytest.raises(TypeError, match="q"):
        lowbit.dequantize(np.zeros(3, np.int8))


def test_torch_gpu_like_tensor_rejected():
    class FakeDev:
        type = "cuda"

        def __str__(self):
            return "cuda:0"

    class Tensor:  # duck-typed stand-in for a CUDA torch tensor
        __module__ = "torch"
        device = FakeDev()

        def detach(self):
            return self

        def numpy(self):
            raise AssertionError("must not be called")

    with pytest.raises(ValueError, match="cuda"):
        lowbit.quantize(Tensor(), 0.1)


# ---------------------------------------------------------------------------------------------
# choose_qparams


def test_choose_qparams_basic():
    s, z = lowbit.choose_qparams(-1.0, 3.0, dtype="uint8")
    assert isinstance(s, float) and isinstance(z, int)
    assert s == np.float32(4.0) / np.float32(255) and z == 64
    s, z = lowbit.choose_qparams(-2.0, 1.0, symmetric=True)
    assert s == np.float32(2.0) / np.float32(127.5) and z == 0
    s, z = lowbit.choose_qparams(0.0, 0.0)  # PyTorch: eps scale, zero point at qmin
    assert s == np.finfo(np.float32).eps and z == -128
    s, z = lowbit.choose_qparams(np.float32([-1, 0.5]), np.float32([1, 2]), dtype="int4")
    assert s.dtype == np.float32 and z.dtype == np.int32 and s.shape == (2,)


@pytest.mark.parametrize("bad", [(1.0, 0.0), (np.nan, 1.0), (0.0, np.inf), (np.zeros(2), np.zeros(3))])
def test_choose_qparams_bad(bad):
    with pytest.raises(ValueError):
        lowbit.choose_qparams(*bad)


# ---------------------------------------------------------------------------------------------
# PyTorch bit-exactness


def _torch():
    return pytest.importorskip("torch")


# PyTorch deprecates its quantized tensors and reduce_range; the warnings are not ours.
torch_warnings = pytest.mark.filterwarnings("ignore:.*(deprecated|reduce_range).*:UserWarning")


@torch_warnings
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_bit_exact_with_torch_per_tensor(isa, dtype, rng):
    torch = _torch()
    tdt = torch.qint8 if dtype == "int8" else torch.quint8
    qmin, qmax = ref.qrange(dtype)
    for trial in range(20):
        x = (rng.standard_normal(1031) * rng.uniform(0.1, 100)).astype(np.float32)
        x[::97] = np.round(x[::97])  # integers after scaling by 1.0 (not ties: see the tie tests below)
        scale = float(np.float32(rng.uniform(1e-3, 2.0))) if trial else 1.0
        zp = int(rng.integers(qmin, qmax + 1))
        assert not _is_tie(x, scale).any()  # equal for every zero point only without exact .5 ties
        want = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, tdt)
        got = lowbit.quantize(x, scale, zp, dtype=dtype)
        np.testing.assert_array_equal(got.int_repr(), want.int_repr().numpy())
        np.testing.assert_array_equal(got.dequantize(), want.dequantize().numpy())


@torch_warnings
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_bit_exact_with_torch_per_channel(isa, dtype, axis, rng):
    torch = _torch()
    tdt = torch.qint8 if dtype == "int8" else torch.quint8
    qmin, qmax = ref.qrange(dtype)
    x = (rng.standard_normal((5, 6, 33)) * 5).astype(np.float32)
    c = x.shape[axis]
    scale = rng.uniform(0.01, 0.3, c).astype(np.float32)
    zp = rng.integers(qmin, qmax + 1, c)
    want = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scale.astype(np.float64)), torch.from_numpy(zp), axis, tdt)
    got = lowbit.quantize(x, scale, zp, dtype=dtype, axis=axis)
    np.testing.assert_array_equal(got.int_repr(), want.int_repr().numpy())
    np.testing.assert_array_equal(got.dequantize(), want.dequantize().numpy())


# Exact .5 ties. lowbit (and torch.fake_quantize_*) compute round_half_even(x * inv_scale) + zp with
# the product rounded to float32. torch.quantize_per_tensor / per_channel on x86 (FBGEMM) compute
# nearbyint(x * inv_scale + zp) as one fused multiply-add (the product is not rounded first). Where
# the product is exact in float32 (power-of-two scales) they agree for even zero points and differ
# at every tie for odd ones, by exactly one step: torch is one above lowbit where floor(x * inv_scale)
# is even, one below where it is odd. With other scales FBGEMM's unrounded product also moves
# near-ties (within an ulp of k + 0.5) by one step, for any zero point.


def _product(x, scale):
    return np.asarray(x, np.float32) * (np.float32(1) / np.asarray(scale, np.float32))


def _is_tie(x, scale):
    v = _product(x, scale)
    return v - np.floor(v) == np.float32(0.5)


def _ties(rng, n, scale, lo=-300, hi=300):
    """float32 values whose x * float32(1/scale) is exactly k + 0.5 in float32 (real ties)."""
    inv = np.float32(1) / np.float32(scale)
    k = rng.integers(lo, hi, 8 * n)
    x = ((k + 0.5) * np.float64(np.float32(scale))).astype(np.float32)
    keep = x * inv == (k + 0.5).astype(np.float32)
    assert keep.sum() >= n
    return x[keep][:n]


def _fbgemm_model(x, scale, zp, qmin, qmax):
    """torch.quantize_per_* on x86: nearbyint(fma(x, inv_scale, zp)), one float32 rounding."""
    inv = (np.float32(1) / np.asarray(scale, np.float32)).astype(np.float64)
    v = (np.asarray(x, np.float32).astype(np.float64) * inv + np.asarray(zp, np.float64)).astype(np.float32)
    return np.clip(np.rint(v), qmin, qmax).astype(np.int64)


def _tie_shift(x, scale, zp, qmin, qmax):
    """lowbit's contract with the one-step tie shift of an odd zero point (exact products only)."""
    v = _product(x, scale)
    zp = np.asarray(zp, np.int64)
    shift = np.where(_is_tie(x, scale) & (zp % 2 == 1), np.where(np.floor(v) % 2 == 0, 1, -1), 0)
    return np.clip(np.rint(v).astype(np.int64) + zp + shift, qmin, qmax)


@torch_warnings
def test_torch_rounding_example_from_the_design():
    torch = _torch()
    x = np.float32([0.5, 1.5, 2.5, -0.5, -1.5])
    assert lowbit.quantize(x, 1.0, 1).int_repr().tolist() == [1, 3, 3, 1, -1]
    assert torch.quantize_per_tensor(torch.from_numpy(x), 1.0, 1, torch.qint8).int_repr().tolist() == [2, 2, 4, 0, 0]
    fq = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), 1.0, 1, -128, 127).numpy()
    np.testing.assert_array_equal(lowbit.fake_quantize(x, 1.0, 1), fq)
    assert fq.tolist() == [0, 2, 2, 0, -2]


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int4", "uint4"])
@pytest.mark.parametrize("scale", [1.0, 0.25, 0.1, 0.037, 3.0])
def test_ties_per_tensor_equal_torch_fake_quantize(isa, dtype, scale, rng):
    torch = _torch()
    qmin, qmax = ref.qrange(dtype)
    ties = _ties(rng, 300, scale, 2 * qmin - 20, 2 * qmax + 20)
    x = np.concatenate([ties, (rng.standard_normal(100) * (qmax - qmin) * scale).astype(np.float32)])
    assert _is_tie(x, scale).sum() >= 300
    for zp in sorted({qmin, qmin + 1, (qmin + qmax) // 2, (qmin + qmax) // 2 + 1, qmax}):
        want = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), scale, zp, qmin, qmax).numpy()
        np.testing.assert_array_equal(lowbit.fake_quantize(x, scale, zp, dtype=dtype), want)
        np.testing.assert_array_equal(lowbit.quantize(x, scale, zp, dtype=dtype).dequantize(), want)


@torch_warnings
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("scale", [1.0, 0.25, 2.0, 0.1, 0.037])
def test_ties_per_tensor_vs_torch_quantize_per_tensor(isa, dtype, scale, rng):
    torch = _torch()
    tdt = torch.qint8 if dtype == "int8" else torch.quint8
    qmin, qmax = ref.qrange(dtype)
    exact_products = scale in (1.0, 0.25, 2.0)
    x = np.concatenate([_ties(rng, 400, scale, -150, 150), (rng.standard_normal(400) * 40 * scale).astype(np.float32)])
    tie = _is_tie(x, scale)
    v = _product(x, scale)
    near_tie = np.abs(v - (np.floor(v) + np.float32(0.5))) <= np.spacing(np.abs(v))
    for zp in (qmin, qmin + 1, 0 if dtype == "int8" else 128, 1 if dtype == "int8" else 127, qmax - 1, qmax):
        got = lowbit.quantize(x, scale, zp, dtype=dtype).int_repr().astype(np.int64)
        want = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, tdt).int_repr().numpy().astype(np.int64)
        np.testing.assert_array_equal(got, ref.quantize(x, scale, zp, dtype))
        np.testing.assert_array_equal(want, _fbgemm_model(x, scale, zp, qmin, qmax))
        differ = got != want
        assert set(np.abs(got - want)[differ].tolist()) <= {1}
        assert not differ[~near_tie].any()  # away from ties: always equal
        if exact_products:
            np.testing.assert_array_equal(want, _tie_shift(x, scale, zp, qmin, qmax))
            if zp % 2 == 0:
                assert not differ.any()
            else:  # exactly the ties differ (_tie_shift above says by how much; clamping can hide a few)
                assert not differ[~tie].any() and differ.sum() > 50


@torch_warnings
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("axis", [0, 1])
def test_ties_per_channel_vs_torch(isa, dtype, axis, rng):
    torch = _torch()
    tdt = torch.qint8 if dtype == "int8" else torch.quint8
    qmin, qmax = ref.qrange(dtype)
    scale = np.float32([1.0, 0.5, 0.25, 2.0, 0.5, 0.125])  # exact products: the tie rule alone explains torch
    zp = np.array([qmin + 1, qmin + 2, qmax - 1, qmax, (qmin + qmax) // 2, (qmin + qmax) // 2 + 1], np.int32)
    x = np.stack([np.concatenate([_ties(rng, 64, s, -100, 100), (rng.standard_normal(16) * 20 * s).astype(np.float32)])
                  for s in scale])  # (channels, values)
    x = np.ascontiguousarray(x if axis == 0 else x.T)
    bshape = (-1, 1) if axis == 0 else (1, -1)
    s_b, z_b = scale.reshape(bshape), zp.reshape(bshape)
    tx, ts, tz = torch.from_numpy(x), torch.from_numpy(scale), torch.from_numpy(zp)
    fq = torch.fake_quantize_per_channel_affine(tx, ts, tz, axis, qmin, qmax).numpy()
    np.testing.assert_array_equal(lowbit.fake_quantize(x, scale, zp, dtype=dtype, axis=axis), fq)
    got = lowbit.quantize(x, scale, zp, dtype=dtype, axis=axis).int_repr().astype(np.int64)
    want = torch.quantize_per_channel(tx, ts.double(), tz.long(), axis, tdt).int_repr().numpy().astype(np.int64)
    np.testing.assert_array_equal(want, _fbgemm_model(x, s_b, z_b, qmin, qmax))
    tie = _is_tie(x, s_b)
    odd = np.broadcast_to(z_b % 2 == 1, x.shape)
    np.testing.assert_array_equal(want, _tie_shift(x, s_b, z_b, qmin, qmax))
    differ = got != want
    assert not differ[~(tie & odd)].any()  # equal for even zero points and for non-ties
    assert differ[tie & odd].mean() > 0.5 and set(np.abs(got - want)[differ].tolist()) == {1}


def test_torch_tensor_input_zero_copy_semantics(rng):
    torch = _torch()
    t = torch.randn(4, 7, requires_grad=True)
    q = lowbit.quantize(t, 0.05)
    np.testing.assert_array_equal(q.int_repr(), lowbit.quantize(t.detach().numpy(), 0.05).int_repr())
    tb = torch.randn(10).to(torch.bfloat16)
    np.testing.assert_array_equal(lowbit.quantize(tb, 0.1).data, lowbit.quantize(tb.float().numpy(), 0.1).data)
    tnc = torch.randn(8, 9).t()  # non-contiguous
    np.testing.assert_array_equal(lowbit.quantize(tnc, 0.1).data, lowbit.quantize(tnc.contiguous().numpy(), 0.1).data)


@torch_warnings
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduce_range", [False, True])
def test_choose_qparams_matches_torch_observer(dtype, symmetric, reduce_range, rng):
    torch = _torch()
    from torch.ao.quantization.observer import MinMaxObserver

    tdt = torch.qint8 if dtype == "int8" else torch.quint8
    qscheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    if symmetric and reduce_range and dtype == "uint8":
        with pytest.raises(NotImplementedError):
            MinMaxObserver(dtype=tdt, qscheme=qscheme, reduce_range=reduce_range)
        with pytest.raises(ValueError, match="reduce_range"):
            lowbit.choose_qparams(-1.0, 1.0, dtype=dtype, symmetric=True, reduce_range=True)
        return
    for _ in range(25):
        x = (rng.standard_normal(50) * rng.uniform(0.01, 50) + rng.uniform(-20, 20)).astype(np.float32)
        obs = MinMaxObserver(dtype=tdt, qscheme=qscheme, reduce_range=reduce_range)
        obs(torch.from_numpy(x))
        ts, tz = obs.calculate_qparams()
        s, z = lowbit.choose_qparams(x.min(), x.max(), dtype=dtype, symmetric=symmetric, reduce_range=reduce_range)
        assert np.float32(s) == np.float32(ts.item()) and z == tz.item()


# ---------------------------------------------------------------------------------------------
# Properties


finite_f32 = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=1, max_dims=3, max_side=40),
    elements=st.floats(-1e4, 1e4, width=32, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(x=finite_f32, dtype=st.sampled_from(DTYPES), data=st.data())
def test_property_round_trip_error_and_idempotence(x, dtype, data):
    lo, hi = float(x.min()), float(x.max())
    s, z = lowbit.choose_qparams(min(lo, 0.0), max(hi, 0.0), dtype=dtype)
    q = lowbit.quantize(x, s, z, dtype=dtype)
    y = q.dequantize()
    # In range, the error is at most half a step (plus float32 rounding of the product).
    assert np.all(np.abs(y - x) <= s / 2 * (1 + 1e-5) + np.abs(x) * 1e-6)
    # quantize(dequantize(q)) == q
    np.testing.assert_array_equal(lowbit.quantize(y, s, z, dtype=dtype).int_repr(), q.int_repr())
    np.testing.assert_array_equal(q.int_repr().astype(np.int64), ref.quantize(x, s, z, dtype))


@settings(max_examples=40, deadline=None)
@given(x=finite_f32, scale=st.floats(float(np.float32(1e-3)), 10, width=32), dtype=st.sampled_from(DTYPES))
def test_property_monotonic(x, scale, dtype):
    xs = np.sort(x.reshape(-1))
    q = lowbit.quantize(xs, scale, ref.qrange(dtype)[0] // 2 + ref.qrange(dtype)[1] // 2, dtype=dtype).int_repr()
    assert np.all(np.diff(q.astype(np.int64)) >= 0)


def test_out_parameter(isa, rng):
    x = rng.standard_normal((7, 65)).astype(np.float32)
    q = lowbit.quantize(x, 0.05, 1, dtype="int4")
    buf = np.full((7, 33), 99, np.int8)
    q2 = lowbit.quantize(x, 0.05, 1, dtype="int4", out=buf)
    assert q2.data is buf
    np.testing.assert_array_equal(buf, q.data)
    with pytest.raises(TypeError, match="out"):
        lowbit.quantize(x, 0.05, 1, dtype="uint4", out=buf)
    with pytest.raises(ValueError, match="out"):
        lowbit.quantize(x, 0.05, 1, dtype="int8", out=buf)
    out = np.full((7, 65), 123.0, np.float32)
    r = q.dequantize(out=out)
    assert r is out or np.shares_memory(r, out)
    np.testing.assert_array_equal(out, lowbit.dequantize(q))
    out2 = np.empty_like(out)
    lowbit.fake_quantize(x, 0.05, 1, dtype="int4", out=out2)
    np.testing.assert_array_equal(out2, out)


@pytest.mark.parametrize(
    "out,exc",
    [
        (np.empty((7, 65), np.float64), TypeError),
        (np.empty((7, 64), np.float32), ValueError),
        (np.empty((65, 7), np.float32).T, ValueError),
        ([0.0] * 10, TypeError),
    ],
)
def test_out_parameter_bad(out, exc):
    x = np.ones((7, 65), np.float32)
    with pytest.raises(exc, match="out"):
        lowbit.quantize(x, 0.1).dequantize(out=out)
    with pytest.raises(exc, match="out"):
        lowbit.fake_quantize(x, 0.1, out=out)
    ro = np.empty((7, 65), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        lowbit.fake_quantize(x, 0.1, out=ro)
    with pytest.raises(ValueError, match="out"):
        lowbit.fake_quantize(x, 0.1, out=x)


@pytest.mark.parametrize("offset", [1, 3])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 63, 64, 65, 1000])
def test_guard_values_around_outputs(isa, offset, n, rng):
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    qbuf = np.full(n + 8, 77, np.int8)
    lowbit.quantize(x, 0.05, out=qbuf[offset : offset + n])
    assert np.all(qbuf[:offset] == 77) and np.all(qbuf[offset + n :] == 77)
    np.testing.assert_array_equal(qbuf[offset : offset + n], ref.quantize(x, 0.05))
    fbuf = np.full(n + 8, -5.5, np.float32)
    lowbit.fake_quantize(x, 0.05, out=fbuf[offset : offset + n])
    assert np.all(fbuf[:offset] == -5.5) and np.all(fbuf[offset + n :] == -5.5)
    pbuf = np.full(n // 2 + 1 + 8, 77, np.int8)
    packed = pbuf[offset : offset + (n + 1) // 2]
    lowbit.quantize(x, 0.5, dtype="int4", out=packed)
    assert np.all(pbuf[:offset] == 77) and np.all(pbuf[offset + (n + 1) // 2 :] == 77)
    np.testing.assert_array_equal(packed.view(np.uint8), ref.pack_int4(ref.quantize(x, 0.5, 0, "int4")))


def test_qtensor_pickles(rng):
    import pickle

    x = rng.standard_normal((3, 10)).astype(np.float32)
    for q in (lowbit.quantize(x, 0.1), lowbit.quantize(x, np.full((3, 4), 0.2, np.float32), dtype="uint4", zero_point=8, group_size=3)):
        r = pickle.loads(pickle.dumps(q))
        assert r.dtype == q.dtype and r.shape == q.shape and r.group_size == q.group_size
        np.testing.assert_array_equal(r.dequantize(), q.dequantize())


def test_torch_cpu_tensor_is_viewed_not_copied():
    torch = _torch()
    from lowbit.core._array import as_float_array

    t = torch.randn(64, 33)
    assert np.shares_memory(as_float_array(t, "x"), t.numpy())


# ---------------------------------------------------------------------------------------------
# dequantize of integer data the caller already has (ONNX DequantizeLinear style)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dequantize_integer_data_per_tensor_channel_group(dtype, rng):
    qmin, qmax = ref.qrange(dtype)
    v = rng.integers(qmin, qmax + 1, (6, 13))
    want_dtype = np.int8 if dtype in ("int8", "int4") else np.uint8
    s_t, z_t = np.float32(0.37), (qmin + qmax) // 2 + 1
    s_c, z_c = rng.uniform(0.01, 2, 6).astype(np.float32), rng.integers(qmin, qmax + 1, 6).astype(np.int32)
    s_g, z_g = rng.uniform(0.01, 2, (6, 4)).astype(np.float32), rng.integers(qmin, qmax + 1, (6, 4)).astype(np.int32)
    g = np.repeat(np.arange(4), 4)[:13]
    cases = [  # float64 expectations, for a loose cross-check of _onnx
        (dict(), (v - z_t) * s_t),
        (dict(axis=0), (v - z_c[:, None]) * s_c[:, None]),
        (dict(group_size=4), (v - z_g[:, g]) * s_g[:, g]),
    ]
    for data in (v.astype(np.int32), v.astype(want_dtype), v.astype(np.int64)):
        for (kw, want), (s, z) in zip(cases, [(s_t, z_t), (s_c, z_c), (s_g, z_g)]):
            got = lowbit.dequantize(data, s, z, dtype=dtype, **kw)
            assert got.dtype == np.float32 and got.shape == v.shape
            np.testing.assert_array_equal(got, _onnx(v, s, z, kw))
            np.testing.assert_allclose(got, want, rtol=1e-6)
    # the same numbers as a QTensor built by quantize
    x = ((v - z_t) * s_t).astype(np.float32)
    q = lowbit.quantize(x, float(s_t), z_t, dtype=dtype)
    np.testing.assert_array_equal(q.int_repr(), v)
    np.testing.assert_array_equal(lowbit.dequantize(v.astype(np.int32), float(s_t), z_t, dtype=dtype), q.dequantize())


def _onnx(v, s, z, kw):
    """(q - zero_point) * scale in float32, broadcast per tensor / channel (axis 0) / group (4)."""
    s, z = np.asarray(s, np.float32), np.asarray(z, np.int64)
    if kw.get("axis") == 0:
        s, z = s[:, None], z[:, None]
    elif "group_size" in kw:
        g = np.arange(v.shape[-1]) // kw["group_size"]
        s, z = s[:, g], z[:, g]
    return ((v - z).astype(np.float32) * s).astype(np.float32)


def test_dequantize_integer_data_defaults_and_torch(rng):
    np.testing.assert_array_equal(lowbit.dequantize(np.int8([-3, 0, 5]), 0.5, 1), np.float32([-2, -0.5, 2]))
    np.testing.assert_array_equal(lowbit.dequantize(np.uint8([0, 255]), 2.0, 128), np.float32([-256, 254]))
    torch = _torch()
    t = torch.tensor([[1, 2, 3], [4, 5, 15]], dtype=torch.int32)
    got = lowbit.dequantize(t, np.float32([[0.5, 1.0], [1, 2]]), np.int32([[0, 1], [2, 3]]), dtype="uint4", group_size=2)
    np.testing.assert_array_equal(got, np.float32([[0.5, 1, 2], [2, 3, 24]]))
    np.testing.assert_array_equal(lowbit.dequantize(torch.tensor([-8, 7], dtype=torch.int8), 0.25, dtype="int4"),
                                  np.float32([-2, 1.75]))


def test_dequantize_integer_data_errors():
    with pytest.raises(ValueError, match=r"4-bit data is packed two per byte along the last axis, low nibble first"):
        lowbit.dequantize(np.uint8([0x21, 0xF3]), 0.1, dtype="int4")  # already-packed bytes
    with pytest.raises(ValueError, match=r"\[0, 15\].*4-bit data is packed two per byte"):
        lowbit.dequantize(np.int32([16]), 0.1, dtype="uint4")
    with pytest.raises(ValueError, match=r"4-bit data is packed two per byte"):  # scale sized for 8 values, 4 given
        lowbit.dequantize(np.int8(np.zeros((2, 4))), np.ones((2, 8), np.float32), dtype="int4", group_size=1)
    with pytest.raises(ValueError, match=r"\[0, 255\] for dtype 'uint8', got \[-1, 300\]"):
        lowbit.dequantize(np.int32([-1, 300]), 0.1, dtype="uint8")
    with pytest.raises(ValueError, match="dtype: required for int32"):
        lowbit.dequantize(np.int32([3]), 0.1)
    with pytest.raises(TypeError, match="expected integer data"):
        lowbit.dequantize(np.float32([3]), 0.1, dtype="int8")
    with pytest.raises(TypeError, match="integer data with scale="):
        lowbit.dequantize(np.int8([3]))
    with pytest.raises(TypeError, match="carries its own parameters"):
        lowbit.dequantize(lowbit.quantize(np.float32([1.0]), 0.1), 0.1)
    with pytest.raises(ValueError, match=r"4-bit data is packed two per byte"):  # unpacked bytes in a QTensor
        lowbit.QTensor(np.zeros((2, 8), np.int8), 0.1, 0, "int4", (2, 8)).dequantize()
    with pytest.raises(ValueError, match=r"4-bit data is packed two per byte"):
        lowbit.quantize(np.zeros((2, 8), np.float32), 0.1, dtype="int4", out=np.zeros((2, 8), np.int8))
    with pytest.raises(ValueError, match=r"4-bit data is packed two per byte"):
        lowbit.quantize(np.zeros((2, 8), np.float32), np.ones(2, np.float32), dtype="uint4", axis=0,
                        out=np.zeros((2, 8), np.uint8))


def test_quantize_rejects_quantized_inputs():
    x = np.ones((4, 64), np.float32)
    for already in (lowbit.pack_weight(x), lowbit.pack_weight(x, dtype="int4", group_size=32),
                    lowbit.quantize(x, 0.1), lowbit.quantize(x, dtype="nf4")):
        name = type(already).__name__
        with pytest.raises(TypeError, match=rf"got {name}, which is already quantized; use x.dequantize\(\)"):
            lowbit.quantize(already, 0.1)
        with pytest.raises(TypeError, match=rf"got {name}"):
            lowbit.quantize(already, dtype="nf4")
    with pytest.raises(TypeError, match="got dict"):
        lowbit.quantize({"a": 1}, 0.1)
