"""The executable NumPy spec of lowbit's kernels. Slow, plain and obviously right.

Tests and benchmarks check every fast path against these functions. Nothing here calls the C++ core.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = [
    "qrange",
    "uniform01",
    "expand_params",
    "quantize",
    "dequantize",
    "fake_quantize",
    "pack_int4",
    "unpack_int4",
]


def qrange(dtype: str) -> tuple[int, int]:
    """(qmin, qmax) of "int8", "uint8", "int4", "uint4"."""
    return {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7), "uint4": (0, 15)}[dtype]


def _mix32(x: np.ndarray) -> np.ndarray:
    """lowbias32 hash on uint32 arrays (wrapping arithmetic)."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def uniform01(index: np.ndarray, seed: int) -> np.ndarray:
    """The stochastic-rounding offsets u in [0, 1) for flat element indices ``index`` (uint64).

    ``u = (mix32(lo32(index) ^ key(seed, hi32(index))) >> 8) * 2**-24`` with
    ``key = mix32(lo32(seed) ^ mix32(hi32(seed) ^ mix32(hi32(index) ^ 0x9E3779B9)))``.
    """
    index = np.asarray(index, dtype=np.uint64)
    hi = (index >> np.uint64(32)).astype(np.uint32)
    lo = (index & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    s_lo = np.uint32(seed & 0xFFFFFFFF)
    s_hi = np.uint32(seed >> 32)
    key = _mix32(s_lo ^ _mix32(s_hi ^ _mix32(hi ^ np.uint32(0x9E3779B9))))
    bits = _mix32(lo ^ key) >> np.uint32(8)
    return bits.astype(np.float32) * np.float32(1.0 / 16777216.0)


def expand_params(
    shape: tuple, scale, zero_point, axis: Optional[int] = None, group_size: Optional[int] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Broadcasts per-tensor/channel/group parameters to ``shape`` (float32 scale, int64 zp)."""
    s = np.asarray(scale, np.float32)
    z = np.asarray(zero_point, np.int64)
    if group_size is not None:
        n = shape[-1]
        s = np.repeat(s, group_size, axis=-1)[..., :n]
        z = np.repeat(np.broadcast_to(z, np.asarray(scale).shape), group_size, axis=-1)[..., :n]
    elif axis is not None:
        view = [1] * len(shape)
        view[axis] = shape[axis]
        s = s.reshape(view)
        z = np.broadcast_to(z, (shape[axis],)).reshape(view)
    return np.broadcast_to(s, shape), np.broadcast_to(z, shape)


def quantize(
    x: np.ndarray,
    scale,
    zero_point=0,
    dtype: str = "int8",
    axis: Optional[int] = None,
    group_size: Optional[int] = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> np.ndarray:
    """Unpacked integer values (int64) of the logical shape, per the numeric contract."""
    x = np.asarray(x)
    x = x.astype(np.float32)
    qmin, qmax = qrange(dtype)
    s, z = expand_params(x.shape, scale, zero_point, axis, group_size)
    inv = np.float32(1.0) / s
    with np.errstate(invalid="ignore", over="ignore"):
        y = x * inv
        y = np.where(np.isnan(y), np.float32(0), y)
        if rounding == "stochastic":
            u = uniform01(np.arange(x.size, dtype=np.uint64).reshape(x.shape), seed)
            y = np.floor(y + u)
        else:
            y = np.rint(y)
        y = np.clip(y, (qmin - z).astype(np.float32), (qmax - z).astype(np.float32))
    return y.astype(np.int64) + z


def dequantize(q: np.ndarray, scale, zero_point=0, axis=None, group_size=None) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32 (q unpacked, of the logical shape)."""
    q = np.asarray(q)
    s, z = expand_params(q.shape, scale, zero_point, axis, group_size)
    return (q.astype(np.int64) - z).astype(np.float32) * s


def fake_quantize(x, scale, zero_point=0, dtype="int8", axis=None, group_size=None, rounding="nearest", seed=0):
    """``dequantize(quantize(x))``."""
    q = quantize(x, scale, zero_point, dtype, axis, group_size, rounding, seed)
    return dequantize(q, scale, zero_point, axis, group_size)


def pack_int4(q: np.ndarray) -> np.ndarray:
    """Packs 4-bit values two per byte along the last axis, low nibble first, odd length padded with 0."""
    q = np.asarray(q).astype(np.int64) & 0xF
    if q.ndim == 0:
        return q.astype(np.uint8)
    if q.shape[-1] % 2:
        q = np.concatenate([q, np.zeros(q.shape[:-1] + (1,), np.int64)], axis=-1)
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, n: int, signed: bool) -> np.ndarray:
    """Inverse of :func:`pack_int4` for a last axis of length ``n``."""
    p = np.asarray(packed).astype(np.int64)
    v = np.stack([p & 0xF, p >> 4], axis=-1).reshape(p.shape[:-1] + (-1,))[..., :n]
    return np.where(v >= 8, v - 16, v) if signed else v


# ---------------------------------------------------------------------------------------------
# int8 matmul and quantized linear (issue 3): the spec of lowbit.matmul_int8 / pack_weight / linear
# ---------------------------------------------------------------------------------------------

__all__ += ["matmul_int8", "pack_weight_int8", "dynamic_act_qparams", "linear"]

_F32_EPS = np.float32(np.finfo(np.float32).eps)
_F32_MAX = np.float32(np.finfo(np.float32).max)


def matmul_int8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer product in int64: ``a.astype(int64) @ b.astype(int64)``."""
    return np.asarray(a).astype(np.int64) @ np.asarray(b).astype(np.int64)


def pack_weight_int8(w: np.ndarray, axis: Optional[int] = 0) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 weight quantization of ``w (N, K)``: ``(q int64 (N, K), scale float32 (N,))``.

    ``scale = max(absmax / 127, eps)`` per row (axis=0) or over the tensor (axis=None): the
    symmetric range [-127, 127] of ``Int8Weights`` (the same rule as quantized layers and QAT).
    """
    w = np.asarray(w, np.float32)
    if axis is None:
        absmax = np.float32(np.max(np.abs(w))) if w.size else np.float32(0)
        absmax = np.full(w.shape[0], absmax, np.float32)
    else:
        absmax = np.max(np.abs(w), axis=1) if w.shape[1] else np.zeros(w.shape[0], np.float32)
    scale = np.maximum(absmax.astype(np.float32) / np.float32(127), _F32_EPS).astype(np.float32)
    return quantize(w, scale, 0, "int8", axis=0), scale


def dynamic_act_qparams(x: np.ndarray, per_row: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic asymmetric uint8 parameters of ``x (M, K)``: float32 scale and int64 zero point, (M,).

    Over the finite values and 0: ``scale = max((hi - lo) / 255, eps)`` (an infinite range is
    clamped to float32 max), ``zero_point = clip(-rint(lo / scale), 0, 255)``.
    """
    x = np.asarray(x, np.float32)
    x0 = np.where(np.isfinite(x), x, np.float32(0))
    if per_row:
        lo = np.minimum(x0.min(axis=1, initial=0), 0).astype(np.float32)
        hi = np.maximum(x0.max(axis=1, initial=0), 0).astype(np.float32)
    else:
        lo = np.full(x.shape[0], min(np.float32(0), x0.min(initial=0)), np.float32)
        hi = np.full(x.shape[0], max(np.float32(0), x0.max(initial=0)), np.float32)
    with np.errstate(over="ignore"):
        rng = hi - lo
    rng = np.where(np.isfinite(rng), rng, _F32_MAX).astype(np.float32)
    scale = np.maximum(rng / np.float32(255), _F32_EPS).astype(np.float32)
    zp = np.clip(np.float32(0) - np.rint(lo / scale), 0, 255).astype(np.int64)
    return scale, zp


def linear(
    x: np.ndarray,
    q_w: np.ndarray,
    w_scale: np.ndarray,
    bias: Optional[np.ndarray] = None,
    activation: str = "dynamic",
    activation_scale: Optional[float] = None,
    activation_zero_point: int = 0,
    activation_dtype: str = "uint8",
    out_scale: Optional[float] = None,
    out_zero_point: int = 0,
    relu: bool = False,
) -> np.ndarray:
    """Quantized linear layer on ``x (..., K)`` with int weight ``q_w (N, K)`` and scales ``(N,)``.

    ``v = (q_x - zp_x) @ q_w.T`` (exact), ``y = float32(v) * (s_x * s_w) + bias``, ReLU, and an
    optional int8 requantization, every step in float32 in this order.
    """
    x = np.asarray(x, np.float32)
    lead, k = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    act = activation
    if act == "static":
        s = np.full(m, activation_scale, np.float32)
        z = np.full(m, activation_zero_point, np.int64)
        dt = activation_dtype
    else:
        s, z = dynamic_act_qparams(x2, per_row=(act == "dynamic"))
        dt = "uint8"
    q = quantize(x2, s, z, dt, axis=0) if m else np.zeros((0, k), np.int64)
    v = (q - z[:, None]) @ np.asarray(q_w).astype(np.int64).T
    y = v.astype(np.float32) * (s[:, None] * np.asarray(w_scale, np.float32)[None, :])
    if bias is not None:
        y = y + np.asarray(bias, np.float32)[None, :]
    if relu:
        y = np.maximum(y, np.float32(0))
    if out_scale is not None:
        y = quantize(y, np.float32(out_scale), out_zero_point, "int8").astype(np.int8)
    return y.reshape(lead + (q_w.shape[0],))


__all__ += ["conv2d_depthwise"]


def conv2d_depthwise(
    x: np.ndarray,
    q_w: np.ndarray,
    w_scale: np.ndarray,
    bias: Optional[np.ndarray] = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    activation: str = "static",
    activation_scale: Optional[float] = None,
    activation_zero_point: int = 0,
    activation_dtype: str = "uint8",
    relu: bool = False,
) -> np.ndarray:
    """Quantized depthwise convolution of ``x (N, H, W, C)`` with int weights ``q_w (C, kh, kw)``
    and scales ``(C,)``: result ``(N * Ho * Wo, C)`` float32, rows in (n, oy, ox) order.

    The image is quantized once (static parameters, or "dynamic_per_tensor": uint8 parameters of
    the whole image's finite range and 0), ``v = sum over the taps inside the image of
    (q - zp) * w`` (exact; padding is the zero point), then :func:`linear`'s epilogue:
    ``float32(v) * (s_x * s_w) + bias``, ReLU.
    """
    x = np.asarray(x, np.float32)
    n, h, w, c = x.shape
    q_w = np.asarray(q_w).astype(np.int64)
    _, kh, kw = q_w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    if activation == "static":
        s, z, dt = np.float32(activation_scale), int(activation_zero_point), activation_dtype
    else:
        s1, z1 = dynamic_act_qparams(x.reshape(1, -1), per_row=False)
        s, z, dt = s1[0], int(z1[0]), "uint8"
    q = quantize(x, s, z, dt) - z
    qp = np.zeros((n, h + 2 * ph, w + 2 * pw, c), np.int64)
    qp[:, ph : ph + h, pw : pw + w] = q
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    v = np.zeros((n, ho, wo, c), np.int64)
    for i in range(kh):
        for j in range(kw):
            win = qp[:, i * dh : i * dh + (ho - 1) * sh + 1 : sh, j * dw : j * dw + (wo - 1) * sw + 1 : sw]
            v += win * q_w[:, i, j]
    y = v.reshape(-1, c).astype(np.float32) * (s * np.asarray(w_scale, np.float32))
    if bias is not None:
        y = y + np.asarray(bias, np.float32)
    if relu:
        y = np.maximum(y, np.float32(0))
    return y


# ---------------------------------------------------------------------------------------------
# Formats below 8 bits and half floats (issue 7): the spec of lowbit.formats
# (nf4, fp16, bf16, log2, ternary, binary). Plain NumPy, independent of the C++ kernels.
# ---------------------------------------------------------------------------------------------

__all__ += [
    "NF4_LEVELS",
    "nf4_quantize",
    "nf4_dequantize",
    "f32_to_bf16_bits",
    "bf16_bits_to_f32",
    "log2_levels",
    "log2_quantize",
    "log2_dequantize",
    "ternary_quantize",
    "binary_quantize",
]

# bitsandbytes' NF4 codebook (bitsandbytes/functional.py get_4bit_type("nf4"), identical to the
# dDequantizeNF4 constants in csrc/kernels.cu), as float32.
NF4_LEVELS = np.array(
    [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
     -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
     0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
     0.7229568362236023, 1.0],
    dtype=np.float32,
)


# bitsandbytes' dQuantizeNF4 tree (csrc/kernels.cu) compares y with these float literals (the
# float64 midpoints of adjacent levels, written with the `f` suffix); a value exactly on a
# threshold takes the lower code. The compiler rounds each decimal literal straight to float32,
# which differs from float32(float64(literal)) (double rounding) at three of the midpoints.
_NF4_THRESHOLD_LITERALS = (
    "-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
    "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476", "0.03979014977812767",
    "0.1202552504837513", "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
    "0.5016634166240692", "0.6427869200706482", "0.8614784181118011",
)


def f32_from_decimal(s: str) -> np.float32:
    """The float32 nearest to the decimal number ``s`` (as a C/C++ compiler rounds ``1.5f``)."""
    from fractions import Fraction

    v = Fraction(s)
    c = np.float32(float(v))
    cands = [np.nextafter(c, np.float32(-np.inf)), c, np.nextafter(c, np.float32(np.inf))]
    return min(cands, key=lambda f: (abs(Fraction(float(f)) - v), int(np.float32(f).view(np.uint32)) & 1))


def _nf4_thresholds() -> np.ndarray:
    return np.array([f32_from_decimal(t) for t in _NF4_THRESHOLD_LITERALS], np.float32)


def nf4_quantize(x: np.ndarray, block_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Unpacked NF4 codes (uint8, x's shape) and per-block absmax of x flattened in C order.

    absmax ignores NaN; y = x * float32(1 / absmax) (0 when absmax == 0); code = #{t : y > t};
    NaN -> code 7 (the level 0.0).
    """
    flat = np.asarray(x, np.float32).reshape(-1)
    n = flat.size
    nb = -(-n // block_size)
    pad = np.full(nb * block_size, np.nan, np.float32)
    pad[:n] = flat
    blocks = pad.reshape(nb, block_size)
    with np.errstate(invalid="ignore", over="ignore"):  # subnormal absmax: 1/absmax = inf, as in C
        absmax = np.where(np.isnan(blocks), np.float32(0), np.abs(blocks)).max(axis=1).astype(np.float32)
        inv = np.where(absmax > 0, np.float32(1) / np.where(absmax > 0, absmax, np.float32(1)), np.float32(0))
        y = blocks * inv.astype(np.float32)[:, None]
        codes = (y[..., None] > _nf4_thresholds()).sum(axis=-1)
    codes = np.where(np.isnan(y), 7, codes).astype(np.uint8).reshape(-1)[:n]
    return codes.reshape(np.shape(x)), absmax


def nf4_dequantize(codes: np.ndarray, absmax: np.ndarray, block_size: int = 64) -> np.ndarray:
    """``NF4_LEVELS[code] * absmax[block]`` in float32, blocks over the flattened codes."""
    c = np.asarray(codes).reshape(-1).astype(np.int64)
    blk = np.arange(c.size) // block_size
    return (NF4_LEVELS[c] * np.asarray(absmax, np.float32)[blk]).reshape(np.shape(codes))


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of float32 x: round to nearest even, overflow to inf,
    subnormals kept; NaN -> quiet NaN with x's sign and top payload bits."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, (u >> 16) | 0x40, r).astype(np.uint16)


def bf16_bits_to_f32(h: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (exact)."""
    return (np.asarray(h, np.uint16).astype(np.uint32) << 16).view(np.float32)


def log2_levels(bits: int) -> np.ndarray:
    """Magnitude levels (relative to the clipping value a) of the ``bits``-bit log2 code:
    code m = 0 is 0.0, m in [1, L] is 2**(m - L) with L = 2**(bits - 1) - 1."""
    L = 2 ** (bits - 1) - 1
    return np.concatenate([[0.0], 2.0 ** (np.arange(1, L + 1) - L)]).astype(np.float32)


def log2_quantize(x: np.ndarray, a, bits: int = 4) -> np.ndarray:
    """Signed log2 codes (int16: sign * m) of x for clipping values a (broadcast against x).

    Brute force: m = the level of ``|x| * float32(1 / a)`` nearest in value (ties to the smaller
    magnitude; |x| beyond a clips to the top level); NaN and values rounding to 0 get m = 0.
    """
    x = np.asarray(x, np.float32)
    a = np.asarray(a, np.float32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        r = np.abs(x) * (np.float32(1) / a)
    r = np.where(np.isnan(r), np.float32(0), np.minimum(r, np.float32(1))).astype(np.float64)
    lv = log2_levels(bits).astype(np.float64)
    d = np.abs(r[..., None] - lv)
    m = d.argmin(axis=-1)  # argmin takes the first (smaller) level on exact ties
    sign = np.where(np.signbit(x) & (m > 0), -1, 1)
    return (sign * m).astype(np.int16)


def log2_dequantize(codes: np.ndarray, a, bits: int = 4) -> np.ndarray:
    """``sign * a * 2**(m - L)`` (0 for m = 0) in float32."""
    c = np.asarray(codes).astype(np.int64)
    lv = log2_levels(bits)
    return (np.sign(c) * lv[np.abs(c)] * np.asarray(a, np.float32)).astype(np.float32)


def ternary_quantize(x: np.ndarray, delta) -> np.ndarray:
    """Ternary codes (int8): +1 where x > delta, -1 where x < -delta, else 0 (NaN -> 0)."""
    x = np.asarray(x, np.float32)
    with np.errstate(invalid="ignore"):
        return np.where(x > delta, 1, np.where(x < -np.asarray(delta), -1, 0)).astype(np.int8)


def binary_quantize(x: np.ndarray) -> np.ndarray:
    """Binary codes (int8): -1 where x < 0, else +1 (NaN and -0.0 -> +1)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.asarray(x, np.float32) < 0, -1, 1).astype(np.int8)


def linear_4bit(x: np.ndarray, codes: np.ndarray, scale: np.ndarray, dtype: str, group_size: int, bias=None) -> np.ndarray:
    """Exact (float64) ``x @ W.T + bias`` for 4-bit weights: ``W[n, k] = level(codes[n, k]) *
    scale[n, k // group_size]``, level = the int4 value or ``NF4_LEVELS[code]``."""
    c = np.asarray(codes)
    lv = NF4_LEVELS[c.astype(np.int64)] if dtype == "nf4" else c.astype(np.float32)
    k = c.shape[1]
    w = lv.astype(np.float64) * np.repeat(np.asarray(scale, np.float64), group_size, axis=1)[:, :k]
    y = np.asarray(x, np.float64) @ w.T
    return y if bias is None else y + np.asarray(bias, np.float64)


def quantize_rows_s8_groups(x: np.ndarray, group_size: int):
    """Activation quantization of the int8 path of 4-bit linears: each row's groups of
    ``group_size`` inputs (the last one zero-padded) symmetric to int8. Returns ``(xq (M, Kp)
    int8, xscale (M, G) float32)``: ``amax = max |x|``, ``xq = clamp(rint(x * min(127 / amax,
    FLT_MAX)), -127, 127)``, ``xscale = amax / 127``; a zero group gives zeros, a group with a
    non-finite value zeros and a NaN scale."""
    x = np.asarray(x, np.float32)
    m, k = x.shape
    groups = -(-k // group_size)
    xp = np.zeros((m, groups * group_size), np.float32)
    xp[:, :k] = x
    xg = xp.reshape(m, groups, group_size)
    finite = np.all(np.isfinite(xg), axis=2)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        amax = np.max(np.where(np.isfinite(xg), np.abs(xg), 0), axis=2).astype(np.float32)
        inv = np.minimum(np.float32(127) / amax, np.float32(np.finfo(np.float32).max)).astype(np.float32)
        inv = np.where(finite & (amax > 0), inv, np.float32(0)).astype(np.float32)
        q = np.clip(np.rint(np.where(np.isfinite(xg), xg, 0) * inv[:, :, None]), -127, 127).astype(np.int8)
        xscale = np.where(finite, amax / np.float32(127), np.float32(np.nan)).astype(np.float32)
    return q.reshape(m, -1), xscale


# NF4 levels rounded to int8: the weights of the NF4 int8-activation kernel (lowbit/linear_4bit.hpp).
NF4_INT8_LEVELS = np.rint(NF4_LEVELS.astype(np.float32) * np.float32(127)).astype(np.int8)


def linear_4bit_int8(x: np.ndarray, codes: np.ndarray, scale: np.ndarray, group_size: int, bias=None,
                     dtype: str = "int4") -> np.ndarray:
    """Bit-exact float32 spec of ``lowbit.linear(x, w, activation="dynamic")`` for 4-bit weights: per group ``d =
    sum(level * xq)`` in int64 (exact; level = the int4 value, or ``NF4_INT8_LEVELS[code]`` for
    nf4 with the scale divided by 127 in float32), then ``acc += (float32(d) * scale) * xscale``
    in float32 in group order, then ``+ bias``."""
    xq, xs = quantize_rows_s8_groups(x, group_size)
    c = np.asarray(codes, np.int64)
    sc = np.asarray(scale, np.float32)
    if dtype == "nf4":
        c = NF4_INT8_LEVELS[c].astype(np.int64)
        sc = (sc / np.float32(127)).astype(np.float32)
    n, k = c.shape
    groups = xs.shape[1]
    cp = np.zeros((n, groups * group_size), np.int64)
    cp[:, :k] = c
    d = np.einsum("mgk,ngk->mng", xq.reshape(-1, groups, group_size).astype(np.int64),
                  cp.reshape(n, groups, group_size))
    acc = np.zeros(d.shape[:2], np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        for g in range(groups):
            acc = (acc + (d[:, :, g].astype(np.float32) * sc[None, :, g]) * xs[:, g : g + 1]).astype(np.float32)
        if bias is not None:
            acc = (acc + np.asarray(bias, np.float32)).astype(np.float32)
    return acc


__all__ += ["linear_4bit", "quantize_rows_s8_groups", "linear_4bit_int8", "NF4_INT8_LEVELS"]
