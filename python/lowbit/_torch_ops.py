"""torch.library custom ops over lowbit's kernels, with fake (meta) kernels for torch.compile/export.

Private layer between the torch modules (lowbit.nn) and the public NumPy API. Imports torch.

Ops (namespace ``lowbit``):
  - ``lowbit::fake_quantize(x, scale, zero_point, dtype, axis, grad_factor) -> Tensor``: the fused
    fake-quant kernel on CPU, torch ops with the same numerics elsewhere; autograd: clipped STE
    for x, LSQ for a learnable scale.
  - ``lowbit::quant_linear(x, w_q, w_scale, w_zp, bias, act_scale, act_zp, act, act_dtype) -> Tensor``:
    int8 linear (lowbit.linear) on CPU; elsewhere a torch reference, bit-identical to the kernel.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Optional

import numpy as np
import torch

import lowbit

from .quantize import qrange

__all__ = [
    "fake_quantize",
    "fake_quantize_impl",
    "fake_quantize_reference",
    "packed_weight",
    "quant_linear",
    "quant_linear_impl",
    "quant_linear_reference",
    "to_numpy",
]

_ACT_MODES = ("dynamic", "dynamic_per_tensor", "static")


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

# Packed weights keyed by the int8 weight tensor: (data_ptr, shape, scale ptr) -> entry. An entry
# is valid while the tensor it was packed from is alive and unmodified (same _version), so a
# freed-and-reused address can never hit a stale entry.
_PACK_LOCK = threading.Lock()
_PACKED: dict[tuple, tuple[Any, int, Any]] = {}


def _pack_key(w_q: torch.Tensor, w_scale: torch.Tensor, w_zp: torch.Tensor) -> tuple:
    return (
        w_q.data_ptr(),
        tuple(w_q.shape),
        tuple(w_q.stride()),
        w_scale.data_ptr(),
        w_zp.data_ptr(),
    )


def packed_weight(w_q: torch.Tensor, w_scale: torch.Tensor, w_zp: torch.Tensor) -> Any:
    """The :class:`lowbit.PackedWeight` of an int8 (N, K) weight with per-output-channel scales and
    zero points, packed once and cached until ``w_q`` is freed or modified in place."""
    key = _pack_key(w_q, w_scale, w_zp)
    version = (w_q._version, w_scale._version, w_zp._version)
    with _PACK_LOCK:
        hit = _PACKED.get(key)
    if hit is not None and hit[0]() is not None and hit[1] == version:
        return hit[2]
    packed = lowbit.pack_weight(
        to_numpy(w_q),
        scale=to_numpy(w_scale.to(torch.float32)),
        zero_point=to_numpy(w_zp.to(torch.int32)),
    )

    def _drop(_ref: Any, key: tuple = key) -> None:
        with _PACK_LOCK:
            entry = _PACKED.get(key)
            if entry is not None and entry[0] is _ref:
                del _PACKED[key]

    with _PACK_LOCK:
        _PACKED[key] = (weakref.ref(w_q, _drop), version, packed)
    return packed


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


def quant_linear_reference(
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
    wq = w_q.to(torch.float64) - w_zp.to(torch.float64)[:, None]
    acc = ((q.to(torch.float64) - z.to(torch.float64)) @ wq.T).to(torch.int64).to(torch.float32)
    y = acc * (s * w_scale.to(torch.float32))
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y


def quant_linear_impl(
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
    :func:`quant_linear_reference`."""
    if act not in _ACT_MODES:
        raise ValueError(f"act: expected one of {_ACT_MODES}, got {act!r}")
    if x.device.type != "cpu":
        return quant_linear_reference(
            x, w_q, w_scale, w_zp, bias, act_scale, act_zp, act, act_dtype
        )
    packed = packed_weight(w_q, w_scale, w_zp)
    kwargs: dict[str, Any] = {}
    if act == "static":
        kwargs = {
            "act_scale": float(act_scale),
            "act_zero_point": int(act_zp),
            "act_dtype": act_dtype,
        }
    b = None if bias is None else to_numpy(bias.to(torch.float32))
    y = lowbit.linear(to_numpy(x.to(torch.float32)), packed, b, act=act, **kwargs)
    return torch.from_numpy(y)


@torch.library.custom_op("lowbit::quant_linear", mutates_args=())
def quant_linear(
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
    """The op form of :func:`quant_linear_impl` (traceable by torch.compile / torch.export)."""
    return quant_linear_impl(x, w_q, w_scale, w_zp, bias, act_scale, act_zp, act, act_dtype)


@quant_linear.register_fake
def _(x, w_q, w_scale, w_zp, bias, act_scale, act_zp, act, act_dtype):
    return x.new_empty((*x.shape[:-1], w_q.shape[0]), dtype=torch.float32)
