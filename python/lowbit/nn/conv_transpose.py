"""``torch.nn.ConvTranspose1d`` / ``ConvTranspose2d`` as one Linear layer and torch's col2im, so
that lowbit quantizes them. Public torch layer (lowbit.nn).

A transposed convolution (the upsampling half of U-Nets, autoencoders, generators, segmentation
heads) multiplies every input pixel's channel vector by the weight, giving ``out_channels x
kernel`` contributions per pixel, and sums the overlapping contributions into the output
(col2im). :class:`ConvTranspose` holds the first step as ``linear`` (``in_channels ->
prod(kernel_size) * out_channels``, torch's weight reordered: each output row is one (kernel
position, output channel)), run on all pixels at once, and the second as col2im (a reshape for non-overlapping kernels, else one
strided add per kernel position) on the uncropped output in channels-last order, then the padding cropped and the
output padding added; the bias is added after. The result is an NCHW view of channels-last data
(as torch's convolutions return for channels-last inputs). Same
results as torch's module (up to float summation order) for every argument it takes, ``output_size``
included. ``quantize_model``, ``prepare_qat`` and ``load`` apply it (:mod:`lowbit.nn.decompose`) to
layers with ``groups=1`` and zero padding mode; grouped transposed convolutions stay float.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from .. import _core
from ._common import recording_graph
from .fused import note_result
from .linear import plain_weight

__all__ = ["ConvTranspose", "is_torch_conv_transpose"]

_FORWARDS = {nn.ConvTranspose1d: nn.ConvTranspose1d.forward, nn.ConvTranspose2d: nn.ConvTranspose2d.forward}


def is_torch_conv_transpose(m: nn.Module) -> bool:
    """True for ``nn.ConvTranspose1d`` / ``2d`` (and subclasses keeping their forward) with
    ``groups=1`` and zero padding: the layers :class:`ConvTranspose` reproduces."""
    base = next((b for b in _FORWARDS if isinstance(m, b)), None)
    return (base is not None and type(m).forward is _FORWARDS[base] and m.groups == 1
            and m.padding_mode == "zeros" and not isinstance(m.padding, str))


def _fresh(shape: tuple[int, ...], like: torch.Tensor, grad: bool) -> torch.Tensor:
    """An uninitialized tensor for a result: from lowbit's result-buffer cache in eager CPU float32
    inference (a recycled buffer's pages are already mapped: a fresh 6 MiB result otherwise costs
    ~1,500 page faults per call), else ``torch.empty``."""
    if not grad and like.device.type == "cpu" and like.dtype == torch.float32 and not recording_graph():
        return torch.from_numpy(_core.pooled_empty(list(shape), np.dtype(np.float32)))
    return torch.empty(shape, dtype=like.dtype, device=like.device)


def _col2im(cols: torch.Tensor, canvas: tuple[int, int], s: tuple[int, ...], d: tuple[int, ...],
            bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Sums ``cols`` (n, h, w, kh, kw, out) into the uncropped output, channels last (n, *canvas, out),
    plus ``bias`` when the kernel positions do not overlap (kernel == stride, no dilation: the usual
    2x upsampling: one pass that reorders and adds the bias); else one strided add per kernel
    position, each over rows of ``out`` contiguous channels (torch's ``F.fold`` walks channel-first
    columns in one thread), and the caller adds the bias (``bias`` None here)."""
    n, h, w, kh, kw, c = cols.shape
    grad = torch.is_grad_enabled() and (cols.requires_grad or (bias is not None and bias.requires_grad))
    if (kh, kw) == tuple(s) and tuple(d) == (1, 1) and canvas == (h * kh, w * kw):
        src = cols.permute(0, 1, 3, 2, 4, 5)
        if grad or recording_graph():  # functional ops for autograd and for compile / export graphs
            return (src if bias is None else src + bias).reshape(n, h * kh, w * kw, c)
        out = _fresh((n, h, kh, w, kw, c), cols, grad)
        if bias is None:
            out.copy_(src)
        else:
            torch.add(src, bias, out=out)
        return out.reshape(n, h * kh, w * kw, c)
    y = _fresh((n, *canvas, c), cols, grad).zero_()
    for i in range(kh):
        for j in range(kw):
            y[:, i * d[0]:i * d[0] + (h - 1) * s[0] + 1:s[0], j * d[1]:j * d[1] + (w - 1) * s[1] + 1:s[1]] += \
                cols[:, :, :, i, j]
    return y


