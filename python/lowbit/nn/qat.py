"""QAT modules: Linear and Conv2d with FakeQuantize on their weights and inputs. Public torch layer.

Made by lowbit.prepare_qat and turned into QuantLinear / QuantConv2d by lowbit.convert.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import QuantConfig
from ._common import is_conv1d
from .fake_quantize import FakeQuantize

__all__ = ["QATConv1d", "QATConv2d", "QATLinear"]


def _weight_fq(weight: torch.Tensor, config: QuantConfig, learnable: bool, axis: int = 0) -> FakeQuantize:
    group = config.weight.group_size
    if group is not None:  # one channel per group of each output channel: rows of (out * in / g, g)
        return FakeQuantize(config.weight.name, symmetric=True, axis=0, channels=weight.numel() // group,
                            averaging_constant=1.0, learnable=learnable)
    per_channel = config.granularity == "per_channel"
    return FakeQuantize(
        config.weight.name,
        symmetric=config.symmetric_weights,
        axis=axis if per_channel else None,
        channels=weight.shape[axis],
        averaging_constant=1.0,
        learnable=learnable,
    )


def _input_fq(config: QuantConfig, learnable: bool) -> Optional[FakeQuantize]:
    if not config.activation.calibrated:
        return None
    return FakeQuantize(
        config.activation_dtype, symmetric=config.activation_dtype == "int8", learnable=learnable
    )


class QATLinear(nn.Module):
    """``nn.Linear`` training with fake-quantized weights (and inputs when the config's activations
    are static). Shares the float module's ``weight``/``bias`` Parameters.

    Also wraps a transformers ``Conv1D`` (GPT-2): its Parameter stays (in, out) (``transposed``
    is True), fake-quantized per output channel (axis 1) and used as ``x @ w_fq + bias``.

    Dynamic activations are not simulated (they are quantized per row at run time, a much smaller
    error than the weight's); only the weights are fake-quantized then.

    Symmetric int4 groups (``QuantConfig(weight="int4", group_size=g)``, ``in_features`` a multiple
    of g): the weight's (out, in) form is fake-quantized as ``out * in / g`` rows of g values, one
    scale each, exactly the groups and scales :func:`lowbit.convert` stores.
    """

    def __init__(self, mod: nn.Module, config: QuantConfig, *, learnable: bool = False) -> None:
        super().__init__()
        self.transposed = is_conv1d(mod)
        if self.transposed:
            self.in_features, self.out_features = int(mod.weight.shape[0]), int(mod.nf)
            self._float_cls = type(mod)
        else:
            self.in_features, self.out_features = mod.in_features, mod.out_features
        self.config = config
        self.weight = mod.weight
        self.bias = mod.bias
        self.weight_fake_quant = _weight_fq(mod.weight, config, learnable, axis=1 if self.transposed else 0)
        self.input_fake_quant = _input_fq(config, learnable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_fake_quant is not None:
            x = self.input_fake_quant(x)
        return F.linear(x, self.fake_quantized_weight(), self.bias)

    def fake_quantized_weight(self) -> torch.Tensor:
        """The (out, in) weight the forward multiplies with (differentiable)."""
        w = self.weight.t() if self.transposed else self.weight
        group = self.config.weight.group_size
        if group is None:
            return self.weight_fake_quant(self.weight).t() if self.transposed else self.weight_fake_quant(w)
        return self.weight_fake_quant(w.reshape(-1, group)).reshape(w.shape)

    def to_float(self) -> nn.Module:
        """The float layer (an ``nn.Linear``, or the ``Conv1D`` it wrapped) holding the same Parameters."""
        if self.transposed:
            with torch.device("meta"):
                lin = self._float_cls(self.out_features, self.in_features)
        else:
            lin = nn.Linear(self.in_features, self.out_features, self.bias is not None, device="meta")
        lin.weight, lin.bias = self.weight, self.bias
        return lin

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class QATConv2d(nn.Module):
    """``nn.Conv2d`` (any groups) with fake-quantized weights and (static config) inputs; see QATLinear."""

    def __init__(self, mod: nn.Conv2d, config: QuantConfig, *, learnable: bool = False) -> None:
        super().__init__()
        self.groups = mod.groups
        self.in_channels, self.out_channels = mod.in_channels, mod.out_channels
        self.kernel_size, self.stride, self.dilation = mod.kernel_size, mod.stride, mod.dilation
        self.padding, self.padding_mode = mod.padding, mod.padding_mode
        self._reversed_padding_repeated_twice = mod._reversed_padding_repeated_twice
        self.config = config
        self.weight = mod.weight
        self.bias = mod.bias
        self.weight_fake_quant = _weight_fq(mod.weight, config, learnable)
        self.input_fake_quant = _input_fq(config, learnable)

    _conv = staticmethod(F.conv2d)  # the float op and module this QAT layer stands for
    _float_cls = nn.Conv2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_fake_quant is not None:
            x = self.input_fake_quant(x)
        w = self.weight_fake_quant(self.weight)
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return self._conv(x, w, self.bias, self.stride, 0, self.dilation, self.groups)
        return self._conv(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def to_float(self) -> nn.Module:
        conv = self._float_cls(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.bias is not None,
            self.padding_mode,
            device="meta",
        )
        conv.weight, conv.bias = self.weight, self.bias
        return conv

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}"
        )


class QATConv1d(QATConv2d):
    """``nn.Conv1d`` (any groups) with fake-quantized weights (per output channel) and (static
    config) inputs; :func:`lowbit.convert` turns it into a :class:`lowbit.nn.QuantConv1d`."""

    _conv = staticmethod(F.conv1d)
    _float_cls = nn.Conv1d
