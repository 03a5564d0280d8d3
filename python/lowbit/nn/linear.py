"""QuantLinear: an nn.Linear whose weights are int8 (or 4-bit values) run by lowbit's int8 kernels.

Public torch layer; the math runs in lowbit.linear through the lowbit::quant_linear op.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import _torch_ops
from ..config import QuantConfig
from ._common import check_input, quantize_weight

__all__ = ["QuantLinear"]

_ACTIVATIONS = ("dynamic", "dynamic_per_tensor", "static", None)


class _QuantBase(nn.Module):
    """Buffers and the quantized matmul shared by QuantLinear and QuantConv2d.

    Buffers (all in ``state_dict``): ``weight_int8`` int8 (out, in_flat), ``weight_scale`` float32
    (out,), ``weight_zero_point`` int32 (out,), ``bias`` float32 (out,) or None, and for static
    activations ``act_scale`` float32 () and ``act_zero_point`` int32 ().
    """

    def _init_quant(
        self,
        out_features: int,
        in_flat: int,
        bias: bool,
        weight: str,
        activation: Optional[str],
        activation_dtype: str,
        granularity: str,
        symmetric_weights: bool,
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {_ACTIVATIONS}, got {activation!r}")
        self.weight_dtype = weight
        self.activation = activation
        self.activation_dtype = activation_dtype
        self.granularity = granularity
        self.symmetric_weights = symmetric_weights
        self.layer_name = type(self).__name__
        self.register_buffer("weight_int8", torch.zeros(out_features, in_flat, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32))
        self.register_buffer("weight_zero_point", torch.zeros(out_features, dtype=torch.int32))
        self.register_buffer(
            "bias", torch.zeros(out_features, dtype=torch.float32) if bias else None
        )
        if activation == "static":
            self.register_buffer("act_scale", torch.ones((), dtype=torch.float32))
            self.register_buffer("act_zero_point", torch.zeros((), dtype=torch.int32))
        else:
            self.act_scale = None
            self.act_zero_point = None

    def _set_weight(
        self,
        w: torch.Tensor,
        scale: Optional[torch.Tensor] = None,
        zp: Optional[torch.Tensor] = None,
    ) -> None:
        q, s, z = quantize_weight(
            w,
            self.weight_dtype,
            per_channel=self.granularity == "per_channel",
            symmetric=self.symmetric_weights,
            scale=scale,
            zero_point=zp,
        )
        with torch.no_grad():
            self.weight_int8.copy_(q.reshape(self.weight_int8.shape))
            self.weight_scale.copy_(s)
            self.weight_zero_point.copy_(z)

    def _set_act(self, scale: Any, zero_point: Any) -> None:
        with torch.no_grad():
            self.act_scale.fill_(float(scale))
            self.act_zero_point.fill_(int(zero_point))

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the kernels effectively use, shape (out, in_flat)."""
        return (
            self.weight_int8.to(torch.float32) - self.weight_zero_point.to(torch.float32)[:, None]
        ) * (self.weight_scale[:, None])

    @property
    def nbytes(self) -> int:
        """Bytes of the quantized layer's tensors (weights, scales, bias, activation parameters)."""
        return sum(b.numel() * b.element_size() for b in self.buffers(recurse=False))

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_flat) float32 -> (..., out) float32."""
        if self.activation is None:
            return F.linear(x, self.dequantized_weight().to(x.device), self.bias)
        x = x.detach()  # the int8 kernels have no backward
        if x.numel() == 0:
            return x.new_zeros((*x.shape[:-1], self.weight_int8.shape[0]))
        # Eager CPU calls the implementation directly (skips the dispatcher; same code as the op).
        eager_cpu = x.device.type == "cpu" and not torch.compiler.is_compiling()
        op = _torch_ops.quant_linear_impl if eager_cpu else torch.ops.lowbit.quant_linear
        return op(
            x,
            self.weight_int8,
            self.weight_scale,
            self.weight_zero_point,
            self.bias,
            self.act_scale,
            self.act_zero_point,
            self.activation,
            self.activation_dtype,
        )

    def _quant_extra_repr(self) -> str:
        s = f"weight={self.weight_dtype}, activation={self.activation}"
        if self.activation == "static":
            s += f" ({self.activation_dtype}, scale={float(self.act_scale):.4g}, zp={int(self.act_zero_point)})"
        return s + f", granularity={self.granularity}"

    def spec(self) -> dict[str, Any]:
        """Constructor arguments as JSON-able data (used by lowbit.save / lowbit.load)."""
        raise NotImplementedError


class QuantLinear(_QuantBase):
    """Drop-in replacement of :class:`torch.nn.Linear` with int8 (or 4-bit-valued) weights.

    ``forward`` takes float tensors of shape (..., in_features) on any device: on CPU it runs
    lowbit's fused int8 kernel (activations quantized per row when ``activation="dynamic"``, per
    tensor with fixed parameters when "static"); other devices run a torch reference with the same
    math. float16/bfloat16/float64 inputs are computed in float32 and cast back; non-contiguous
    inputs are copied. No autograd through the int8 kernels (outputs do not require grad);
    weight-only layers (``activation=None``) pass gradients to their input.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(16, 4)
        >>> q = lowbit.nn.QuantLinear.from_float(lin)
        >>> x = torch.randn(2, 16)
        >>> bool((q(x) - lin(x)).abs().max() < 0.05)
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        weight: str = "int8",
        activation: Optional[str] = "dynamic",
        activation_dtype: str = "uint8",
        granularity: str = "per_channel",
        symmetric_weights: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self._init_quant(
            out_features,
            in_features,
            bias,
            weight,
            activation,
            activation_dtype,
            granularity,
            symmetric_weights,
        )

    @classmethod
    def from_float(
        cls,
        mod: nn.Linear,
        config: Optional[QuantConfig] = None,
        *,
        act_qparams: Optional[tuple[float, int]] = None,
        weight_qparams: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
        name: str = "",
    ) -> QuantLinear:
        """Quantizes an ``nn.Linear``; ``act_qparams`` (scale, zero_point) are required for static
        activations, ``weight_qparams`` override the weight's own range (QAT)."""
        config = config or QuantConfig()
        q = cls(
            mod.in_features,
            mod.out_features,
            mod.bias is not None,
            weight=config.weight,
            activation=config.activation,
            activation_dtype=config.activation_dtype,
            granularity=config.granularity,
            symmetric_weights=config.symmetric_weights,
        )
        q.layer_name = name or q.layer_name
        q._set_weight(mod.weight, *(weight_qparams or (None, None)))
        if mod.bias is not None:
            with torch.no_grad():
                q.bias.copy_(mod.bias.detach().to("cpu", torch.float32))
        if config.activation == "static":
            if act_qparams is None:
                raise ValueError(
                    f"{name or 'QuantLinear'}: static activations need act_qparams (scale, zero_point)"
                )
            q._set_act(*act_qparams)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = check_input(x, self.layer_name)
        if xf.dim() == 0 or xf.shape[-1] != self.in_features:
            raise ValueError(
                f"{self.layer_name}: expected input with last dimension {self.in_features}, got shape {tuple(x.shape)}"
            )
        y = self._matmul(xf)
        return y if y.dtype == x.dtype else y.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, " + self._quant_extra_repr()
        )

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "QuantLinear",
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "weight": self.weight_dtype,
            "activation": self.activation,
            "activation_dtype": self.activation_dtype,
            "granularity": self.granularity,
            "symmetric_weights": self.symmetric_weights,
        }
