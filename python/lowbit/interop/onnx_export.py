"""ONNX export of lowbit-quantized models (``lowbit.export_onnx``), checked in ONNX Runtime.

How: the model is deep-copied, every lowbit layer is swapped for a small export module whose
forward calls one private torch op (``lowbit_onnx::*``, fake kernels only), and ``torch.onnx.export``
(the dynamo exporter) writes the float rest of the model as usual while a custom translation
table turns each private op into standard ONNX / ONNX Runtime contrib operators:

==========================================  ===============================================================
lowbit layer                                ONNX form
==========================================  ===============================================================
int8 (and per-channel int4) weights,        quantize x (see below) -> ``MatMulIntegerToFloat`` (com.microsoft:
static or per-tensor dynamic activations    int8 GEMM, ``float(acc) * (a_scale * w_scale) + bias``)
int8 weights, per-row dynamic activations   per-row quantize -> ``MatMulInteger`` - zero point x column sums
                                            -> Cast -> Mul(row scale x weight scale) -> Add bias
QuantConv2d / QuantConv1d, int8 weights     quantize x -> ``ConvInteger`` (pads with the zero point, as lowbit)
                                            -> Cast -> Mul(a_scale * w_scale) -> Add bias; exact=False: QDQ
                                            (QuantizeLinear -> DequantizeLinear -> Conv with DQ weights)
int4 / uint4 (groups of a power of 2, or    ``MatMulNBits`` (com.microsoft, bits=4, zero points when stored;
per channel / tensor: blocks of 32)         accuracy_level 4 = int8 activations per block when the layer
                                            quantizes them)
nf4                                         ``MatMulBnb4`` (com.microsoft, quant_type NF4, bitsandbytes' levels)
fp16 / bf16 weight-only                     the half-precision weight -> Cast -> MatMul (+ bias)
QuantEmbedding                              Gather of the int8 rows x Gather of the row scales
QuantEmbeddingBag                           the int8 table x row scales, then torch's EmbeddingBag form
==========================================  ===============================================================

With ``exact=True`` (default) activations are quantized as lowbit does, ``clamp(round_half_even(x *
(1 / scale)) + zero_point)`` with per-row dynamic ranges, as explicit Mul/Round/Add/Clip/Cast nodes,
and products are integer, so the int8 layers give lowbit's outputs bit for bit (up to float
summation order in the float rest of the model). ``exact=False`` uses ONNX's own quantizers, which
ONNX Runtime fuses: ``QuantizeLinear`` (rounds ``x / scale``: one step apart from lowbit's ``x * (1 /
scale)`` where the two differ), ``DynamicQuantizeMatMul`` for dynamic Linear layers (one scale per
tensor instead of per row), and convolutions in QDQ form (Q -> DQ -> Conv with DQ weights), which
ONNX Runtime turns into QLinearConv requantizing to the next layer's input parameters (within one
step of lowbit's float output followed by that layer's quantization).

Why these forms (measured here, ONNX Runtime 1.32, 2 threads, busy shared machine; M=512, K=384,
N=1536): QuantizeLinear + MatMulIntegerToFloat 0.83 ms (exact with lowbit's quantizer: 0.83 ms),
QuantizeLinear + MatMulInteger + Cast + Mul + Add 1.38 ms, QuantizeLinear + QLinearMatMul +
DequantizeLinear 0.98 ms, QDQ (Q -> DQ -> MatMul, no Q after it) 15.7 ms (not fused: a float GEMM),
DynamicQuantizeMatMul 0.69 ms, the exact per-row dynamic graph 11 ms (its broadcast element-wise
nodes). Linear layers therefore use MatMulIntegerToFloat: exact, the fastest int8 GEMM that needs no
output scale (QLinearMatMul requantizes the output, which lowbit's layers never do). Convolutions:
ConvInteger (exact) ran the digits CNN at batch 32 in 1.5 ms, the QDQ form 0.24 ms (ONNX Runtime's
own quantize_static model: 0.21 ms), hence QDQ for exact=False.
"""

from __future__ import annotations

