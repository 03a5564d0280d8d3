"""QuantConv2d / QuantConv1d: nn.Conv2d / nn.Conv1d (any groups) as im2col + lowbit's quantized
linear per group, depthwise ones on lowbit's direct depthwise kernel. Public torch layer."""

from __future__ import annotations

import weakref
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .. import _core
from ..core.config import QuantConfig
from ..core.matmul import conv_covers_input, prepare_conv2d_depthwise, prepare_conv2d_static
from ..interop import _torch_ops
from ._common import buffer_guards, check_input, guards_hold
from .chain import chaining_enabled
from .linear import _QuantBase

__all__ = ["QuantConv1d", "QuantConv2d"]

# Prepared static-activation convolution calls per module (see QuantConv2d._eager_conv).
_EAGER_CONV: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_Pair = Union[int, tuple[int, int]]


def _pair(v: _Pair) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class QuantConv2d(_QuantBase):
    """Drop-in replacement of :class:`torch.nn.Conv2d` (any stride, padding, dilation, padding
    mode and groups) with quantized weights in any :class:`lowbit.QuantConfig` weight format.

    The input is viewed channels-last and unfolded into patches (im2col as one strided gather; a
    1x1 stride-1 convolution is a plain reshape), one row per output pixel in (kh, kw, C) order,
    and multiplied by the quantized weight, stored as (out, kh * kw * in) in the same order, as
    :class:`QuantLinear` does (same kernels and buffers; weight groups run along the
    kh * kw * in patch elements); with dynamic activations each patch is quantized on its own. The
    output is returned in channels-last memory format (shape (N, C, H, W)), which the next
    QuantConv2d reads without a copy. Inputs as for QuantLinear.

    Grouped convolutions run one product per group over the group's channels (weights stored as
    (out, kh * kw * in / groups)). Depthwise ones (groups == in == out) with int8 weights and
    static or per-tensor dynamic activations run lowbit's direct depthwise kernel on CPU
    (``lowbit.reference.conv2d_depthwise``; per-tensor dynamic parameters come from the whole
    image's range).

    Example:
        >>> import torch
        >>> conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        >>> q = lowbit.nn.QuantConv2d.from_float(conv)
        >>> x = torch.randn(1, 3, 8, 8)
        >>> bool((q(x) - conv(x)).abs().max() < 0.1)
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _Pair,
        stride: _Pair = 1,
        padding: Union[_Pair, str] = 0,
        dilation: _Pair = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        groups: int = 1,
        weight: Any = "int8",
        activation: Any = "auto",
        **options: Any,
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self._k2 = _pair(kernel_size)
        self._s2 = _pair(stride)
        self._d2 = _pair(dilation)
        if isinstance(padding, str):
            if padding == "valid":
                padding = 0
            elif padding == "same":
                if self._s2 != (1, 1):
                    raise ValueError("padding='same' is not supported for strided convolutions")
                total = [d * (k - 1) for d, k in zip(self._d2, self._k2)]
                if any(t % 2 for t in total):
                    raise ValueError(
                        "padding='same' with an even effective kernel size is not supported"
                    )
                padding = (total[0] // 2, total[1] // 2)
            else:
                raise ValueError(
                    f"padding: expected an int, a pair, 'valid' or 'same', got {padding!r}"
                )
        self._p2 = _pair(padding)
        for what, v, low in (("kernel_size", self._k2, 1), ("stride", self._s2, 1),
                             ("dilation", self._d2, 1), ("padding", self._p2, 0)):
            if any(not isinstance(e, int) or isinstance(e, bool) or e < low for e in v):
                raise ValueError(f"{what}: expected integers >= {low}, got {v}")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"padding_mode: unsupported {padding_mode!r}")
        self.padding_mode = padding_mode
        self.groups = int(groups)
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"groups={groups}: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             "must be divisible by groups")
        kh, kw = self._k2
        self._init_quant(out_channels, in_channels // self.groups * kh * kw, bias,
                         QuantConfig(weight, activation, **options))

    @property
    def depthwise(self) -> bool:
        """One filter per channel: groups == in_channels == out_channels."""
        return self.groups > 1 and self.groups == self.in_channels == self.out_channels

    @classmethod
    def from_float(
        cls,
        mod: nn.Conv2d,
        config: Optional[QuantConfig] = None,
        *,
        act_qparams: Optional[tuple[float, int]] = None,
        weight_qparams: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
        name: str = "",
    ) -> QuantConv2d:
        """Quantizes an ``nn.Conv2d`` (see QuantLinear.from_float)."""
        config = config or QuantConfig()
        q = cls(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                mod.bias is not None, mod.padding_mode, groups=mod.groups, weight=config.weight,
                activation=config.activation)
        return q._fill(mod.weight.detach().permute(0, 2, 3, 1), mod.bias, act_qparams, weight_qparams, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._static_fast(x)
        if y is not None:
            return y
        prev = self.__dict__.get("_chain_prev")
        chain_in = isinstance(x, torch.Tensor) and x.dtype == torch.uint8
        if chain_in and prev is None:
            raise TypeError(f"{self.layer_name}: got a uint8 input, which only a layer chained to its producer "
                            "accepts (lowbit.nn.chain_int8_); pass floating-point activations")
        xf = x if chain_in else check_input(x, self.layer_name)
        unbatched = xf.dim() == 3
        if unbatched:
            xf = xf.unsqueeze(0)
        if xf.dim() != 4 or xf.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.layer_name}: expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        n, c, h, w = xf.shape
        ph, pw = self._p2
        kh, kw = self._k2
        (sh, sw), (dh, dw) = self._s2, self._d2
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if ho <= 0 or wo <= 0:
            raise ValueError(
                f"{self.layer_name}: input {tuple(x.shape)} is smaller than the kernel"
            )
        eager = (
            xf.device.type == "cpu"
            and self.padding_mode == "zeros"
            and not torch.compiler.is_compiling()
        )
        fused = self.activation.calibrated or (
            self.activation.name == "dynamic_per_tensor"
            and conv_covers_input(h, kh, sh, ph, dh)
            and conv_covers_input(w, kw, sw, pw, dw)
        )
        direct = eager and self.kernel == "linear_int8" and (
            self._direct_depthwise() or (fused and (self.groups == 1 or self.activation.calibrated))
        )
        if chain_in and not (direct and (self.groups == 1 or self._direct_depthwise())):
            # bytes this path cannot read: dequantized, they quantize back to the same bytes
            xf = self._dequantize_input(xf)
            chain_in = False
        xh = xf.permute(
            0, 2, 3, 1
        )  # NHWC view: free when x is channels-last (a QuantConv2d output)
        out_dtype = x.dtype if x.is_floating_point() else torch.float32
        if direct:
            # the image is quantized once (or arrives as bytes), then patches of bytes (per group) or
            # the depthwise kernel: one C++ call per group (per-tensor dynamic parameters from the image)
            xn = (xh.contiguous() if chain_in else xh.detach()).numpy()
            if self.groups == 1 or self._direct_depthwise():
                out = self._chain_out(x, unbatched)
                y = torch.from_numpy(self._eager_conv(c)[0](xn, out))
                if out:  # uint8 bytes in the next layer's input quantization (lowbit.nn.chain)
                    return y.reshape(n, ho, wo, self.out_channels).permute(0, 3, 1, 2)
            else:
                cg = c // self.groups
                y = torch.cat([torch.from_numpy(f(xn[..., g * cg : (g + 1) * cg]))
                               for g, f in enumerate(self._eager_conv(c))], dim=1)
            y = y.reshape(n, ho, wo, self.out_channels).permute(0, 3, 1, 2)
            if unbatched:
                y = y.squeeze(0)
            return y if y.dtype == out_dtype else y.to(out_dtype)
        cg, og = c // self.groups, self.out_channels // self.groups
        parts = []
        for g in range(self.groups):
            xg = xh if self.groups == 1 else xh[..., g * cg : (g + 1) * cg]
            if eager:  # lowbit's im2col reads any strides and pads on the fly
                cols = torch.from_numpy(_core.im2col(xg.detach().numpy(), kh, kw, sh, sw, ph, pw, dh, dw))
            else:
                xfg = xf if self.groups == 1 else xf[:, g * cg : (g + 1) * cg]
                cols = self._torch_im2col(xg, xfg, ho, wo)
            cols = cols.reshape(n, ho * wo, kh * kw * cg)
            parts.append(self._matmul(cols.contiguous(), None if self.groups == 1 else (g * og, (g + 1) * og)))
        y = parts[0] if self.groups == 1 else torch.cat(parts, dim=-1)
        y = y.reshape(n, ho, wo, self.out_channels).permute(0, 3, 1, 2)
        if unbatched:
            y = y.squeeze(0)
        return y if y.dtype == out_dtype else y.to(out_dtype)

    def _static_fast(self, x: Any) -> Optional[torch.Tensor]:
        """The common case of static int8 layers (groups=1 or depthwise) on a batched CPU float32 or
        chained uint8 input, with fewer Python steps (per-call overhead matters at batch 1): the
        result of the general path, or None to take it."""
        ok = self.__dict__.get("_fast_ok")
        if ok is None:
            ok = (type(self) is QuantConv2d and self.activation.calibrated and self.kernel == "linear_int8"
                  and self.padding_mode == "zeros" and (self.groups == 1 or self._direct_depthwise()))
            self.__dict__["_fast_ok"] = ok
        if not ok or not isinstance(x, torch.Tensor) or x.dim() != 4 or x.device.type != "cpu":
            return None
        u8 = x.dtype == torch.uint8
        if not (x.dtype == torch.float32 or (u8 and "_chain_prev" in self.__dict__)):
            return None
        n, c, h, w = x.shape
        (ph, pw), (kh, kw), (sh, sw), (dh, dw) = self._p2, self._k2, self._s2, self._d2
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if c != self.in_channels or ho <= 0 or wo <= 0 or torch.compiler.is_compiling():
            return None  # the general path raises or traces
        xh = x.permute(0, 2, 3, 1)
        xn = (xh.contiguous() if u8 else xh.detach()).numpy()
        out = self._chain_out(x, False)
        y = torch.from_numpy(self._eager_conv(c)[0](xn, out))
        return y.reshape(n, ho, wo, self.out_channels).permute(0, 3, 1, 2)

    def _dequantize_input(self, q: torch.Tensor) -> torch.Tensor:
        """A chained uint8 input as float32 (q - zero_point) * scale (uint8 domain)."""
        z = int(self.act_zero_point) + (128 if self.activation_dtype == "int8" else 0)
        return (q.to(torch.int32) - z).to(torch.float32) * self.act_scale.to(torch.float32)

    def _chain_out(self, x: torch.Tensor, unbatched: bool) -> tuple:
        """The uint8 output parameters (scale, zero point, signed, lo, hi) of the next layer when
        this layer is chained to it (lowbit.nn.chain), else ()."""
        nxt = self.__dict__.get("_chain_next")
        if nxt is None or unbatched or x.dtype not in (torch.float32, torch.uint8) or not chaining_enabled():
            return ()
        s, z = nxt._buffers["act_scale"], nxt._buffers["act_zero_point"]
        hit = self.__dict__.get("_chain_cache")  # the next layer's parameters while its buffers are unchanged
        if hit is not None and hit[0] is s and hit[1] == s._version and hit[2] is z and hit[3] == z._version:
            return hit[4]
        lo, hi = self.__dict__["_chain_clamp"]
        out = (float(s), int(z), nxt.activation_dtype == "int8", lo, hi)
        self.__dict__["_chain_cache"] = (s, s._version, z, z._version, out)
        return out

    def _direct_depthwise(self) -> bool:
        """Whether the depthwise kernel runs this layer (int8 weights, symmetric, static or
        per-tensor dynamic activations)."""
        return (self.depthwise and self.scheme.name == "int8" and self.symmetric_weights
                and (self.activation.calibrated or self.activation.name == "dynamic_per_tensor"))

    def _eager_conv(self, c: int) -> list:
        """The prepared convolution calls, one per group (one for groups=1 and depthwise layers):
        byte patches + GEMM, or the depthwise kernel; rebuilt when a buffer changes."""
        hit = _EAGER_CONV.get(self)
        if hit is None or not guards_hold(self, hit[0]):
            b = None if self.bias is None else _torch_ops.to_numpy(self.bias.to(torch.float32))
            if self.activation.calibrated:
                act = dict(activation_scale=float(self.act_scale), activation_zero_point=int(self.act_zero_point),
                           activation_dtype=self.activation_dtype)
            else:
                act = dict(activation="dynamic_per_tensor")
            geom = dict(kernel_size=self._k2, stride=self._s2, padding=self._p2,
                        dilation=self._d2)
            if self._direct_depthwise():
                w_q = _torch_ops.to_numpy(getattr(self, self.scheme.data_name))
                calls = [prepare_conv2d_depthwise(w_q, _torch_ops.to_numpy(self.weight_scale), b, **geom, **act)]
            else:
                kh, kw = self._k2
                cg, og = c // self.groups, self.out_channels // self.groups
                calls = []
                for g in range(self.groups):
                    rows = None if self.groups == 1 else (g * og, (g + 1) * og)
                    packed = _torch_ops.packed_weight(self._rows(getattr(self, self.scheme.data_name), rows),
                                                      self._rows(self.weight_scale, rows),
                                                      self._rows(self.weight_zero_point, rows), kh * kw * cg)
                    calls.append(prepare_conv2d_static(packed, None if b is None else b[g * og : (g + 1) * og],
                                                       **geom, **act))
            hit = (buffer_guards(self), calls)
            _EAGER_CONV[self] = hit
        return hit[1]

    def _torch_im2col(
        self, xh: torch.Tensor, xf: torch.Tensor, ho: int, wo: int
    ) -> torch.Tensor:
        """Patches (n, ho, wo, kh, kw, c) with torch ops (traceable; any device and padding mode)."""
        n, c = xf.shape[0], xf.shape[1]
        ph, pw = self._p2
        kh, kw = self._k2
        (sh, sw), (dh, dw) = self._s2, self._d2
        if ph or pw:
            if self.padding_mode == "zeros":
                xh = F.pad(xh, (0, 0, pw, pw, ph, ph))
            else:
                xh = F.pad(xf, (pw, pw, ph, ph), mode=self.padding_mode).permute(0, 2, 3, 1)
        xh = xh.contiguous()
        if (kh, kw) == (1, 1):
            return xh[:, ::sh, ::sw, :]
        s_n, s_h, s_w, s_c = xh.stride()
        return xh.as_strided(
            (n, ho, wo, kh, kw, c), (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c)
        )

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self._k2)

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the kernels effectively use, in nn.Conv2d's (out, in, kh, kw) layout."""
        kh, kw = self._k2
        w = self._weight_matrix().reshape(self.out_channels, kh, kw, self.in_channels // self.groups)
        return w.permute(0, 3, 1, 2).contiguous()

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, padding_mode={self.padding_mode}, "
            + (f"groups={self.groups}, " if self.groups != 1 else "")
            + f"bias={self.bias is not None}, " + self._quant_extra_repr()
        )

    # The geometry as (height, width) pairs (_k2, _s2, _p2, _d2, what the kernels use); the public
    # names are nn.Conv2d's, and QuantConv1d's are nn.Conv1d's 1-tuples (Whisper reads conv1.stride[0]).
    _public = slice(0, None)

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return self._k2[self._public]

    @property
    def stride(self) -> tuple[int, ...]:
        return self._s2[self._public]

    @property
    def padding(self) -> tuple[int, ...]:
        return self._p2[self._public]

    @property
    def dilation(self) -> tuple[int, ...]:
        return self._d2[self._public]

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "QuantConv2d",
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self._k2),
            "stride": list(self._s2),
            "padding": list(self._p2),
            "dilation": list(self._d2),
            "bias": self.bias is not None,
            "padding_mode": self.padding_mode,
            **({"groups": self.groups} if self.groups != 1 else {}),
            **self._quant_spec(),
        }


