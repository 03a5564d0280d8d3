"""torch.library custom ops over lowbit's kernels, with fake (meta) kernels for torch.compile/export.

Private layer between the torch modules (lowbit.nn) and the public NumPy API. Imports torch.

Ops (namespace ``lowbit``):
  - ``lowbit::fake_quantize(x, scale, zero_point, dtype, axis, grad_factor) -> Tensor``: the fused
    fake-quant kernel on CPU, torch ops with the same numerics elsewhere; autograd: clipped STE
    for x, LSQ for a learnable scale.
  - ``lowbit::linear_int8(x, w_q, w_scale, w_zp, bias, act_scale, act_zp, act, act_dtype) -> Tensor``:
    int8 linear (lowbit.linear) on CPU; elsewhere a torch reference, bit-identical to the kernel.
    ``w_q`` is int8 (N, K) or, for per-channel int4 layers, uint8 (N, ceil(K / 2)) packed codes.
  - ``lowbit::linear_4bit(x, w_packed, w_scale, bias, dtype, group_size, act) -> Tensor``: group-wise
    int4 / nf4 weights through the fused 4-bit kernel (lowbit.linear on a PackedWeight4) on CPU;
    elsewhere dequantize + a float matmul. Autograd: the gradient of x is ``g @ W``.
  - ``lowbit::dequantize_weight(data, scale, zero_point, scheme, n, k) -> Tensor``: the float32
    (N, K) weight of any weight scheme's stored form (``scheme`` is the scheme's key, see
    :attr:`lowbit.schemes.WeightScheme.key`), with the scheme's NumPy/C++ dequantization on CPU and
    a bit-identical torch reference elsewhere (formats without one: computed on CPU and moved).

Stored 4-bit codes (``weight_packed``) are row-major (N, ceil(K / 2)) uint8, code 2i in the low
nibble of byte i and code 2i + 1 in the high nibble (int4 as two's complement nibbles): the layout
of :meth:`lowbit.PackedWeight4.packed_codes` and of 4-bit QTensor data.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Optional

import numpy as np
import torch

import lowbit

from ..core.cpu import _torch_interop_loaded
from ..core.formats import NF4_LEVELS
from ..core.linear_4bit import PackedWeight4
from ..core.quantize import qrange
from ..core.schemes import Int4Weights, NF4Weights, weight_scheme_from_key

__all__ = [
    "dequantize_weight",
    "dequantize_weight_impl",
    "dequantize_weight_reference",
    "fake_quantize",
    "fake_quantize_impl",
    "fake_quantize_reference",
    "linear_4bit",
    "linear_4bit_impl",
    "linear_4bit_reference",
    "pack_nibbles",
    "packed_weight",
    "packed_weight_4bit",
    "linear_int8",
    "linear_int8_impl",
    "linear_int8_reference",
    "stored_arrays",
    "to_numpy",
    "unpack_nibbles",
]

_ACT_MODES = ("dynamic", "dynamic_per_tensor", "static")

# lowbit's torch layers are in use: the "auto" thread backend moves lowbit's parallel work onto
# torch's OpenMP team (see lowbit.set_thread_backend).
_torch_interop_loaded()


def stored_arrays(scheme: Any, buffers: dict[str, Any]) -> dict[str, np.ndarray]:
    """CPU tensors of a layer's stored form -> the weight scheme's NumPy arrays (bfloat16 as
    uint16 bit patterns)."""
    out = {}
    for name, t in buffers.items():
        t = t.detach().cpu()
        if t.dtype == torch.bfloat16:
            out[name] = t.view(torch.int16).numpy().view(np.uint16)
        else:
            out[name] = t.contiguous().numpy()
    return out


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A zero-copy NumPy view of a CPU tensor (made contiguous first when it is not)."""
    return t.detach().contiguous().numpy()


# --------------------------------------------------------------------------------------------
# fake quantize


