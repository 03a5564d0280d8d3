"""FakeQuantize: quantize-dequantize in the forward pass, straight-through gradients (QAT).

Public torch layer. The CPU forward is lowbit's fused fake-quant kernel (lowbit::fake_quantize op).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from .. import _torch_ops
from ..quantize import qrange
from ._common import calc_qparams

__all__ = ["FakeQuantize", "enable_observer", "disable_observer"]


class _FakeQuantFn(torch.autograd.Function):
    """Forward: lowbit's fused fake quantization. Backward: straight-through estimator clipped to
    the representable range; with a learnable scale, the LSQ gradient for the scale."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, dtype: str, axis: Optional[int],
                grad_factor: float) -> torch.Tensor:
        s = scale.detach()
        if x.device.type == "cpu" and not torch.compiler.is_compiling():
            y = _torch_ops.fake_quantize_impl(x.detach(), s, zp, dtype, axis)
        else:
            y = torch.ops.lowbit.fake_quantize(x.detach(), s, zp, dtype, axis)
        ctx.save_for_backward(x, scale, zp)
        ctx.dtype, ctx.axis, ctx.grad_factor = dtype, axis, grad_factor
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:
        x, scale, zp = ctx.saved_tensors
        qmin, qmax = qrange(ctx.dtype)
        s, z = scale.detach().to(torch.float32), zp.to(torch.float32)
        if ctx.axis is not None:
            shape = [1] * x.dim()
            shape[ctx.axis] = -1
            s, z = s.reshape(shape), z.reshape(shape)
        xs = x.detach().to(torch.float32) * torch.reciprocal(s)
        q = torch.round(xs) + z
        below, above = q < qmin, q > qmax
        inside = ~(below | above)
        gx = (g * inside).to(x.dtype)
        gs = None
        if ctx.needs_input_grad[1]:
            d = torch.where(inside, torch.round(xs) - xs, torch.where(below, qmin - z, qmax - z))
            gsf = (g.to(torch.float32) * d) * ctx.grad_factor
            if ctx.axis is None:
                gs = gsf.sum().reshape(scale.shape)
            else:
                dims = [i for i in range(x.dim()) if i != ctx.axis % x.dim()]
                gs = gsf.sum(dim=dims).reshape(scale.shape)
        return gx, gs, None, None, None, None


class FakeQuantize(nn.Module):
    """Simulates quantization in float: ``y = (clamp(round(x / scale) + zp) - zp) * scale``.

    The range is observed while training (moving average of min/max, or the current min/max with
    ``averaging_constant=1``, the usual choice for weights) and frozen in eval mode; scale and zero
    point follow :func:`lowbit.choose_qparams` (affine) or ``max|x| / qmax`` (symmetric). With
    ``learnable=True`` the scale is an ``nn.Parameter`` trained with the LSQ gradient, initialised
    from the first observed range. The backward pass is the straight-through estimator, zero
    outside the representable range. CPU forward: lowbit's fused kernel (bit-identical to
    ``lowbit.fake_quantize``); other devices: torch ops with the same numerics.

    Args:
        dtype: "int8", "uint8", "int4" or "uint4".
        symmetric: zero point 0 (signed dtypes only).
        axis: channel axis for per-channel parameters (then ``channels`` is required), or None.
        channels: number of channels for per-channel parameters.
        averaging_constant: weight of the newest batch in the moving average of the range.
        learnable: LSQ learnable scale.

    Example:
        >>> import torch
        >>> fq = lowbit.nn.FakeQuantize("uint8")
        >>> y = fq(torch.linspace(-1, 1, 5))
        >>> [round(v, 3) for v in y.tolist()]
        [-1.0, -0.502, 0.0, 0.502, 1.0]
    """

    def __init__(
        self,
        dtype: str = "uint8",
        *,
        symmetric: bool = False,
        axis: Optional[int] = None,
        channels: int = 1,
        averaging_constant: float = 0.01,
        learnable: bool = False,
    ) -> None:
        super().__init__()
        qrange(dtype)
        if axis is None:
            channels = 1
        elif channels < 1:
            raise ValueError("channels: per-channel FakeQuantize needs channels >= 1")
        if not 0.0 < averaging_constant <= 1.0:
            raise ValueError(f"averaging_constant: must be in (0, 1], got {averaging_constant}")
        self.dtype = dtype
        self.symmetric = symmetric
        self.axis = axis
        self.channels = int(channels)
        self.averaging_constant = float(averaging_constant)
        self.learnable = learnable
        shape = () if axis is None else (self.channels,)
        if learnable:
            self.scale = nn.Parameter(torch.ones(shape))
        else:
            self.register_buffer("scale", torch.ones(shape))
        self.register_buffer("zero_point", torch.zeros(shape, dtype=torch.int32))
        self.register_buffer("min_val", torch.full(shape, math.inf))
        self.register_buffer("max_val", torch.full(shape, -math.inf))
        self.register_buffer("observer_enabled", torch.ones((), dtype=torch.uint8))
        self.register_buffer("fake_quant_enabled", torch.ones((), dtype=torch.uint8))

    @property
    def initialized(self) -> bool:
        return bool(torch.isfinite(self.min_val).all())

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """Updates the range with ``x`` and recomputes scale and zero point (learnable scales are
        only initialised)."""
        xd = x.detach()
        if xd.numel() == 0:
            return
        xd = torch.nan_to_num(xd.to(torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if self.axis is None:
            lo, hi = torch.aminmax(xd)
        else:
            flat = xd.movedim(self.axis, 0).reshape(xd.shape[self.axis], -1)
            lo, hi = flat.amin(dim=1), flat.amax(dim=1)
        first = not self.initialized
        if first or self.averaging_constant == 1.0:
            self.min_val.copy_(lo)
            self.max_val.copy_(hi)
        else:
            c = self.averaging_constant
            self.min_val.add_(c * (lo - self.min_val))
            self.max_val.add_(c * (hi - self.max_val))
        scale, zp = calc_qparams(self.min_val, self.max_val, self.dtype, self.symmetric)
        if not self.learnable or first:
            self.scale.copy_(scale.reshape(self.scale.shape))
            self.zero_point.copy_(zp.reshape(self.zero_point.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"FakeQuantize: expected a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
        if self.observer_enabled and (self.training or not self.initialized):
            self.observe(x)
        if not self.fake_quant_enabled or not self.initialized:
            return x
        axis = None if self.axis is None else self.axis % x.dim()
        grad_factor = 1.0
        if self.learnable:
            n = x.numel() // max(1, self.channels)
            grad_factor = 1.0 / math.sqrt(max(1, n) * qrange(self.dtype)[1])
        scale = self.scale
        if self.learnable:
            scale = torch.clamp(scale, min=float(torch.finfo(torch.float32).eps))
        return _FakeQuantFn.apply(x, scale, self.zero_point, self.dtype, axis, grad_factor)

    def extra_repr(self) -> str:
        gran = "per_tensor" if self.axis is None else f"per_channel(axis={self.axis})"
        return f"dtype={self.dtype}, symmetric={self.symmetric}, {gran}, learnable={self.learnable}"


def enable_observer(module: nn.Module) -> nn.Module:
    """Turns range observation on in every FakeQuantize of ``module`` (in place); returns it."""
    for m in module.modules():
        if isinstance(m, FakeQuantize):
            m.observer_enabled.fill_(1)
    return module


def disable_observer(module: nn.Module) -> nn.Module:
    """Freezes the ranges of every FakeQuantize of ``module`` (in place); returns it."""
    for m in module.modules():
        if isinstance(m, FakeQuantize):
            m.observer_enabled.fill_(0)
    return module