import copy
import os
import pathlib
import tempfile
import warnings
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn._common import rotate_input_torch, unrotate_rows
from ..nn.conv import QuantConv1d, QuantConv2d
from ..nn.linear import QuantLinear, _QuantBase
from . import _torch_ops

__all__ = ["export_onnx", "EXPORTABLE"]

#: What exports, for error messages and the docs.
EXPORTABLE = (
    "QuantLinear: int8 weights (and per-channel int4) with static, dynamic or dynamic_per_tensor activations; "
    "int4 / uint4 weight-only (per channel, per tensor, or groups of a power of two: 16, 32, 64, ...), int4 groups "
    "with dynamic activations; nf4 (blocks a power of two dividing in_features); fp16 / bf16 weight-only. "
    "QuantConv2d / QuantConv1d (padding_mode='zeros'): int8 weights with static or dynamic_per_tensor activations (per-row dynamic only with exact=False); fp16 / bf16 weight-only. "
    "QuantEmbedding / QuantEmbeddingBag (int8 rows). Float layers export as torch.onnx exports them."
)

_OPSET = 21
_NS = "lowbit_onnx"


# --------------------------------------------------------------------------------------------
# private export-only ops: fake kernels for tracing; eager calls compute the same math in torch


@torch.library.custom_op(f"{_NS}::linear_int8", mutates_args=())
def _linear_int8(x: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor, bias: Optional[torch.Tensor],
                 a_scale: Optional[torch.Tensor], a_zp: Optional[torch.Tensor], colsum: Optional[torch.Tensor],
                 mode: str, exact: bool) -> torch.Tensor:
    """``x`` (..., K) float32, ``w`` int8 (K, N), ``w_scale`` (N,), static ``a_scale`` () and
    uint8 ``a_zp`` (); ``colsum`` int32 (N,) (per-row dynamic). Eager: the float product with the
    dequantized weight (the exported graph holds the quantized math)."""
    return F.linear(x, (w.to(torch.float32) * w_scale).t(), bias)


@_linear_int8.register_fake
def _(x, w, w_scale, bias, a_scale, a_zp, colsum, mode, exact):
    return x.new_empty((*x.shape[:-1], w.shape[1]), dtype=torch.float32)


@torch.library.custom_op(f"{_NS}::conv_int8", mutates_args=())
def _conv_int8(x: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor, bias: Optional[torch.Tensor],
               a_scale: Optional[torch.Tensor], a_zp: Optional[torch.Tensor], mode: str, exact: bool,
               stride: list[int], padding: list[int], dilation: list[int], groups: int) -> torch.Tensor:
    """NCHW ``x``, int8 ``w`` (O, I / groups, kh, kw). Eager: a float convolution of the
    dequantized weight (shape only; the exported graph holds the quantized math)."""
    wf = w.to(torch.float32) * w_scale.reshape(-1, 1, 1, 1)
    return F.conv2d(x, wf, bias, stride, padding, dilation, groups)


@_conv_int8.register_fake
def _(x, w, w_scale, bias, a_scale, a_zp, mode, exact, stride, padding, dilation, groups):
    n, _, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return x.new_empty((n, w.shape[0], ho, wo), dtype=torch.float32)


@torch.library.custom_op(f"{_NS}::linear_nbits", mutates_args=())
def _linear_nbits(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, zeros: Optional[torch.Tensor],
                  bias: Optional[torch.Tensor], k: int, n: int, block_size: int, accuracy_level: int,
                  kind: str) -> torch.Tensor:
    """MatMulNBits (kind "int4": ``codes`` (N, blocks, block / 2), ``scales`` (N * blocks,), packed
    4-bit ``zeros`` (N, ceil(blocks / 2)) or None) or
    MatMulBnb4 (kind "nf4": ``codes`` (N * K / 2,), ``scales`` = block absmax). Eager: zeros of
    the output's shape (export-only op)."""
    return x.new_zeros((*x.shape[:-1], n), dtype=torch.float32)