def fake_quantize_reference(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, dtype: str, axis: Optional[int]
) -> torch.Tensor:
    """Torch ops with the kernel's numerics: ``clamp(round_half_even(x * (1/scale)) + zp)``,
    ``1/scale`` in float32, NaN -> 0.0, then ``(q - zp) * scale``. Any device."""
    qmin, qmax = qrange(dtype)
    s = scale.to(torch.float32)
    z = zero_point.to(torch.float32)
    if axis is not None and s.dim() > 0:
        shape = [1] * x.dim()
        shape[axis] = -1
        s = s.reshape(shape)
        z = z.reshape(shape)
    inv = torch.reciprocal(s)
    xf = x.to(torch.float32)
    q = torch.clamp(torch.round(xf * inv) + z, qmin, qmax)
    q = torch.where(torch.isnan(xf), z.expand_as(q) if z.dim() else z, q)
    return (q - z) * s


def fake_quantize_impl(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, dtype: str, axis: Optional[int]
) -> torch.Tensor:
    """Fake-quantizes ``x`` (see :func:`lowbit.fake_quantize`) into a new float32 tensor; per
    tensor when ``axis`` is None, else per channel along ``axis``. CPU: the fused kernel; other
    devices: :func:`fake_quantize_reference`."""
    if x.device.type != "cpu":
        return fake_quantize_reference(x, scale, zero_point, dtype, axis)
    s = to_numpy(scale.to(torch.float32))
    z = to_numpy(zero_point.to(torch.int32))
    if axis is None:
        s, z = s.reshape(()), z.reshape(())
    out = lowbit.fake_quantize(to_numpy(x.to(torch.float32)), s, z, dtype=dtype, axis=axis)
    return torch.from_numpy(out)


@torch.library.custom_op("lowbit::fake_quantize", mutates_args=())
def fake_quantize(
    x: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    dtype: str,
    axis: Optional[int],
    grad_factor: float = 1.0,
) -> torch.Tensor:
    """The op form of :func:`fake_quantize_impl` (traceable by torch.compile / torch.export), with
    autograd: the clipped straight-through estimator for ``x`` and, when ``scale`` requires grad,
    the LSQ gradient scaled by ``grad_factor`` (as torch._fake_quantize_learnable_*)."""
    return fake_quantize_impl(x, scale, zero_point, dtype, axis)


@fake_quantize.register_fake
def _(x, scale, zero_point, dtype, axis, grad_factor=1.0):
    return torch.empty_like(x, dtype=torch.float32, memory_format=torch.contiguous_format)


def _fq_setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    x, scale, zero_point, dtype, axis, grad_factor = inputs
    ctx.save_for_backward(x, scale, zero_point)
    ctx.dtype, ctx.axis, ctx.grad_factor = dtype, axis, grad_factor