class ConvTranspose(nn.Module):
    """``nn.ConvTranspose1d`` / ``2d`` as ``linear`` (an ``nn.Linear`` over the pixels) and col2im
    (see the module docstring); built from the torch module with its Parameters.

    Example:
        >>> torch.manual_seed(0) and None
        >>> up = torch.nn.ConvTranspose2d(8, 4, kernel_size=2, stride=2)
        >>> mine = lowbit.nn.ConvTranspose(up)
        >>> x = torch.randn(1, 8, 5, 5)
        >>> torch.allclose(mine(x), up(x), atol=1e-6), mine.linear
        (True, Linear(in_features=8, out_features=16, bias=False))
    """

    _float_note = "bias kept float (added after col2im)"

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        if not is_torch_conv_transpose(conv):
            raise TypeError(f"conv: expected a torch.nn.ConvTranspose1d / ConvTranspose2d with groups=1 and zero "
                            f"padding, got {type(conv).__name__}")
        self.dims = 1 if isinstance(conv, nn.ConvTranspose1d) else 2
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride, self.padding = conv.kernel_size, conv.stride, conv.padding
        self.output_padding, self.dilation = conv.output_padding, conv.dilation
        self.groups, self.padding_mode, self.transposed = 1, "zeros", True  # what code reads of torch's layer
        w = conv.weight  # (in, out, *kernel) -> rows ordered (kernel position, out channel): a copy
        rows = w.detach().reshape(w.shape[0], w.shape[1], -1).permute(2, 1, 0).reshape(-1, w.shape[0])
        self.linear = nn.Linear(w.shape[0], w[0].numel(), bias=False, device="meta")
        self.linear.weight = nn.Parameter(rows.contiguous(), requires_grad=w.requires_grad)
        self.bias: Optional[nn.Parameter] = conv.bias  # the same Parameter
        self.train(conv.training)

    @property
    def weight(self) -> torch.Tensor:
        """The weight in torch's layout (in, out, *kernel), from ``linear`` (dequantized once quantized)."""
        return plain_weight(self.linear).reshape(-1, self.out_channels, self.in_channels).permute(2, 1, 0).reshape(
            self.in_channels, self.out_channels, *self.kernel_size)

    def forward(self, input: torch.Tensor, output_size: Optional[list[int]] = None) -> torch.Tensor:  # noqa: A002
        if input.dim() not in (self.dims + 1, self.dims + 2):
            raise ValueError(f"ConvTranspose{self.dims}d: expected a {self.dims + 1}-D or {self.dims + 2}-D input, got "
                             f"{input.dim()}-D")
        if input.shape[-self.dims - 1] != self.in_channels:
            raise RuntimeError(f"expected input with {self.in_channels} channels, got {input.shape[-self.dims - 1]}")
        op = nn.modules.conv._ConvTransposeNd._output_padding(
            self, input, output_size, list(self.stride), list(self.padding), list(self.kernel_size), self.dims,
            list(self.dilation))
        x = input if input.dim() == self.dims + 2 else input.unsqueeze(0)
        if self.dims == 1:
            x = x.unsqueeze(2)
        k, s, p, d = ((unit,) + tuple(v) if self.dims == 1 else tuple(v)  # 1-D: a height-1 2-D layer
                      for unit, v in ((1, self.kernel_size), (1, self.stride), (0, self.padding), (1, self.dilation)))
        op = (0, op[0]) if self.dims == 1 else tuple(op)
        n, c, h, w = x.shape
        cols = self.linear(x.permute(0, 2, 3, 1).reshape(n, h * w, c))  # (n, pixels, kernel * out)
        full = tuple((i - 1) * s[j] + d[j] * (k[j] - 1) + 1 for j, i in enumerate((h, w)))
        out = tuple(full[j] - 2 * p[j] + op[j] for j in range(2))  # the padding cropped, the output padding added
        canvas = tuple(max(full[j], p[j] + out[j]) for j in range(2))
        bias = None if self.bias is None else self.bias.to(cols.dtype)
        simple = (k[0], k[1]) == s and d == (1, 1) and canvas == (h * k[0], w * k[1])
        y = _col2im(cols.reshape(n, h, w, k[0], k[1], self.out_channels), canvas, s, d, bias if simple else None)
        y = y[:, p[0]:p[0] + out[0], p[1]:p[1] + out[1]]
        if bias is not None and not simple:  # on the channels-last rows: one contiguous vector per pixel
            y = y.add_(bias) if not (torch.is_grad_enabled() and (y.requires_grad or bias.requires_grad)) else y + bias
        y = y.permute(0, 3, 1, 2)  # NCHW view of channels-last data
        if self.dims == 1:
            y = y.squeeze(2)
        y = y if input.dim() == self.dims + 2 else y.squeeze(0)
        if "_fused_parent" in self.__dict__ and not torch.compiler.is_compiling():  # see lowbit.nn.fused
            note_result(self, y)
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={tuple(self.kernel_size)}, "
                f"stride={tuple(self.stride)}, padding={tuple(self.padding)}")
