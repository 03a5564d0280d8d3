"""FakeQuantize: quantize-dequantize in the forward pass, straight-through gradients (QAT).

Public torch layer. The CPU forward is lowbit's fused fake-quant kernel (lowbit::fake_quantize op).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from ..core.quantize import qrange
from ..interop import _torch_ops  # noqa: F401  (registers lowbit::fake_quantize)
from ._common import calc_qparams

__all__ = ["FakeQuantize", "disable_observer", "enable_observer"]


def _after_load(module: FakeQuantize, incompatible_keys: Any) -> None:
    module.initialized = bool(torch.isfinite(module.min_val).all())


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
        [-0.996, -0.502, 0.0, 0.502, 0.996]
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
        # Python flags, not tensors, so that torch.compile sees no data-dependent branches.
        self.observer_enabled = True
        self.fake_quant_enabled = True
        self.initialized = False
        self.register_load_state_dict_post_hook(_after_load)

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """Updates the range with ``x`` and recomputes scale and zero point (learnable scales are
        only initialised)."""
        xd = x.detach()
        if xd.numel() == 0:
            return
        first = not self.initialized
        self.initialized = True
        xd = torch.nan_to_num(xd.to(torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if self.axis is None:
            lo, hi = torch.aminmax(xd)
        else:
            flat = xd.movedim(self.axis, 0).reshape(xd.shape[self.axis], -1)
            lo, hi = flat.amin(dim=1), flat.amax(dim=1)
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
            raise TypeError(
                f"FakeQuantize: expected a floating-point tensor, got {getattr(x, 'dtype', type(x))}"
            )
        if self.observer_enabled and (self.training or not self.initialized):
            self.observe(x)
        if not self.fake_quant_enabled or not self.initialized:
            return x
        axis = None if self.axis is None else self.axis % x.dim()
        grad_factor = 1.0
        if self.learnable:
            n = x.numel() // max(1, self.channels)
            grad_factor = 1.0 / math.sqrt(max(1, n) * qrange(self.dtype)[1])
        # the backward reads this call's scale and zero point: copies, because a module called several
        # times in one forward (a recurrent layer's hidden projection, shared layers) observes again
        # and updates the buffers in place before backward runs
        scale = self.scale.clone() if not self.learnable else torch.clamp(
            self.scale, min=float(torch.finfo(torch.float32).eps))
        y = torch.ops.lowbit.fake_quantize(x, scale, self.zero_point.clone(), self.dtype, axis, grad_factor)
        return y if y.dtype == x.dtype else y.to(x.dtype)

    def extra_repr(self) -> str:
        gran = "per_tensor" if self.axis is None else f"per_channel(axis={self.axis})"
        return f"dtype={self.dtype}, symmetric={self.symmetric}, {gran}, learnable={self.learnable}"


def enable_observer(module: nn.Module) -> nn.Module:
    """Turns range observation on in every FakeQuantize of ``module`` (in place); returns it."""
    for m in module.modules():
        if isinstance(m, FakeQuantize):
            m.observer_enabled = True
    return module


def disable_observer(module: nn.Module) -> nn.Module:
    """Freezes the ranges of every FakeQuantize of ``module`` (in place); returns it."""
    for m in module.modules():
        if isinstance(m, FakeQuantize):
            m.observer_enabled = False
    return module