def _fq_backward(ctx: Any, g: torch.Tensor) -> tuple:
    x, scale, zp = ctx.saved_tensors
    qmin, qmax = qrange(ctx.dtype)
    s, z = scale.to(torch.float32), zp.to(torch.float32)
    if ctx.axis is not None and s.dim() > 0:
        shape = [1] * x.dim()
        shape[ctx.axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    xs = x.to(torch.float32) * torch.reciprocal(s)
    r = torch.round(xs)
    q = r + z
    below, above = q < qmin, q > qmax
    inside = ~(below | above)
    gx = (g * inside).to(x.dtype)
    gs = None
    if ctx.needs_input_grad[1]:
        d = torch.where(inside, r - xs, torch.where(below, qmin - z, qmax - z))
        gsf = g.to(torch.float32) * d * ctx.grad_factor
        if ctx.axis is None or scale.dim() == 0:
            gs = gsf.sum().reshape(scale.shape)
        else:
            dims = [i for i in range(x.dim()) if i != ctx.axis]
            gs = gsf.sum(dim=dims).reshape(scale.shape)
    return gx, gs, None, None, None, None


fake_quantize.register_autograd(_fq_backward, setup_context=_fq_setup_context)


# --------------------------------------------------------------------------------------------
# int8 linear

# Packed weights keyed by the stored weight tensors (address, shape, strides): an entry is valid
# while every tensor it was built from is alive and unmodified (same _version), so a
# freed-and-reused address can never hit a stale entry, and load_state_dict (an in-place copy)
# rebuilds it.
_PACK_LOCK = threading.Lock()
_PACKED: dict[tuple, tuple[tuple, tuple, Any]] = {}


def _cached(kind: str, tensors: tuple[torch.Tensor, ...], build: Callable[[], Any]) -> Any:
    key = (kind,) + tuple((t.data_ptr(), tuple(t.shape), tuple(t.stride())) for t in tensors)
    version = tuple(t._version for t in tensors)
    with _PACK_LOCK:
        hit = _PACKED.get(key)
    if hit is not None and all(r() is not None for r in hit[0]) and hit[1] == version:
        return hit[2]
    value = build()

    def _drop(_ref: Any, key: tuple = key) -> None:
        with _PACK_LOCK:
            entry = _PACKED.get(key)
            if entry is not None and any(r is _ref for r in entry[0]):
                del _PACKED[key]

    refs = tuple(weakref.ref(t, _drop) for t in tensors)
    with _PACK_LOCK:
        _PACKED[key] = (refs, version, value)
    return value


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """4-bit values (N, K) (int4 in [-8, 7] or uint4 in [0, 15], any integer dtype) -> uint8
    (N, ceil(K / 2)), two per byte, low nibble first; the pad nibble of an odd K is 0."""
    c = (q.to(torch.int16) & 15).to(torch.uint8)
    if c.shape[-1] % 2:
        c = torch.cat([c, c.new_zeros((*c.shape[:-1], 1))], dim=-1)
    return (c[..., 0::2] | (c[..., 1::2] << 4)).contiguous()


def unpack_nibbles(p: torch.Tensor, k: int, signed: bool) -> torch.Tensor:
    """Inverse of :func:`pack_nibbles`: (N, ceil(K / 2)) uint8 -> (N, K) int8 in [-8, 7] (signed)
    or uint8 in [0, 15]."""
    c = torch.stack([p & 15, p >> 4], dim=-1).reshape(*p.shape[:-1], 2 * p.shape[-1])[..., :k]
    if signed:
        return (c.to(torch.int8) ^ 8) - 8
    return c.contiguous()


def packed_weight(
    w_q: torch.Tensor, w_scale: torch.Tensor, w_zp: torch.Tensor, k: Optional[int] = None
) -> Any:
    """The :class:`lowbit.PackedWeight` of an int8 (N, K) weight (or a uint8 (N, ceil(K / 2))
    packed int4 one, then ``k`` is required) with per-output-channel scales and zero points,
    packed once and cached until one of the tensors is freed or modified in place."""

    def build() -> Any:
        q = w_q if w_q.dtype != torch.uint8 else unpack_nibbles(w_q, int(k), signed=True)
        return lowbit.pack_weight(
            to_numpy(q),
            scale=to_numpy(w_scale.to(torch.float32)),
            zero_point=to_numpy(w_zp.to(torch.int32)),
        )

    if w_q.dtype == torch.uint8 and k is None:
        raise ValueError("k: required for packed 4-bit weights")
    return _cached("int8", (w_q, w_scale, w_zp), build)


def packed_weight_4bit(
    w_packed: torch.Tensor, w_scale: torch.Tensor, dtype: str, group_size: int, k: int
) -> PackedWeight4:
    """The :class:`lowbit.PackedWeight4` of stored codes (N, ceil(K / 2)) and group scales
    (N, ceil(K / group_size)), built once and cached like :func:`packed_weight`.

    Raises:
        ValueError: the 4-bit kernels cannot take this shape (lowbit.core.linear_4bit says why).
    """
    return _cached(
        f"4bit:{dtype}:{group_size}:{k}",
        (w_packed, w_scale),
        lambda: PackedWeight4.from_packed_codes(
            to_numpy(w_packed),
            to_numpy(w_scale.to(torch.float32)),
            shape=(w_packed.shape[0], k),
            dtype=dtype,
            group_size=group_size,
        ),
    )


def _act_qparams_per_row(x: torch.Tensor, dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row asymmetric parameters covering [min(row, 0), max(row, 0)] over finite values, as
    :func:`lowbit.linear` computes them for dynamic activations."""
    qmin, qmax = qrange(dtype)
    finite = torch.where(torch.isfinite(x), x, torch.zeros((), dtype=x.dtype, device=x.device))
    lo = torch.clamp(finite.amin(dim=-1, keepdim=True), max=0.0)
    hi = torch.clamp(finite.amax(dim=-1, keepdim=True), min=0.0)
    fmax = float(torch.finfo(torch.float32).max)
    scale = torch.clamp(
        (hi - lo).clamp(max=fmax) / float(qmax - qmin), min=float(np.finfo(np.float32).eps)
    )
    zp = torch.clamp(qmin - torch.round(lo / scale), qmin, qmax)
    return scale, zp


def linear_int8_reference(
    x: torch.Tensor,
    w_q: torch.Tensor,
    w_scale: torch.Tensor,
    w_zp: torch.Tensor,
    bias: Optional[torch.Tensor],
    act_scale: Optional[torch.Tensor],
    act_zp: Optional[torch.Tensor],
    act: str,
    act_dtype: str,
) -> torch.Tensor:
    """The quantized linear in plain torch ops (any device), following :func:`lowbit.linear`'s
    contract step by step: activations quantized per row (dynamic), per tensor
    (dynamic_per_tensor) or with the given parameters (static); the integer accumulator is exact
    (float64 sums of integers); then ``float32(acc) * (act_scale * w_scale) + bias`` in float32."""
    xf = x.to(torch.float32)
    if act == "dynamic":
        s, z = _act_qparams_per_row(xf, "uint8")
    elif act == "dynamic_per_tensor":
        s, z = _act_qparams_per_row(xf.reshape(1, -1), "uint8")
        s, z = s.reshape(()), z.reshape(())
    else:
        s, z = act_scale.to(torch.float32).reshape(()), act_zp.to(torch.float32).reshape(())
    qmin, qmax = qrange("uint8" if act != "static" else act_dtype)
    q = torch.clamp(torch.round(xf * torch.reciprocal(s)) + z, qmin, qmax)
    q = torch.where(torch.isnan(xf), z.expand_as(q) if z.dim() else z, q)
    if w_q.dtype == torch.uint8:
        w_q = unpack_nibbles(w_q, x.shape[-1], signed=True)
    wq = w_q.to(torch.float64) - w_zp.to(torch.float64)[:, None]
    acc = ((q.to(torch.float64) - z.to(torch.float64)) @ wq.T).to(torch.int64).to(torch.float32)
    y = acc * (s * w_scale.to(torch.float32))
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y


def linear_int8_impl(
    x: torch.Tensor,
    w_q: torch.Tensor,
    w_scale: torch.Tensor,
    w_zp: torch.Tensor,
    bias: Optional[torch.Tensor],
    act_scale: Optional[torch.Tensor],
    act_zp: Optional[torch.Tensor],
    act: str,
    act_dtype: str,
) -> torch.Tensor:
    """``y = x @ dequant(w_q).T + bias`` with ``x`` quantized on the fly (float32 (..., K) ->
    float32 (..., N)); on CPU it runs :func:`lowbit.linear` on a cached packed weight, elsewhere
    :func:`linear_int8_reference`. ``w_q``: int8 (N, K), or uint8 (N, ceil(K / 2)) packed int4
    values (see the module docstring)."""
    if act not in _ACT_MODES:
        raise ValueError(f"act: expected one of {_ACT_MODES}, got {act!r}")
    if x.device.type != "cpu":
        return linear_int8_reference(
            x, w_q, w_scale, w_zp, bias, act_scale, act_zp, act, act_dtype
        )
    packed = packed_weight(w_q, w_scale, w_zp, x.shape[-1])
    kwargs: dict[str, Any] = {}
    if act == "static":
        kwargs = {
            "activation_scale": float(act_scale),
            "activation_zero_point": int(act_zp),
            "activation_dtype": act_dtype,
        }
    b = None if bias is None else to_numpy(bias.to(torch.float32))
    y = lowbit.linear(to_numpy(x.to(torch.float32)), packed, b, activation=act, **kwargs)
    return torch.from_numpy(y)


@torch.library.custom_op("lowbit::linear_int8", mutates_args=())
def linear_int8(
    x: torch.Tensor,
    w_q: torch.Tensor,
    w_scale: torch.Tensor,
    w_zp: torch.Tensor,
    bias: Optional[torch.Tensor],
    act_scale: Optional[torch.Tensor],
    act_zp: Optional[torch.Tensor],
    act: str,
    act_dtype: str,
) -> torch.Tensor:
    """The op form of :func:`linear_int8_impl` (traceable by torch.compile / torch.export)."""
    return linear_int8_impl(x, w_q, w_scale, w_zp, bias, act_scale, act_zp, act, act_dtype)


@linear_int8.register_fake
def _(x, w_q, w_scale, w_zp, bias, act_scale, act_zp, act, act_dtype):
    return x.new_empty((*x.shape[:-1], w_q.shape[0]), dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# weight dequantization (every stored weight format)


_NF4_LEVELS = torch.from_numpy(NF4_LEVELS.copy())


def _expand_groups(s: torch.Tensor, group_size: int, k: int) -> torch.Tensor:
    """Per-group parameters (N, G) -> (N, K) (the last group may be shorter)."""
    return s.repeat_interleave(group_size, dim=1)[:, :k]


def _per_row(s: torch.Tensor, n: int, k: int, group_size: int) -> torch.Tensor:
    """Scales / zero points of any granularity, broadcastable against (N, K)."""
    if s.dim() == 0:
        return s
    if s.dim() == 2 and group_size:
        return _expand_groups(s, group_size, k)
    return s.reshape(n, 1)


def dequantize_weight_reference(
    data: torch.Tensor,
    scale: Optional[torch.Tensor],
    zero_point: Optional[torch.Tensor],
    dtype: str,
    n: int,
    k: int,
    group_size: int,
    bits: int,
) -> torch.Tensor:
    """:func:`dequantize_weight_impl` in torch ops (any device), bit-identical to lowbit's kernels:
    every format is ``level * scale`` (or ``(q - zero_point) * scale``) with one float32 product."""
    dev = data.device
    if dtype in ("fp16", "bf16"):
        return data.to(torch.float32).reshape(n, k)
    s = scale.to(torch.float32)
    if dtype in ("int8", "int4", "uint4"):
        q = data if dtype == "int8" else unpack_nibbles(data, k, signed=dtype == "int4")
        z = torch.zeros((), device=dev) if zero_point is None else zero_point.to(torch.float32)
        return (q.to(torch.float32) - _per_row(z, n, k, group_size)) * _per_row(s, n, k, group_size)
    if dtype == "nf4":
        levels = _NF4_LEVELS.to(dev)
        codes = unpack_nibbles(data, k, signed=False).to(torch.int64)
        return levels[codes] * _expand_groups(s, group_size, k)
    if dtype == "log2":
        c = unpack_nibbles(data, k, signed=False) if bits == 4 else data.reshape(n, k)
        c = c.to(torch.int32)
        sign_bit, top = 1 << (bits - 1), (1 << (bits - 1)) - 1
        m = c & (sign_bit - 1)
        # 2 ** (m - top) built from its float32 bits (exact; m - top >= -126 keeps it normal)
        mag = ((m - top + 127) << 23).view(torch.float32)
        mag = torch.where(m > 0, mag, torch.zeros((), device=dev))
        sign = torch.where((c & sign_bit) != 0, -1.0, 1.0).to(torch.float32)
        sign = torch.where(m > 0, sign, torch.zeros((), device=dev))
        return sign * mag * _per_row(s, n, k, 0)
    flat = data.reshape(-1)
    if dtype == "ternary":
        c = torch.stack([(flat >> sh) & 3 for sh in (0, 2, 4, 6)], dim=-1).reshape(-1)[: n * k]
        v = torch.where(c == 2, -1, c.to(torch.int32))
    elif dtype == "binary":
        c = torch.stack([(flat >> sh) & 1 for sh in range(8)], dim=-1).reshape(-1)[: n * k]
        v = 1 - 2 * c.to(torch.int32)
    else:
        raise ValueError(f"dtype: unknown weight format {dtype!r}")
    return v.to(torch.float32).reshape(n, k) * _per_row(s, n, k, 0)


def dequantize_weight_impl(
    data: torch.Tensor,
    scale: Optional[torch.Tensor],
    zero_point: Optional[torch.Tensor],
    scheme: str,
    n: int,
    k: int,
) -> torch.Tensor:
    """The float32 (N, K) weight stored as ``data`` / ``scale`` / ``zero_point`` (the buffers of a
    lowbit.nn layer; None where the scheme has none) in the weight scheme whose key is ``scheme``.
    CPU: the scheme's dequantization (lowbit's kernels); elsewhere :func:`dequantize_weight_reference`
    for the built-in formats."""
    ws = weight_scheme_from_key(scheme)
    shape = (int(n), int(k))
    if data.device.type != "cpu":
        if ws.name in _REFERENCE_FORMATS:
            return dequantize_weight_reference(data, scale, zero_point, ws.name, n, k, ws.group_size or 0,
                                               ws.code_bits)
        cpu = [None if t is None else t.cpu() for t in (data, scale, zero_point)]
        return dequantize_weight_impl(*cpu, scheme, n, k).to(data.device)
    if n == 0 or k == 0:
        return torch.zeros(shape, dtype=torch.float32)
    if ws.name in ("fp16", "bf16") and data.dtype != (torch.float16 if ws.name == "fp16" else torch.bfloat16):
        return data.to(torch.float32).reshape(shape)  # e.g. after module.half()
    names = list(ws.storage_spec(n, k))
    tensors = {ws.data_name: data, "weight_scale": scale, "weight_zero_point": zero_point}
    stored = stored_arrays(ws, {name: tensors[name] for name in names})
    if "weight_scale" in stored:
        stored["weight_scale"] = stored["weight_scale"].astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(ws.dequantize(stored, n, k)))


_REFERENCE_FORMATS = ("fp16", "bf16", "int8", "int4", "uint4", "nf4", "log2", "ternary", "binary")


@torch.library.custom_op("lowbit::dequantize_weight", mutates_args=())
def dequantize_weight(
    data: torch.Tensor,
    scale: Optional[torch.Tensor],
    zero_point: Optional[torch.Tensor],
    scheme: str,
    n: int,
    k: int,
) -> torch.Tensor:
    """The op form of :func:`dequantize_weight_impl` (traceable by torch.compile / torch.export)."""
    return dequantize_weight_impl(data, scale, zero_point, scheme, n, k)


@dequantize_weight.register_fake
def _(data, scale, zero_point, scheme, n, k):
    return data.new_empty((n, k), dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# 4-bit linear (group-wise int4, nf4)

_ACT_4BIT = ("float", "int8")


def linear_4bit_reference(
    x: torch.Tensor,
    w_packed: torch.Tensor,
    w_scale: torch.Tensor,
    bias: Optional[torch.Tensor],
    dtype: str,
    group_size: int,
    act: str,
) -> torch.Tensor:
    """``x @ W.T + bias`` with the dequantized weight, in torch ops (any device). Activations
    stay float32 for both ``act`` modes (the kernel's int8 activation rounding is not emulated)."""
    k = x.shape[-1]
    w = dequantize_weight_reference(w_packed, w_scale, None, dtype, w_packed.shape[0], k, group_size, 4)
    b = None if bias is None else bias.to(torch.float32)
    return torch.nn.functional.linear(x.to(torch.float32), w, b)


def linear_4bit_impl(
    x: torch.Tensor,
    w_packed: torch.Tensor,
    w_scale: torch.Tensor,
    bias: Optional[torch.Tensor],
    dtype: str,
    group_size: int,
    act: str,
) -> torch.Tensor:
    """``y = x @ W.T + bias`` (float32 (..., K) -> float32 (..., N)) for stored 4-bit codes
    ``w_packed`` (N, ceil(K / 2)) with group scales ``w_scale`` (N, G): on CPU
    :func:`lowbit.linear` on a cached :class:`lowbit.PackedWeight4` with ``act`` "float" (float32
    activations) or "int8" (int8 per row, int4 only); elsewhere :func:`linear_4bit_reference`."""
    if act not in _ACT_4BIT:
        raise ValueError(f"act: expected one of {_ACT_4BIT}, got {act!r}")
    if x.device.type != "cpu":
        return linear_4bit_reference(x, w_packed, w_scale, bias, dtype, group_size, act)
    packed = packed_weight_4bit(w_packed, w_scale, dtype, group_size, x.shape[-1])
    b = None if bias is None else to_numpy(bias.to(torch.float32))
    return torch.from_numpy(lowbit.linear(to_numpy(x.to(torch.float32)), packed, b, activation="dynamic" if act == "int8" else "float"))


@torch.library.custom_op("lowbit::linear_4bit", mutates_args=())
def linear_4bit(
    x: torch.Tensor,
    w_packed: torch.Tensor,
    w_scale: torch.Tensor,
    bias: Optional[torch.Tensor],
    dtype: str,
    group_size: int,
    act: str,
) -> torch.Tensor:
    """The op form of :func:`linear_4bit_impl` (traceable by torch.compile / torch.export), with
    autograd for ``x``: ``grad_x = g @ W`` (the int8 activation rounding passes gradients
    straight through)."""
    return linear_4bit_impl(x, w_packed, w_scale, bias, dtype, group_size, act)


@linear_4bit.register_fake
def _(x, w_packed, w_scale, bias, dtype, group_size, act):
    return x.new_empty((*x.shape[:-1], w_packed.shape[0]), dtype=torch.float32)


def _l4_setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    x, w_packed, w_scale, bias, dtype, group_size, act = inputs
    ctx.save_for_backward(w_packed, w_scale)
    ctx.dtype, ctx.group_size, ctx.k, ctx.x_dtype = dtype, group_size, x.shape[-1], x.dtype


def _l4_backward(ctx: Any, g: torch.Tensor) -> tuple:
    w_packed, w_scale = ctx.saved_tensors
    scheme = Int4Weights(group_size=ctx.group_size) if ctx.dtype == "int4" else NF4Weights(group_size=ctx.group_size)
    w = dequantize_weight(w_packed, w_scale, None, scheme.key, w_packed.shape[0], ctx.k)
    gx = (g.to(torch.float32) @ w).to(ctx.x_dtype) if ctx.needs_input_grad[0] else None
    return gx, None, None, None, None, None, None


linear_4bit.register_autograd(_l4_backward, setup_context=_l4_setup_context)


# --------------------------------------------------------------------------------------------
# LayerNorm (lowbit.nn.LayerNorm under torch.compile / torch.export: the same kernel as eager)


@torch.library.custom_op("lowbit::layer_norm", mutates_args=())
def layer_norm(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    """LayerNorm over the last axis of a CPU float32 tensor on lowbit's kernel (lowbit/norm.hpp)."""
    from ..nn._common import rows_kernel  # lowbit.nn imports this module first

    w = None if weight is None else to_numpy(weight)
    b = None if bias is None else to_numpy(bias)
    return rows_kernel(x, lambda a: lowbit._core.layer_norm(a, w, b, float(eps)))


@layer_norm.register_fake
def _(x, weight, bias, eps):
    return torch.empty_like(x)
