"""``torch.nn.Conv3d`` as ``nn.Conv2d`` layers over the kernel depth, so that lowbit quantizes it.
Public torch layer (lowbit.nn).

Video models (3-D CNNs, (2+1)-D factorizations) and volumetric ones (3-D U-Nets on CT / MRI) are
built from ``nn.Conv3d``, which lowbit has no kernel for. A 3-D convolution is a sum over its
kernel depth of 2-D convolutions of depth slices: output slice ``t`` is ``sum_i conv2d(x[t * stride
+ i * dilation], W[:, :, i])`` (depth padding as zero slices). :class:`Conv3d` computes it as:

- ``groups == 1``: one ``nn.Conv2d`` ``conv`` over the kernel depth's slices stacked as channels
  (``kd * in_channels`` inputs; its weight is torch's, reordered: a copy): one product per call;
- ``groups > 1``: ``depth[i]``, one ``nn.Conv2d`` per kernel depth with weight ``W[:, :, i]`` (a
  view), each run on the slices it reads, summed (stacking would interleave the groups).

Both run every output slice as an image of the batch (height / width stride, padding and dilation
as torch's layer), then add the bias. Same results as torch's module (up to float summation order)
for ``padding_mode="zeros"`` and numeric padding; others stay float. ``quantize_model``,
``prepare_qat`` and ``load`` apply it (:mod:`lowbit.nn.decompose`).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .linear import plain_weight

__all__ = ["Conv3d", "is_torch_conv3d", "part_names"]


def is_torch_conv3d(m: nn.Module) -> bool:
    """True for ``nn.Conv3d`` (and subclasses keeping its forward) with zero padding given as numbers."""
    return (isinstance(m, nn.Conv3d) and type(m).forward is nn.Conv3d.forward and m.padding_mode == "zeros"
            and not isinstance(m.padding, str))


def part_names(conv: nn.Module) -> list[str]:
    """The Conv2d layers :class:`Conv3d` builds from ``conv`` (relative names)."""
    return ["conv"] if conv.groups == 1 else ["depth"] + [f"depth.{i}" for i in range(conv.kernel_size[0])]


class Conv3d(nn.Module):
    """``nn.Conv3d`` as ``nn.Conv2d`` layers over the kernel depth (see the module docstring);
    built from the torch module with its Parameters.

    Example:
        >>> torch.manual_seed(0) and None
        >>> conv = torch.nn.Conv3d(4, 8, kernel_size=3, padding=1)
        >>> mine = lowbit.nn.Conv3d(conv)
        >>> x = torch.randn(2, 4, 5, 6, 6)
        >>> torch.allclose(mine(x), conv(x), atol=1e-5), mine.conv
        (True, Conv2d(12, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False))
    """

    _float_note = "bias kept float (added after the depth sum)"

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        if not is_torch_conv3d(conv):
            raise TypeError(f"conv: expected a torch.nn.Conv3d with zero padding given as numbers, got "
                            f"{type(conv).__name__}")
        self.in_channels, self.out_channels, self.groups = conv.in_channels, conv.out_channels, conv.groups
        self.kernel_size, self.stride, self.padding, self.dilation = (conv.kernel_size, conv.stride, conv.padding,
                                                                      conv.dilation)
        self.padding_mode = "zeros"
        w = conv.weight  # (out, in / groups, kd, kh, kw)
        kd = w.shape[2]

        def conv2d(channels: int, weight: torch.Tensor) -> nn.Conv2d:
            c2 = nn.Conv2d(channels, conv.out_channels, conv.kernel_size[1:], stride=conv.stride[1:],
                           padding=conv.padding[1:], dilation=conv.dilation[1:], groups=conv.groups, bias=False,
                           device="meta")
            c2.weight = nn.Parameter(weight, requires_grad=w.requires_grad)
            return c2

        if conv.groups == 1:  # depth-major channels: input channel i * in + c is slice i's channel c
            stacked = w.detach().permute(0, 2, 1, 3, 4).reshape(w.shape[0], kd * w.shape[1], *w.shape[3:])
            self.conv = conv2d(kd * conv.in_channels, stacked.contiguous())
        else:
            self.depth = nn.ModuleList(conv2d(conv.in_channels, w.detach()[:, :, i]) for i in range(kd))  # views
        self.bias: Optional[nn.Parameter] = conv.bias  # the same Parameter
        self.train(conv.training)

    @property
    def weight(self) -> torch.Tensor:
        """The weight in torch's layout (out, in / groups, kd, kh, kw), from the Conv2d layers
        (dequantized once quantized)."""
        if self.groups == 1:
            w = plain_weight(self.conv)
            kd = self.kernel_size[0]
            return w.reshape(w.shape[0], kd, -1, *w.shape[2:]).permute(0, 2, 1, 3, 4)
        return torch.stack([plain_weight(c) for c in self.depth], dim=2)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        if input.dim() not in (4, 5):
            raise ValueError(f"Conv3d: expected a 4-D or 5-D input, got {input.dim()}-D")
        x = input if input.dim() == 5 else input.unsqueeze(0)
        if x.shape[1] != self.in_channels:
            raise RuntimeError(f"expected input with {self.in_channels} channels, got {x.shape[1]}")
        kd, sd, pd, dd = self.kernel_size[0], self.stride[0], self.padding[0], self.dilation[0]
        if pd:
            x = F.pad(x, (0, 0, 0, 0, pd, pd))
        n, c, depth, h, w = x.shape
        out_d = (depth - dd * (kd - 1) - 1) // sd + 1
        if out_d <= 0:
            raise RuntimeError(f"Conv3d: input depth {depth - 2 * pd} (padded {depth}) is smaller than the kernel")
        if self.groups == 1:  # (n, c, out_d, h, w, window) -> every output slice's kd input slices as channels
            windows = x.unfold(2, dd * (kd - 1) + 1, sd)[..., ::dd]
            y = self.conv(windows.permute(0, 2, 5, 1, 3, 4).reshape(n * out_d, kd * c, h, w))
        else:
            y = None
            for i, conv in enumerate(self.depth):  # the slices kernel depth i reads, stacked into the batch
                xi = x[:, :, i * dd:i * dd + sd * (out_d - 1) + 1:sd].transpose(1, 2).reshape(n * out_d, c, h, w)
                yi = conv(xi)
                y = yi if y is None else y + yi
        y = y.reshape(n, out_d, *y.shape[1:]).transpose(1, 2)  # (n, out, depth, h, w)
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, 1, 1, 1).to(y.dtype)
        return y if input.dim() == 5 else y.squeeze(0)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={tuple(self.kernel_size)}, "
                f"stride={tuple(self.stride)}, padding={tuple(self.padding)}")