@_linear_nbits.register_fake
def _(x, codes, scales, zeros, bias, k, n, block_size, accuracy_level, kind):
    return x.new_empty((*x.shape[:-1], n), dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# ONNX translations (onnxscript, traced by the exporter)


def _translations() -> dict:
    from onnx.defs import OpSchema
    from onnxscript import opset21 as op
    from onnxscript.values import Op, Opset

    msft = Opset("com.microsoft", 1)
    any_type = [f"tensor({t})" for t in ("float", "uint8", "int8", "int32")]

    def contrib(name: str, inputs: str, attrs: tuple = ()) -> Op:
        """An ONNX Runtime com.microsoft operator (onnx registers no schema for them): ``inputs``
        names, optional ones ending in '?'; one output; ``attrs`` integer attribute names."""
        params = [OpSchema.FormalParameter(n.rstrip("?"), f"T{i}", param_option=OpSchema.FormalParameterOption.Optional
                                           if n.endswith("?") else OpSchema.FormalParameterOption.Single)
                  for i, n in enumerate(inputs.split())]
        types = [(f"T{i}", any_type, "") for i in range(len(params))] + [("TY", ["tensor(float)"], "")]
        schema = OpSchema(name, "com.microsoft", 1, inputs=params, outputs=[OpSchema.FormalParameter("Y", "TY")],
                          type_constraints=types,
                          attributes=[OpSchema.Attribute(a, OpSchema.AttrType.INT, required=False) for a in attrs])
        return Op(msft, name, schema)

    matmul_integer_to_float = contrib("MatMulIntegerToFloat", "A B a_scale b_scale a_zero_point? b_zero_point? bias?")
    dynamic_quantize_matmul = contrib("DynamicQuantizeMatMul", "A B b_scale b_zero_point? bias?")
    matmul_nbits = contrib("MatMulNBits", "A B scales zero_points? g_idx? bias?",
                           ("K", "N", "bits", "block_size", "accuracy_level"))
    matmul_bnb4 = contrib("MatMulBnb4", "A B absmax", ("K", "N", "block_size", "quant_type"))
    f32, u8, i32 = 1, 2, 6  # ONNX TensorProto data types

    def const(v: float) -> Any:
        return op.Constant(value_float=float(v))

    def quantize_with(x: Any, scale: Any, zp_f: Any) -> Any:
        """lowbit's rounding: clamp(round_half_even(x * (1 / scale)) + zp, 0, 255) as uint8."""
        q = op.Add(op.Round(op.Mul(x, op.Div(const(1.0), scale))), zp_f)
        return op.Cast(op.Clip(q, const(0.0), const(255.0)), to=u8)

    def dynamic_params(x: Any, axes: Optional[list[int]]) -> tuple[Any, Any]:
        """lowbit's dynamic parameters: range [min(x, 0), max(x, 0)] over ``axes`` (None: all),
        scale = max(min(hi - lo, FLT_MAX) / 255, eps), zp = clamp(-round(lo / scale), 0, 255)."""
        if axes is None:
            lo, hi = op.ReduceMin(x, keepdims=0), op.ReduceMax(x, keepdims=0)
        else:
            ax = op.Constant(value_ints=axes)
            lo, hi = op.ReduceMin(x, ax, keepdims=1), op.ReduceMax(x, ax, keepdims=1)
        zero = const(0.0)
        lo, hi = op.Min(lo, zero), op.Max(hi, zero)
        rng = op.Min(op.Sub(hi, lo), const(np.finfo(np.float32).max))
        scale = op.Max(op.Div(rng, const(255.0)), const(np.finfo(np.float32).eps))
        zp = op.Clip(op.Sub(zero, op.Round(op.Div(lo, scale))), zero, const(255.0))
        return scale, zp

    def linear_int8(x, w, w_scale, bias, a_scale, a_zp, colsum, mode, exact):
        if mode == "static":
            q = quantize_with(x, a_scale, op.Cast(a_zp, to=f32)) if exact else op.QuantizeLinear(x, a_scale, a_zp)
            return matmul_integer_to_float(q, w, a_scale, w_scale, a_zp, None, bias)
        if not exact:  # ONNX Runtime's fused dynamic form (one scale per tensor)
            return dynamic_quantize_matmul(x, w, w_scale, None, bias)
        if mode == "dynamic_per_tensor":
            s, zp = dynamic_params(x, None)
            q = quantize_with(x, s, zp)
            return matmul_integer_to_float(q, w, s, w_scale, op.Cast(zp, to=u8), None, bias)
        s, zp = dynamic_params(x, [-1])  # per row: MatMulInteger takes no per-row zero point
        acc = op.Sub(op.MatMulInteger(quantize_with(x, s, zp), w), op.Mul(op.Cast(zp, to=i32), colsum))
        y = op.Mul(op.Cast(acc, to=f32), op.Mul(s, w_scale))
        return y if bias is None else op.Add(y, bias)

    def conv_int8(x, w, w_scale, bias, a_scale, a_zp, mode, exact, stride, padding, dilation, groups):
        pads = [padding[0], padding[1], padding[0], padding[1]]
        if not exact:  # QDQ: ONNX Runtime fuses it with the next layer's QuantizeLinear into QLinearConv
            if mode == "static":
                q, s, zp_u8 = op.QuantizeLinear(x, a_scale, a_zp), a_scale, a_zp
            else:
                q, s, zp_u8 = op.DynamicQuantizeLinear(x)
            wd = op.DequantizeLinear(w, w_scale, axis=0)
            return op.Conv(op.DequantizeLinear(q, s, zp_u8), wd, bias, strides=list(stride), pads=pads,
                           dilations=list(dilation), group=int(groups))
        if mode == "static":
            q, s, zp_u8 = quantize_with(x, a_scale, op.Cast(a_zp, to=f32)), a_scale, a_zp
        else:  # dynamic_per_tensor: the image's range
            s, zp = dynamic_params(x, None)
            q, zp_u8 = quantize_with(x, s, zp), op.Cast(zp, to=u8)
        acc = op.ConvInteger(q, w, zp_u8, strides=list(stride), pads=pads, dilations=list(dilation), group=int(groups))
        scale = op.Reshape(op.Mul(s, w_scale), op.Constant(value_ints=[1, -1, 1, 1]))
        y = op.Mul(op.Cast(acc, to=f32), scale)
        return y if bias is None else op.Add(y, op.Reshape(bias, op.Constant(value_ints=[1, -1, 1, 1])))

    def linear_nbits(x, codes, scales, zeros, bias, k, n, block_size, accuracy_level, kind):
        if kind == "int4":
            return matmul_nbits(x, codes, scales, zeros, None, bias, K=k, N=n, bits=4, block_size=block_size,
                                  accuracy_level=accuracy_level)
        y = matmul_bnb4(x, codes, scales, K=k, N=n, block_size=block_size, quant_type=1)
        return y if bias is None else op.Add(y, bias)

    return {
        torch.ops.lowbit_onnx.linear_int8.default: linear_int8,
        torch.ops.lowbit_onnx.conv_int8.default: conv_int8,
        torch.ops.lowbit_onnx.linear_nbits.default: linear_nbits,
    }


# --------------------------------------------------------------------------------------------
# export modules (one per lowbit layer, holding its weights in the ONNX form's layout)


def _int_codes(layer: _QuantBase) -> torch.Tensor:
    """The int8 codes (out, in_flat) of an int8 or per-channel int4 layer."""
    data = getattr(layer, layer.scheme.data_name)
    if data.dtype == torch.uint8:
        return _torch_ops.unpack_nibbles(data, layer.in_flat, signed=True).to(torch.int8)
    return data


def _act_buffers(mod: nn.Module, layer: _QuantBase) -> None:
    """Static activation parameters as uint8 ones (an int8 zero point + 128: the same (x - zp))."""
    if layer.activation.calibrated:
        shift = 128 if layer.activation_dtype == "int8" else 0
        mod.register_buffer("a_scale", layer.act_scale.detach().to(torch.float32).reshape(()).clone())
        mod.register_buffer("a_zp", (layer.act_zero_point.to(torch.int32) + shift).to(torch.uint8).reshape(()))
    else:
        mod.a_scale = mod.a_zp = None


class _LinearInt8(nn.Module):
    def __init__(self, layer: QuantLinear, exact: bool) -> None:
        super().__init__()
        w = _int_codes(layer)
        self.register_buffer("w", w.t().contiguous())
        self.register_buffer("w_scale", layer.weight_scale.detach().to(torch.float32).reshape(-1)
                             .expand(layer.out_flat).contiguous())
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())
        _act_buffers(self, layer)
        per_row = layer.activation.name == "dynamic" and exact
        self.register_buffer("colsum", w.to(torch.int32).sum(1).to(torch.int32) if per_row else None)
        self.mode, self.exact, self.out_features = layer.activation.name, exact, layer.out_flat

    @property
    def weight(self) -> torch.Tensor:
        """The float32 (out, in) weight, for model code that reads ``layer.weight`` (its dtype, as
        ViT and T5 do): computed in the graph from the buffers, dropped by the exporter when unused."""
        return self.w.t().to(torch.float32) * self.w_scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.lowbit_onnx.linear_int8(x.to(torch.float32), self.w, self.w_scale, self.bias, self.a_scale,
                                                 self.a_zp, self.colsum, self.mode, self.exact)


