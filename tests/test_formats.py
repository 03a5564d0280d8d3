"""Tests for lowbit.formats (nf4, fp16, bf16, log2, ternary, binary) on every ISA: C++ kernels
bit-exact against the NumPy reference, NF4 against bitsandbytes' published table, fp16 against
NumPy, bf16 against PyTorch, round-trip error bounds, exact nbytes, bad input errors."""

from __future__ import annotations

from fractions import Fraction

import lowbit
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from lowbit import _core
from lowbit import reference as ref

SIZES = [0, 1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000]

# The independent oracle: bitsandbytes' NF4 codebook and its dQuantizeNF4 decision-tree thresholds,
# copied from bitsandbytes (bitsandbytes/functional.py get_4bit_type("nf4"), csrc/kernels.cu).
BNB_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
]


def f(s: float) -> np.float32:
    """float32 nearest to the decimal literal (what `0.123f` compiles to; float32(float64(s)) can
    differ by double rounding)."""
    v = Fraction(repr(s))
    c = np.float32(s)
    return min([np.nextafter(c, np.float32(-2)), c, np.nextafter(c, np.float32(2))], key=lambda t: abs(Fraction(float(t)) - v))


def bnb_quantize_nf4(x: float) -> int:
    """bitsandbytes' dQuantizeNF4, transcribed (float32 comparisons with float literals)."""
    x = np.float32(x)
    if x > f(0.03979014977812767):
        if x > f(0.3893125355243683):
            if x > f(0.6427869200706482):
                return 0b1111 if x > f(0.8614784181118011) else 0b1110
            return 0b1101 if x > f(0.5016634166240692) else 0b1100
        if x > f(0.2035212516784668):
            return 0b1011 if x > f(0.2920137718319893) else 0b1010
        return 0b1001 if x > f(0.1202552504837513) else 0b1000
    if x > f(-0.33967943489551544):
        if x > f(-0.13791173323988914):
            return 0b0111 if x > f(-0.045525018125772476) else 0b0110
        return 0b0101 if x > f(-0.23460740596055984) else 0b0100
    if x > f(-0.6106329262256622):
        return 0b0011 if x > f(-0.4599952697753906) else 0b0010
    return 0b0001 if x > f(-0.8480964004993439) else 0b0000


def edge_values() -> np.ndarray:
    f = np.finfo(np.float32)
    v = [0.0, -0.0, 1.0, -1.0, 0.5, f.max, -f.max, f.tiny, -f.tiny, f.tiny / 2, 1e-45, -1e-45, np.inf, -np.inf,
         65504.0, 65519.996, 65520.0, -65520.0, 6.1e-5, 6.0e-8, 2.98e-8, 1.0 + 2**-8, 1.0 + 3 * 2**-8,
         1.0 + 2**-11, 1.0 + 3 * 2**-11, 3.0e38, 3.4e38]
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF, 0xFF812345], np.uint32).view(np.float32)
    with np.errstate(over="ignore"):
        return np.concatenate([np.float32(v), nans, np.float32(v) * np.float32(3.7)]).astype(np.float32)


# -- nf4 ---------------------------------------------------------------------------------------


def test_nf4_levels_equal_bitsandbytes_table():
    np.testing.assert_array_equal(lowbit.formats.NF4_LEVELS, np.float32(BNB_NF4))
    np.testing.assert_array_equal(ref.NF4_LEVELS, np.float32(BNB_NF4))
    q = lowbit.quantize(np.float32(BNB_NF4), dtype="nf4", group_size=16)
    np.testing.assert_array_equal(q.int_repr(), np.arange(16))
    np.testing.assert_array_equal(q.dequantize(), np.float32(BNB_NF4))