class QuantConv1d(QuantConv2d):
    """Drop-in replacement of :class:`torch.nn.Conv1d` (audio / text CNNs): a QuantConv2d with a
    (1, k) kernel on the input viewed as (N, C, 1, L); same kernels, buffers and options.

    Example:
        >>> import torch
        >>> conv = torch.nn.Conv1d(4, 8, 3, padding=1)
        >>> q = lowbit.nn.QuantConv1d.from_float(conv)
        >>> x = torch.randn(2, 4, 16)
        >>> bool((q(x) - conv(x)).abs().max() < 0.1)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, bias: bool = True, padding_mode: str = "zeros",
                 **kwargs: Any) -> None:
        def one(v: Any) -> int:
            return int(v[-1]) if isinstance(v, (tuple, list)) else int(v)

        pad: Any = padding if isinstance(padding, str) else (0, one(padding))
        super().__init__(in_channels, out_channels, (1, one(kernel_size)), (1, one(stride)), pad,
                         (1, one(dilation)), bias, padding_mode, **kwargs)

    @classmethod
    def from_float(cls, mod: nn.Conv1d, config: Optional[QuantConfig] = None, *,
                   act_qparams: Optional[tuple[float, int]] = None,
                   weight_qparams: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                   name: str = "") -> QuantConv1d:
        """Quantizes an ``nn.Conv1d`` (see QuantLinear.from_float)."""
        config = config or QuantConfig()
        q = cls(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                mod.bias is not None, mod.padding_mode, groups=mod.groups, weight=config.weight,
                activation=config.activation)
        return q._fill(mod.weight.detach().permute(0, 2, 1), mod.bias, act_qparams, weight_qparams, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (2, 3):
            raise ValueError(
                f"{self.layer_name}: expected input of shape (N, {self.in_channels}, L), got {tuple(x.shape)}")
        return super().forward(x.unsqueeze(-2)).squeeze(-2)

    _public = slice(1, None)  # the width of the (1, k) pairs

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, self._k2[1])

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight in nn.Conv1d's (out, in / groups, k) layout."""
        return super().dequantized_weight().squeeze(2)

    def spec(self) -> dict[str, Any]:
        d = super().spec()
        d["kind"] = "QuantConv1d"
        for key in ("kernel_size", "stride", "padding", "dilation"):
            d[key] = d[key][1]
        return d