class _ConvInt8(nn.Module):
    def __init__(self, layer: QuantConv2d, exact: bool) -> None:
        super().__init__()
        kh, kw = layer._k2  # (height, width) pairs: a QuantConv1d's are (1, k)
        w = _int_codes(layer).reshape(layer.out_channels, kh, kw, layer.in_channels // layer.groups)
        self.register_buffer("w", w.permute(0, 3, 1, 2).contiguous())
        self.register_buffer("w_scale", layer.weight_scale.detach().to(torch.float32).reshape(-1)
                             .expand(layer.out_flat).contiguous())
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())
        _act_buffers(self, layer)
        self.mode, self.exact = layer.activation.name, exact
        self.geom = (list(layer._s2), list(layer._p2), list(layer._d2), layer.groups)
        self.one_d = isinstance(layer, QuantConv1d)

    @property
    def weight(self) -> torch.Tensor:
        """The float32 weight in the float layer's layout (see :attr:`_LinearInt8.weight`)."""
        w = self.w.to(torch.float32) * self.w_scale[:, None, None, None]
        return w.squeeze(2) if self.one_d else w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.one_d:
            x = x.unsqueeze(-2)
        y = torch.ops.lowbit_onnx.conv_int8(x, self.w, self.w_scale, self.bias, self.a_scale, self.a_zp, self.mode,
                                            self.exact, *self.geom)
        return y.squeeze(-2) if self.one_d else y