def test_nf4_codes_match_bitsandbytes_tree_on_every_threshold(isa):
    """Values on, just below and just above every threshold; the block absmax is exactly 1."""
    ts = np.float32([f(t) for t in (
        -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544, -0.23460740596055984,
        -0.13791173323988914, -0.045525018125772476, 0.03979014977812767, 0.1202552504837513, 0.2035212516784668,
        0.2920137718319893, 0.3893125355243683, 0.5016634166240692, 0.6427869200706482, 0.8614784181118011)])
    np.testing.assert_array_equal(ts, ref._nf4_thresholds())
    vals = np.concatenate([ts, np.nextafter(ts, np.float32(-2)), np.nextafter(ts, np.float32(2)), np.float32(BNB_NF4)])
    vals = np.concatenate([vals, np.linspace(-1, 1, 333, dtype=np.float32)])
    x = np.concatenate([vals, np.float32([1.0] * (-len(vals) % 64))]).astype(np.float32)
    x[::64] = 1.0  # every block has absmax 1, so y == x exactly
    q = lowbit.quantize(x, dtype="nf4")
    np.testing.assert_array_equal(q.scale, np.ones_like(q.scale))
    np.testing.assert_array_equal(q.int_repr(), [bnb_quantize_nf4(v) for v in x])


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("block", [64, 2, 6, 128, 4096])
def test_nf4_matches_reference(isa, n, block, rng):
    x = (rng.standard_normal(n) * rng.uniform(0.01, 100)).astype(np.float32)
    q = lowbit.quantize(x, dtype="nf4", group_size=block)
    codes, absmax = ref.nf4_quantize(x, block)
    np.testing.assert_array_equal(q.int_repr(), codes)
    np.testing.assert_array_equal(q.scale, absmax)
    np.testing.assert_array_equal(q.data, ref.pack_int4(np.concatenate([codes, np.zeros(n % 2, np.uint8)]))[: (n + 1) // 2])
    np.testing.assert_array_equal(q.dequantize(), ref.nf4_dequantize(codes, absmax, block))
    assert q.nbytes == (n + 1) // 2 + 4 * (-(-n // block))


def test_nf4_shape_blocks_over_flattened_array(isa, rng):
    x = rng.standard_normal((3, 5, 70)).astype(np.float32)
    q = lowbit.quantize(x, dtype="nf4")
    codes, absmax = ref.nf4_quantize(x, 64)
    assert q.scale.shape == (-(-x.size // 64),)
    np.testing.assert_array_equal(q.scale, absmax)
    np.testing.assert_array_equal(q.int_repr(), codes)
    d = q.dequantize()
    assert d.shape == x.shape and d.dtype == np.float32
    np.testing.assert_array_equal(lowbit.dequantize(q), d)
    np.testing.assert_array_equal(lowbit.fake_quantize(x, dtype="nf4"), d)


def test_nf4_round_trip_error_bound(isa, rng):
    """|x - deq| <= absmax * (largest half-gap between neighbouring levels)."""
    x = rng.standard_normal(64 * 100).astype(np.float32)
    q = lowbit.quantize(x, dtype="nf4")
    half_gap = np.float32(np.max(np.diff(np.float32(BNB_NF4))) / 2)
    err = np.abs(q.dequantize() - x).reshape(-1, 64)
    assert np.all(err <= q.scale[:, None] * half_gap * np.float32(1 + 1e-6))
    rel_mse = np.mean((q.dequantize() - x) ** 2) / np.mean(x**2)
    assert rel_mse < 0.012  # NF4 on Gaussian data (measured ~0.0095)


def test_nf4_nan_zero_block_and_inf(isa):
    x = np.zeros(130, np.float32)
    x[70] = np.nan
    x[71] = 2.0
    q = lowbit.quantize(x, dtype="nf4")
    c = q.int_repr()
    assert c[70] == 7 and c[71] == 15 and np.all(c[:64] == 7)
    assert q.scale[0] == 0 and q.scale[1] == 2.0
    d = q.dequantize()
    assert d[70] == 0 and d[71] == 2 and not np.any(np.isnan(d))
    with pytest.raises(ValueError, match="finite"):
        lowbit.quantize(np.float32([1, np.inf]), dtype="nf4")


def test_nf4_double_quant(isa, rng):
    x = (rng.standard_normal((300, 256)) * rng.uniform(0.1, 3, (300, 1))).astype(np.float32)
    q1 = lowbit.quantize(x, dtype="nf4")
    q2 = lowbit.quantize(x, dtype="nf4", double_quant=True)
    nb = x.size // 64
    np.testing.assert_array_equal(q1.int_repr(), q2.int_repr())  # codes come from the exact absmax
    assert q2.nbytes == x.size // 2 + nb + 4 * (-(-nb // 256)) + 4
    assert q2.nbytes < q1.nbytes
    assert abs(q2.bits_per_weight - lowbit.formats.bits_per_weight("nf4", x.shape, double_quant=True)) < 1e-12
    # decoded scales within half an int8 step of the truth
    step = q2.nested.scale[np.arange(nb) // 256]
    assert np.all(np.abs(q2.scale - q1.scale) <= step * 0.5001 + 1e-7)
    e1 = np.mean((q1.dequantize() - x) ** 2)
    e2 = np.mean((q2.dequantize() - x) ** 2)
    assert e2 < e1 * 1.05


# -- fp16 / bf16 ---------------------------------------------------------------------------------


def same_bits_or_both_nan(got_bits, want_bits, values, mant_mask):
    nan = np.isnan(values)
    np.testing.assert_array_equal(got_bits[~nan], want_bits[~nan])
    # NaN stays NaN (any payload) and keeps its sign
    assert np.all((got_bits[nan] & mant_mask) != 0)
    np.testing.assert_array_equal(got_bits[nan] >> 15, np.signbit(values[nan]).astype(np.uint16))


@pytest.mark.parametrize("n", SIZES)
def test_fp16_bit_exact_vs_numpy(isa, n, rng):
    x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-9, 6, n)).astype(np.float32)
    q = lowbit.quantize(x, dtype="fp16")
    assert q.data.dtype == np.float16 and q.nbytes == 2 * n
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    np.testing.assert_array_equal(q.data.view(np.uint16), want.view(np.uint16))
    np.testing.assert_array_equal(q.dequantize(), want.astype(np.float32))


def test_fp16_edges_and_every_isa_agrees(isa):
    x = edge_values()
    x = np.concatenate([x, np.float32(np.linspace(-70000, 70000, 1001))])
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    got = lowbit.quantize(x, dtype="fp16").data.view(np.uint16)
    same_bits_or_both_nan(got, want, x, 0x3FF)
    with lowbit.arch("scalar"):
        np.testing.assert_array_equal(lowbit.quantize(x, dtype="fp16").data.view(np.uint16), got)
    d = lowbit.quantize(x, dtype="fp16").dequantize()
    assert np.all(np.isnan(d) == np.isnan(x))
    assert np.all(np.isinf(d[np.isinf(x)]))


def test_fp16_all_subnormal_and_tie_patterns(isa):
    # every float32 whose low 13 bits are 0, 0x1000 (tie), 0x1001, 0xFFF around fp16's range
    hi = np.arange(0x33000000 >> 13, 0x47800000 >> 13, 7, dtype=np.uint32) << 13
    bits = np.concatenate([hi, hi | 0x1000, hi | 0x1001, hi | 0xFFF, hi | 0x80000000 | 0x1000])
    x = bits.view(np.float32)
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(lowbit.quantize(x, dtype="fp16").data.view(np.uint16), want)


@pytest.mark.parametrize("n", SIZES)
def test_bf16_matches_reference(isa, n, rng):
    x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-30, 30, n)).astype(np.float32)
    q = lowbit.quantize(x, dtype="bf16")
    np.testing.assert_array_equal(q.data, ref.f32_to_bf16_bits(x))
    np.testing.assert_array_equal(q.dequantize(), ref.bf16_bits_to_f32(q.data))
    assert q.nbytes == 2 * n


def test_bf16_edges_subnormals_ties(isa, rng):
    base = rng.integers(0, 2**32, 4000, dtype=np.uint64).astype(np.uint32)
    sub = rng.integers(1, 1 << 23, 2000, dtype=np.uint32)  # float32 subnormals (vcvtneps2bf16 flushes them)
    ties = (base & 0xFFFF0000) | 0x8000
    bits = np.concatenate([base, sub, sub | 0x80000000, ties, ties & 0xFFFEFFFF | 0x8000, edge_values().view(np.uint32)])
    x = bits.view(np.float32)
    got = lowbit.quantize(x, dtype="bf16").data
    np.testing.assert_array_equal(got, ref.f32_to_bf16_bits(x))
    with lowbit.arch("scalar"):
        np.testing.assert_array_equal(lowbit.quantize(x, dtype="bf16").data, got)


def test_bf16_bit_exact_vs_torch(isa, rng):
    torch = pytest.importorskip("torch")
    base = rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([base.view(np.float32), (rng.standard_normal(5000) * 3).astype(np.float32), edge_values()])
    want = torch.from_numpy(x.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    got = lowbit.quantize(x, dtype="bf16").data
    same_bits_or_both_nan(got, want, x, 0x7F)
    # torch bf16 tensors in, exact
    t = torch.from_numpy(x[~np.isnan(x)].copy()).to(torch.bfloat16)
    np.testing.assert_array_equal(lowbit.quantize(t, dtype="bf16").dequantize(), t.float().numpy())


def test_bf16_native_kernel_runs_where_available():
    flags = lowbit.cpu_info()
    calls_before = dict(dict(_core.kernel_calls())["convert_f32_bf16"])
    lowbit.quantize(np.ones(100, np.float32), dtype="bf16")
    after = dict(dict(_core.kernel_calls())["convert_f32_bf16"])
    best = flags["ops"]["convert_f32_bf16"]  # the best kernel, or the one LOWBIT_ARCH allows
    assert after.get(best, 0) == calls_before.get(best, 0) + 1


def test_half_round_trip_bounds(isa, rng):
    x = (rng.standard_normal(10000) * 100).astype(np.float32)
    for dtype, ulp_bits in (("fp16", 11), ("bf16", 8)):
        d = lowbit.quantize(x, dtype=dtype).dequantize()
        rel = np.abs(d - x) / np.abs(x)
        small = np.abs(x) < 6.2e-5 if dtype == "fp16" else np.zeros_like(x, bool)
        assert np.all(rel[~small] <= 2.0**-ulp_bits * 1.0000001)


# -- log2 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("shape,axis", [((7,), None), ((5, 33), 0), ((4, 6, 9), 2), ((3, 8), None), ((0, 4), 0)])
def test_log2_matches_reference(bits, shape, axis, rng):
    x = (rng.standard_normal(shape) * np.exp(rng.uniform(-6, 3, shape))).astype(np.float32)
    q = lowbit.quantize(x, dtype="log2", bits=bits, axis=axis, per_channel=axis is not None)
    red = tuple(i for i in range(x.ndim) if i != axis)
    a = np.abs(x).max(axis=red) if x.size else np.ones(shape[axis] if axis is not None else ())
    np.testing.assert_array_equal(q.scale, np.float32(a))
    bs = [shape[i] if i == axis else 1 for i in range(len(shape))] if axis is not None else []
    codes = ref.log2_quantize(x, np.reshape(np.float32(a), bs), bits)
    np.testing.assert_array_equal(q.int_repr(), codes)
    np.testing.assert_array_equal(q.dequantize(), ref.log2_dequantize(codes, np.reshape(np.float32(a), bs), bits))
    assert q.nbytes == q.data.nbytes + 4 * np.size(q.scale)


def test_log2_levels_ties_and_clipping():
    a = np.float32(8.0)
    x = np.float32([8, 6, 6.0001, 5.9999, 3, 100, -100, -4, 0, -0.0, np.nan, 2**-4, 2**-4 * 0.75, 2**-4 * 1.5])
    q = lowbit.quantize(x, a, dtype="log2", per_channel=False)
    # 4-bit levels 8 * 2**(m - 7) for m = 1..7: 0.125, 0.25, ..., 8; and 0
    np.testing.assert_array_equal(q.dequantize(), ref.log2_dequantize(ref.log2_quantize(x, a, 4), a, 4))
    d = q.dequantize()
    assert d[0] == 8 and d[1] == 4 and d[2] == 8 and d[3] == 4 and d[4] == 2 and d[5] == 8 and d[6] == -8
    assert d[7] == -4 and d[8] == 0 and d[10] == 0
    assert d[11] == 0 and d[12] == 0 and d[13] == 0.125  # 0.0625 is the tie of 0 and 0.125: smaller
    q8 = lowbit.quantize(x, a, dtype="log2", bits=8, per_channel=False)
    assert q8.dequantize()[11] == 0.0625 and q8.nbytes == x.size + 4


def test_log2_observer_clip_range():
    obs = lowbit.MinMaxObserver()
    obs.update(np.float32([-3.0, 2.0]))
    q = lowbit.quantize(np.float32([1.5, -3.0, 5.0]), obs, dtype="log2")
    assert q.axis is None
    assert q.scale == 3.0
    np.testing.assert_array_equal(q.dequantize(), np.float32([1.5, -3.0, 3.0]))


def test_log2_relative_error_bound(rng):
    """Values inside the code range land within a factor sqrt(2)-ish: |err| <= |x| / 3."""
    x = (rng.standard_normal((16, 64))).astype(np.float32)
    q = lowbit.quantize(x, dtype="log2", bits=8)
    d = q.dequantize()
    assert np.all(np.abs(d - x) <= np.abs(x) / 3 * 1.000001)


# -- ternary / binary ---------------------------------------------------------------------------


def test_ternary(rng):
    x = rng.standard_normal((6, 50)).astype(np.float32)
    q = lowbit.quantize(x, dtype="ternary")
    delta = np.float32(0.7) * np.abs(x).mean(axis=1, dtype=np.float64).astype(np.float32)
    codes = ref.ternary_quantize(x, delta[:, None])
    np.testing.assert_array_equal(q.int_repr(), codes)
    a = np.array([np.abs(x[i][codes[i] != 0]).mean(dtype=np.float64) for i in range(6)], np.float32)
    np.testing.assert_allclose(q.scale, a, rtol=1e-6)
    np.testing.assert_array_equal(q.dequantize(), codes * q.scale[:, None])
    assert q.nbytes == -(-x.size // 4) + 4 * 6
    assert set(np.unique(q.dequantize()[0])) <= {-q.scale[0], 0, q.scale[0]}
    qs = lowbit.quantize(x, 0.5, dtype="ternary", per_channel=False, threshold=0.3)
    assert set(np.unique(qs.dequantize())) <= {-0.5, 0.0, 0.5}
    # the optimal TWN scale beats a bad one
    assert np.mean((q.dequantize() - x) ** 2) < np.mean((lowbit.quantize(x, 3.0, dtype="ternary").dequantize() - x) ** 2)


def test_binary(rng):
    x = rng.standard_normal((5, 37)).astype(np.float32)
    x[0, 0] = np.nan
    x[0, 1] = -0.0
    q = lowbit.quantize(x, dtype="binary")
    codes = ref.binary_quantize(x)
    np.testing.assert_array_equal(q.int_repr(), codes)
    a = np.nanmean(np.abs(x), axis=1, dtype=np.float64).astype(np.float32)
    np.testing.assert_allclose(q.scale, a, rtol=1e-6)
    np.testing.assert_array_equal(q.dequantize(), codes * q.scale[:, None])
    assert q.nbytes == -(-x.size // 8) + 4 * 5
    assert q.int_repr()[0, 0] == 1 and q.int_repr()[0, 1] == 1


@given(hnp.arrays(np.float32, st.integers(0, 200), elements=st.floats(-1e4, 1e4, width=32)))
@settings(max_examples=60, deadline=None)
def test_property_round_trips(x):
    for dtype in ("nf4", "fp16", "bf16", "log2", "ternary", "binary"):
        q = lowbit.quantize(x, dtype=dtype)
        d = q.dequantize()
        assert d.shape == x.shape and d.dtype == np.float32
        assert q.nbytes * 8 == pytest.approx(q.bits_per_weight * x.size) if x.size else True
        if dtype == "nf4":
            np.testing.assert_array_equal(q.int_repr(), ref.nf4_quantize(x, 64)[0])
        if x.size and dtype in ("nf4", "log2"):
            assert np.max(np.abs(d)) <= np.max(np.abs(x))  # never beyond the range


@pytest.mark.parametrize("dtype", ["nf4", "fp16", "bf16", "log2", "ternary", "binary"])
def test_nbytes_and_bits_per_weight(dtype, rng):
    x = rng.standard_normal((96, 130)).astype(np.float32)
    q = lowbit.quantize(x, dtype=dtype)
    assert q.bits_per_weight == pytest.approx(lowbit.formats.bits_per_weight(dtype, x.shape))
    parts = q.data.nbytes + (0 if dtype in ("fp16", "bf16") else 4 * np.size(q.scale))
    assert q.nbytes == parts
    assert dtype in repr(q)


def test_nf4_block_size_is_a_deprecated_alias_of_group_size(rng):
    x = rng.standard_normal(100).astype(np.float32)
    want = lowbit.quantize(x, dtype="nf4", group_size=16)
    with pytest.warns(DeprecationWarning, match="use group_size=") as w:
        old = lowbit.quantize(x, dtype="nf4", block_size=16)
    assert w[0].filename == __file__  # attributed to the caller, not to lowbit
    np.testing.assert_array_equal(old.data, want.data)
    np.testing.assert_array_equal(old.scale, want.scale)
    with pytest.warns(DeprecationWarning, match="use group_size="):
        np.testing.assert_array_equal(lowbit.fake_quantize(x, dtype="nf4", block_size=16), want.dequantize())
    with pytest.raises(TypeError, match="only group_size"):
        lowbit.quantize(x, dtype="nf4", group_size=16, block_size=16)
    assert lowbit.quantize(x, dtype="nf4").block_size == 64  # the default block


# -- errors --------------------------------------------------------------------------------------


def test_bad_inputs():
    x = np.ones((4, 8), np.float32)
    with pytest.raises(ValueError, match="group_size"):
        lowbit.quantize(x, dtype="nf4", group_size=63)
    with pytest.raises(TypeError, match="group_size"):
        lowbit.quantize(x, dtype="nf4", group_size=64.0)
    with pytest.raises(ValueError, match="scale"):
        lowbit.quantize(x, 1.0, dtype="nf4")
    with pytest.raises(ValueError, match="bits"):
        lowbit.quantize(x, dtype="log2", bits=3)
    with pytest.raises(ValueError, match="scale"):
        lowbit.quantize(x, np.ones(3), dtype="log2")
    with pytest.raises(ValueError, match="scale"):
        lowbit.quantize(x, -1.0, dtype="binary", per_channel=False)
    with pytest.raises(ValueError, match="axis"):
        lowbit.quantize(x, dtype="ternary", axis=5)
    with pytest.raises(ValueError, match="double_quant"):
        lowbit.quantize(x, dtype="log2", double_quant=True)
    with pytest.raises(ValueError, match="group_size"):
        lowbit.quantize(x, dtype="ternary", group_size=32)
    with pytest.raises(ValueError, match="rounding"):
        lowbit.quantize(x, dtype="bf16", rounding="stochastic")
    with pytest.raises(ValueError, match="threshold"):
        lowbit.quantize(x, dtype="ternary", threshold=-1)
    with pytest.raises(TypeError, match="block_size"):
        lowbit.quantize(x, 0.1, dtype="int8", block_size=64)
    with pytest.raises(TypeError, match="scale"):
        lowbit.quantize(x, dtype="int8")
    with pytest.raises(TypeError, match="x"):
        lowbit.quantize(np.ones(4, np.int32), dtype="nf4")
    with pytest.raises(ValueError, match="finite"):
        lowbit.quantize(np.float32([np.inf, 1]), dtype="log2")
    with pytest.raises(ValueError, match="dtype"):
        lowbit.formats.quantize_format(x, dtype="nf3")
    q = lowbit.quantize(x, dtype="nf4")
    with pytest.raises(AttributeError):
        _ = q.qmin
    with pytest.raises(ValueError, match="shape"):
        q.dequantize(out=np.empty(3, np.float32))
    with pytest.raises(TypeError, match="q"):
        _core.dequantize_nf4(np.zeros(16, np.int8), np.ones(1, np.float32), [32], 64)
    with pytest.raises(ValueError, match="absmax"):
        _core.dequantize_nf4(np.zeros(16, np.uint8), np.ones(2, np.float32), [32], 64)


def test_pickle_round_trip(rng):
    import pickle

    x = rng.standard_normal((20, 64)).astype(np.float32)
    for dtype, kw in (("nf4", {"double_quant": True}), ("bf16", {}), ("log2", {"bits": 8}), ("binary", {})):
        q = lowbit.quantize(x, dtype=dtype, **kw)
        q2 = pickle.loads(pickle.dumps(q))
        assert type(q2) is type(q) and q2.nbytes == q.nbytes
        np.testing.assert_array_equal(q2.dequantize(), q.dequantize())