class _LinearNBits(nn.Module):
    """MatMulNBits (kind "int4": int4 / uint4 codes, any granularity) or MatMulBnb4 (kind "nf4")."""

    def __init__(self, layer: QuantLinear, kind: str) -> None:
        super().__init__()
        n, k = layer.out_flat, layer.in_flat
        # per-channel / per-tensor parameters repeat over blocks of 32 (16 for short rows): same weights
        g = layer.group_size or (32 if k >= 32 else 16)
        blocks = -(-k // g)
        scales = layer._scale().detach().to(torch.float32)
        zeros = None
        if kind == "int4":
            # MatMulNBits dequantizes (u - zero_point) * scale with unsigned codes u (zero point 8
            # when none is given): int4 codes q become u = q + 8, their zero points z + 8
            signed = layer.scheme.name == "int4"
            shift = 8 if signed else 0
            u = (_torch_ops.unpack_nibbles(layer.weight_packed, k, signed=signed).to(torch.int16) + shift)
            u = F.pad(u.to(torch.uint8), (0, blocks * g - k), value=8).reshape(n, blocks, g)
            codes = u[..., 0::2] | (u[..., 1::2] << 4)
            scales = self._per_block(scales, n, blocks)
            zp = layer._buffers.get("weight_zero_point")
            if zp is not None:
                z = (self._per_block(zp.to(torch.int32), n, blocks) + shift).to(torch.uint8)
                z = F.pad(z, (0, blocks % 2), value=8)
                zeros = (z[:, 0::2] | (z[:, 1::2] << 4)).contiguous()
        else:
            # MatMulBnb4: the (N, K) codes in row-major order, high nibble first (bitsandbytes)
            c = _torch_ops.unpack_nibbles(layer.weight_packed, k, signed=False).reshape(-1)
            codes = (c[0::2] << 4) | c[1::2]
        self.register_buffer("codes", codes.contiguous())
        self.register_buffer("scales", scales.reshape(-1).contiguous())
        self.register_buffer("zeros", zeros)
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())
        self.k, self.n, self.g, self.kind = k, n, g, kind
        self.level = 4 if layer.activation.quantized else 0

    @staticmethod
    def _per_block(t: torch.Tensor, n: int, blocks: int) -> torch.Tensor:
        """Scales / zero points of any granularity as (N, blocks)."""
        if t.dim() == 2 and t.shape[1] == blocks:
            return t
        return t.reshape(-1, 1).expand(n, blocks) if t.numel() == n else t.reshape(1, 1).expand(n, blocks)

    @property
    def weight(self) -> torch.Tensor:
        """The float32 (out, in) weight decoded from the MatMulNBits / MatMulBnb4 buffers (see
        :attr:`_LinearInt8.weight`)."""
        n, k, g = self.n, self.k, self.g
        if self.kind == "nf4":  # high nibble first, blocks of g along the flattened weight
            c = torch.stack([self.codes >> 4, self.codes & 15], dim=-1).reshape(-1)[: n * k].to(torch.int64)
            v = _torch_ops._NF4_LEVELS.to(self.scales.device)[c].reshape(-1, g) * self.scales.reshape(-1, 1)
            return v.reshape(n, k)
        blocks = -(-k // g)
        unpack = _torch_ops.unpack_nibbles  # low nibble first, as MatMulNBits packs codes and zero points
        u = unpack(self.codes.reshape(n, -1), blocks * g, signed=False).reshape(n, blocks, g).to(torch.float32)
        if self.zeros is None:
            z = torch.full((n, blocks, 1), 8.0, device=u.device)
        else:
            z = unpack(self.zeros, blocks, signed=False).to(torch.float32).unsqueeze(-1)
        return ((u - z) * self.scales.reshape(n, blocks, 1)).reshape(n, blocks * g)[:, :k]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.lowbit_onnx.linear_nbits(x.to(torch.float32), self.codes, self.scales, self.zeros,
                                                  self.bias, self.k, self.n, self.g, self.level, self.kind)


class _HalfWeight(nn.Module):
    """fp16 / bf16 weight-only: the stored half-precision weight, cast to float32 in the graph."""

    def __init__(self, layer: _QuantBase) -> None:
        super().__init__()
        w = getattr(layer, layer.scheme.data_name).detach()
        if isinstance(layer, QuantConv2d):
            kh, kw = layer._k2
            w = w.reshape(layer.out_channels, kh, kw, -1).permute(0, 3, 1, 2)
            self.conv = dict(stride=layer._s2, padding=layer._p2, dilation=layer._d2, groups=layer.groups)
            self.one_d = isinstance(layer, QuantConv1d)
        else:
            self.conv = None
        self.register_buffer("w", w.contiguous())
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        """The float32 weight in the float layer's layout (see :attr:`_LinearInt8.weight`)."""
        w = self.w.to(torch.float32)
        return w.squeeze(2) if self.conv is not None and self.one_d else w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.w.to(torch.float32)
        x = x.to(torch.float32)
        if self.conv is None:
            return F.linear(x, w, self.bias)
        if self.one_d:
            return F.conv2d(x.unsqueeze(-2), w, self.bias, **self.conv).squeeze(-2)
        return F.conv2d(x, w, self.bias, **self.conv)


class _RotatedInput(nn.Module):
    """A rotated layer's input rotation (:mod:`lowbit.core.rotation`) in front of its export module:
    Mul by the signs, MatMul of each block with the Hadamard matrix (equal to lowbit's
    Walsh-Hadamard kernel up to float rounding)."""

    def __init__(self, inner: nn.Module, layer: QuantLinear) -> None:
        super().__init__()
        self.inner, self.block = inner, layer.rotation_block
        self.register_buffer("signs", layer.rotation_signs.detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        """The weight on the unrotated inputs (see :attr:`_LinearInt8.weight`)."""
        return unrotate_rows(self.inner.weight, self.signs, self.block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(rotate_input_torch(x.to(torch.float32), self.signs, self.block))


def _plan(layer: _QuantBase, exact: bool) -> Union[nn.Module, str]:
    """The export module for one lowbit layer, or the reason it cannot export."""
    p = _plan_layer(layer, exact)
    return _RotatedInput(p, layer) if getattr(layer, "rotation_block", 0) and isinstance(p, nn.Module) else p


def _plan_layer(layer: _QuantBase, exact: bool) -> Union[nn.Module, str]:
    scheme, act = layer.scheme, layer.activation
    conv = isinstance(layer, QuantConv2d)
    if scheme.name in ("fp16", "bf16") and not act.quantized:
        return _HalfWeight(layer)
    if conv and layer.padding_mode != "zeros":
        return f"padding_mode={layer.padding_mode!r} (only 'zeros' exports)"
    kernel = layer.kernel
    if kernel == "linear_int8":
        if bool((layer.weight_zero_point != 0).any()):
            return "int8 weights with zero points (ONNX export takes symmetric int8 weights)"
        if conv:
            if act.name == "dynamic" and exact:
                return ("conv with per-row ('dynamic') activations: ONNX's ConvInteger takes one zero point per "
                        "image; use activation='static' or 'dynamic_per_tensor', or exact=False (per-tensor "
                        "DynamicQuantizeLinear, approximate)")
            return _ConvInt8(layer, exact)
        return _LinearInt8(layer, exact)
    if not conv and kernel == "linear_4bit" and scheme.name == "nf4":
        g = layer.group_size
        if g < 16 or g & (g - 1) or layer.in_flat % g:
            return f"nf4 block {g} with in_features={layer.in_flat} (MatMulBnb4 takes blocks a power of two >= 16 " \
                   "dividing in_features)"
        return _LinearNBits(layer, "nf4")
    if not conv and scheme.name in ("int4", "uint4") and (kernel == "linear_4bit" or not act.quantized):
        g = layer.group_size
        if g is not None and (g < 16 or g & (g - 1)):
            return f"{scheme.name} group_size={g} (MatMulNBits takes powers of two >= 16)"
        return _LinearNBits(layer, "int4")
    where = " in a convolution" if conv else ""
    return f"{scheme.describe()} with {act.describe()} activations{where} (no ONNX form)"


def _swap(model: nn.Module, exact: bool) -> nn.Module:
    """A copy of ``model`` with every lowbit layer replaced by its export module. Raises
    ValueError listing every layer that cannot export (nothing is written)."""
    problems, plans = [], {}
    for name, m in model.named_modules():
        if isinstance(m, _QuantBase):
            p = _plan(m, exact)
            if isinstance(p, str):
                problems.append(f"  {name or '<model>'} ({type(m).__name__}): {p}")
            else:
                plans[name] = p
        elif type(m).__name__.startswith("QAT") and type(m).__module__.startswith("lowbit."):
            problems.append(f"  {name} ({type(m).__name__}): a QAT layer; call lowbit.convert(model) first")
    if problems:
        raise ValueError("model: these layers cannot be exported to ONNX:\n" + "\n".join(problems)
                         + "\nWhat exports: " + EXPORTABLE)
    if "" in plans:
        return plans[""]
    out = copy.deepcopy(model)
    from ..nn.attention import use_torch_attention_
    from ..nn.chain import unchain_int8_
    from ..nn.fused import unfuse_activations_
    from ..nn.norm import use_torch_layernorm_
    from ..nn.siblings import ungroup_siblings_

    unchain_int8_(out)  # uint8 activations between layers are an eager-CPU form; ONNX gets the float graph
    unfuse_activations_(out)  # so are activations run in place
    ungroup_siblings_(out)  # and siblings sharing one quantized input
    use_torch_attention_(out)  # and lowbit's attention function (transformers models)
    use_torch_layernorm_(out)  # and lowbit's LayerNorm
    for name, p in plans.items():
        parent_name, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent_name), child, p)
    return out


def export_onnx(
    model: nn.Module,
    example_inputs: Any,
    path: Union[str, os.PathLike],
    *,
    exact: bool = True,
    kwargs: Optional[dict[str, Any]] = None,
    dynamic_shapes: Any = None,
    input_names: Optional[Sequence[str]] = None,
    output_names: Optional[Sequence[str]] = None,
) -> pathlib.Path:
    """Writes a lowbit-quantized model (from :func:`lowbit.quantize_model` / :func:`lowbit.convert`
    / :func:`lowbit.load`) as an ONNX file that ONNX Runtime runs (opset 21 + com.microsoft ops).

    Every lowbit layer becomes standard ONNX / ONNX Runtime contrib operators (the module
    docstring has the table); the float rest of the model goes through ``torch.onnx.export``
    (dynamo exporter). The caller's model is not modified (a copy is exported) and nothing is
    written unless every layer exports: unsupported layers raise ValueError listing them and
    :data:`EXPORTABLE`.

    Args:
        model: the quantized ``nn.Module`` (evaluation mode is used for the export).
        example_inputs: a tensor or a tuple of positional inputs, traced once.
        path: the ``.onnx`` file to write (its folder must exist); replaced atomically.
        exact: True: activations quantized exactly as lowbit does and integer products (int8
            layers then agree with lowbit's bit for bit); False: the forms ONNX Runtime fuses and
            runs fastest (QuantizeLinear, DynamicQuantizeMatMul with one scale per tensor, QDQ
            convolutions): outputs within a few quantization steps of lowbit's.
        kwargs: keyword inputs (e.g. ``attention_mask``), passed to ``torch.onnx.export``.
        dynamic_shapes, input_names, output_names: passed to ``torch.onnx.export``.

    Returns:
        The path written.

    Raises:
        TypeError: ``model`` is not an nn.Module, ``example_inputs`` not tensors, ``exact`` not a bool.
        ValueError: a layer cannot export (all are listed), or ``path``'s folder does not exist.
        ImportError: onnx / onnxscript are missing (``pip install 'lowbit[onnx]'``).

    Example:
        >>> import os, tempfile, onnxruntime
        >>> q = lowbit.quantize_model(torch.nn.Sequential(torch.nn.Linear(16, 4)), progress=False)
        >>> x = torch.randn(2, 16)
        >>> f = lowbit.export_onnx(q, x, os.path.join(tempfile.mkdtemp(), "q.onnx"))
        >>> sess = onnxruntime.InferenceSession(str(f), providers=["CPUExecutionProvider"])
        >>> y = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        >>> bool(np.array_equal(y, q(x).numpy()))  # per-row dynamic int8, bit for bit
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in example_inputs):
        raise TypeError("example_inputs: expected a tensor or a tuple of tensors, got "
                        f"{type(example_inputs).__name__}")
    if not isinstance(exact, bool):
        raise TypeError(f"exact: expected a bool, got {type(exact).__name__}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"kwargs: expected a dict of keyword inputs, got {type(kwargs).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    path = pathlib.Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"path: folder {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"path: {str(path)!r} is a folder")
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ImportError(f"lowbit.export_onnx needs {e.name}: pip install 'lowbit[onnx]'", name=e.name) from e
    export_model = _swap(model, exact).eval()  # a copy: the caller's model keeps its mode
    with warnings.catch_warnings():
        # torch.onnx / torch.export warn about their own internals; not the caller's concern
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.simplefilter("ignore", category)
        program = torch.onnx.export(
            export_model, tuple(example_inputs), kwargs=kwargs, dynamo=True, opset_version=_OPSET,
            custom_translation_table=_translations(), dynamic_shapes=dynamic_shapes,
            input_names=input_names, output_names=output_names, optimize=True, verbose=False)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        program.save(tmp, external_data=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
