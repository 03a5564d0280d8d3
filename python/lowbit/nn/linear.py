"""QuantLinear: an nn.Linear with quantized weights (int8, int4, uint4, nf4, fp16, bf16, log2,
ternary, binary) run by lowbit's kernels.

Public torch layer; the math runs in lowbit.linear through the lowbit::quant_linear (int8 kernels)
and lowbit::linear_4bit (fused 4-bit kernel) ops, or lowbit::dequantize_weight + a float matmul.
"""

from __future__ import annotations

import weakref
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import _torch_ops
from ..config import QuantConfig
from ..matmul import prepare_linear
from ..packed4 import prepare_linear_4bit
from ._common import buffer_guards, check_input, guards_hold
from ._formats import WeightLayout

__all__ = ["QuantLinear"]

# Prepared eager CPU calls per module: (buffer versions and addresses, call). Kept outside the
# module so state_dict, pickling and deepcopy never see it.
_EAGER: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_ACTIVATIONS = ("dynamic", "dynamic_per_tensor", "static", None)


class _QuantBase(nn.Module):
    """Buffers and the quantized matmul shared by QuantLinear and QuantConv2d.

    Buffers (all in ``state_dict``; K = in_flat, G = ceil(K / group_size)):

    - int8: ``weight_int8`` int8 (out, K), ``weight_scale`` float32 (out,), ``weight_zero_point``
      int32 (out,).
    - int4 / uint4 per channel or tensor: ``weight_packed`` uint8 (out, ceil(K / 2)) (two 4-bit
      values per byte, low nibble first), ``weight_scale`` (out,), ``weight_zero_point`` (out,).
    - int4 groups (symmetric) and nf4: ``weight_packed`` (out, ceil(K / 2)), ``weight_scale``
      float32 (out, G); asymmetric int4 / uint4 groups add ``weight_zero_point`` int32 (out, G).
    - fp16 / bf16: ``weight_fp16`` float16 / ``weight_bf16`` bfloat16 (out, K).
    - log2 / ternary / binary: ``weight_codes`` uint8 (lowbit.FormatQTensor's ``data``: log2 4-bit
      codes two per byte per row, 8-bit one per byte; ternary four and binary eight codes per
      byte over the flattened weight) and ``weight_scale`` float32 (out,) or () per tensor.
    - ``bias`` float32 (out,) or None; static activations: ``act_scale`` float32 (),
      ``act_zero_point`` int32 ().

    For per-channel int4 layers ``weight_int8`` still reads as the unpacked int8 (out, K) values (a
    copy; the stored tensor is ``weight_packed``).
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
        group_size: Optional[int] = None,
        log2_bits: int = 4,
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {_ACTIVATIONS}, got {activation!r}")
        cfg = QuantConfig(  # validates the combination, with the config's messages
            weight=weight,
            activation=activation,
            activation_dtype=activation_dtype,
            granularity=granularity,
            symmetric_weights=symmetric_weights,
            group_size=group_size,
            log2_bits=log2_bits,
        )
        self.layout = WeightLayout.from_config(cfg)
        self.weight_dtype = weight
        self.activation = cfg.effective_activation
        self.activation_dtype = activation_dtype
        self.granularity = granularity
        self.symmetric_weights = symmetric_weights
        self.group_size = cfg.weight_group_size
        self.log2_bits = log2_bits
        self.in_flat = int(in_flat)
        self.out_flat = int(out_features)
        self.layer_name = type(self).__name__
        for name, t in self.layout.empty_buffers(out_features, in_flat).items():
            self.register_buffer(name, t)
        self.register_buffer(
            "bias", torch.zeros(out_features, dtype=torch.float32) if bias else None
        )
        if self.activation == "static":
            self.register_buffer("act_scale", torch.ones((), dtype=torch.float32))
            self.register_buffer("act_zero_point", torch.zeros((), dtype=torch.int32))
        else:
            self.act_scale = None
            self.act_zero_point = None

    @property
    def kernel(self) -> str:
        """ "int8" (lowbit's int8 kernels), "4bit" (the fused 4-bit kernel) or "float"
        (lowbit dequantizes the weight, then a float matmul)."""
        return self.layout.kernel

    @property
    def weight_bits(self) -> int:
        """Bits per stored weight code (4 for int4/uint4/nf4, ...), scales not included."""
        return self.layout.code_bits

    @property
    def weight_granularity(self) -> str:
        """ "per_channel", "per_tensor", "per_group", "per_block" (nf4) or "elementwise"."""
        return self.layout.granularity_label

    def _set_weight(
        self,
        w: torch.Tensor,
        scale: Optional[torch.Tensor] = None,
        zp: Optional[torch.Tensor] = None,
    ) -> None:
        new = self.layout.quantize(w, scale, zp)
        with torch.no_grad():
            for name, t in new.items():
                buf = getattr(self, name)
                buf.copy_(t.reshape(buf.shape).to(buf.dtype))

    def _check_kernel(self, name: str) -> None:
        """Raises ValueError (naming the layer) when the 4-bit kernel rejects this layer's shape:
        a one-row product with the stored weight is tried once (its packed form stays cached)."""
        if self.kernel != "4bit":
            return
        try:
            _torch_ops.linear_4bit_impl(
                torch.zeros(1, self.in_flat), self.weight_packed, self.weight_scale, None,
                self.weight_dtype, self.group_size, self._act_4bit,
            )
        except ValueError as e:
            raise ValueError(
                f"{name or self.layer_name}: the 4-bit kernel cannot run in_features={self.in_flat} "
                f"with group_size={self.group_size}: {e}"
            ) from e

    def _set_act(self, scale: Any, zero_point: Any) -> None:
        with torch.no_grad():
            self.act_scale.fill_(float(scale))
            self.act_zero_point.fill_(int(zero_point))

    def _weight_matrix(self) -> torch.Tensor:
        """The float32 (out, in_flat) weight the kernels effectively use (lowbit::dequantize_weight)."""
        data = getattr(self, self.layout.data_buffer)
        bits = self.log2_bits if self.weight_dtype == "log2" else self.weight_bits
        return torch.ops.lowbit.dequantize_weight(
            data,
            getattr(self, "weight_scale", None),
            getattr(self, "weight_zero_point", None),
            self.weight_dtype,
            self.out_flat,
            self.in_flat,
            self.group_size or 0,
            bits,
        )

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the kernels effectively use, shape (out, in_flat)."""
        return self._weight_matrix()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "weight_int8" and self.layout.dtype == "int4" and self.layout.group_size is None:
                return _torch_ops.unpack_nibbles(self.weight_packed, self.in_flat, signed=True)
            raise

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        # Files written before per-channel int4 was packed hold int8 ``weight_int8`` values.
        old = prefix + "weight_int8"
        if old in state_dict and "weight_packed" in self._buffers and self.weight_dtype == "int4":
            state_dict[prefix + "weight_packed"] = _torch_ops.pack_nibbles(state_dict.pop(old))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def nbytes(self) -> int:
        """Bytes of the quantized layer's tensors (weights as stored, e.g. 4-bit codes at half a
        byte each, scales, zero points, bias, activation parameters)."""
        return sum(b.numel() * b.element_size() for b in self.buffers(recurse=False))

    @property
    def _act_4bit(self) -> str:
        return "int8" if self.activation == "dynamic" else "float"

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_flat) float32 -> (..., out) float32."""
        kernel = self.kernel
        if kernel == "float":
            b = None if self.bias is None else self.bias.to(x.dtype)
            return F.linear(x, self._weight_matrix().to(device=x.device, dtype=x.dtype), b)
        if kernel == "4bit":
            act = self._act_4bit
            if act == "int8":
                x = x.detach()  # as the int8 kernels: no backward through quantized activations
            if x.numel() == 0:
                return x.new_zeros((*x.shape[:-1], self.out_flat))
            eager = (x.device.type == "cpu" and not torch.compiler.is_compiling()
                     and not (x.requires_grad and torch.is_grad_enabled()))
            if eager:
                return self._eager(x)
            op = torch.ops.lowbit.linear_4bit
            return op(x, self.weight_packed, self.weight_scale, self.bias, self.weight_dtype,
                      self.group_size, act)
        if x.requires_grad:
            x = x.detach()  # the int8 kernels have no backward
        if x.numel() == 0:
            return x.new_zeros((*x.shape[:-1], self.out_flat))
        # Eager CPU calls the kernel directly (skips the dispatcher; same code as the op).
        if x.device.type == "cpu" and not torch.compiler.is_compiling():
            return self._eager(x)
        w_q = self.weight_int8 if self.weight_dtype == "int8" else self.weight_packed
        return torch.ops.lowbit.quant_linear(
            x,
            w_q,
            self.weight_scale,
            self.weight_zero_point,
            self.bias,
            self.act_scale,
            self.act_zero_point,
            self.activation,
            self.activation_dtype,
        )

    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        """Eager CPU forward: the kernel call prepared once per module (packed weight, bias and
        activation parameters validated and bound) and rebuilt when any buffer is replaced or
        modified in place. Same numerics as the ops; saves the per-call Python work that
        dominates small layers."""
        hit = _EAGER.get(self)
        if hit is None or not guards_hold(self, hit[0]):
            hit = (buffer_guards(self), self._prepare_eager(x.shape[-1]))
            _EAGER[self] = hit
        flat = x.dim() == 2  # the common case: no reshapes (each costs ~0.7 us on small layers)
        x2 = x if flat else x.reshape(-1, x.shape[-1])
        if not x2.is_contiguous():
            x2 = x2.contiguous()
        y = torch.from_numpy(hit[1](x2.numpy()))
        return y if flat else y.reshape(*x.shape[:-1], y.shape[1])

    def _prepare_eager(self, k: int) -> Any:
        b = None if self.bias is None else _torch_ops.to_numpy(self.bias.to(torch.float32))
        if self.kernel == "4bit":
            pw = _torch_ops.packed_weight_4bit(self.weight_packed, self.weight_scale, self.weight_dtype,
                                               self.group_size, k)
            return prepare_linear_4bit(pw, b, act=self._act_4bit)
        w_q = self.weight_int8 if self.weight_dtype == "int8" else self.weight_packed
        packed = _torch_ops.packed_weight(w_q, self.weight_scale, self.weight_zero_point, k)
        if self.activation == "static":
            return prepare_linear(packed, b, act="static", act_scale=float(self.act_scale),
                                  act_zero_point=int(self.act_zero_point), act_dtype=self.activation_dtype)
        return prepare_linear(packed, b, act=self.activation)

    def _quant_extra_repr(self) -> str:
        s = f"weight={self.weight_dtype}"
        if self.group_size is not None:
            s += f", group_size={self.group_size}"
        if self.weight_dtype == "log2":
            s += f", log2_bits={self.log2_bits}"
        s += f", activation={self.activation}"
        if self.activation == "static":
            s += f" ({self.activation_dtype}, scale={float(self.act_scale):.4g}, zp={int(self.act_zero_point)})"
        return s + f", granularity={self.granularity}"

    def _quant_spec(self) -> dict[str, Any]:
        return {
            "weight": self.weight_dtype,
            "activation": self.activation,
            "activation_dtype": self.activation_dtype,
            "granularity": self.granularity,
            "symmetric_weights": self.symmetric_weights,
            "group_size": self.group_size,
            "log2_bits": self.log2_bits,
        }

    def spec(self) -> dict[str, Any]:
        """Constructor arguments as JSON-able data (used by lowbit.save / lowbit.load)."""
        raise NotImplementedError


class QuantLinear(_QuantBase):
    """Drop-in replacement of :class:`torch.nn.Linear` with quantized weights, in any
    :class:`lowbit.QuantConfig` weight format (``weight``, ``group_size``, ``log2_bits``).

    ``forward`` takes float tensors of shape (..., in_features) on any device. On CPU:

    - int8 and per-channel int4 weights run lowbit's fused int8 kernel (activations quantized per
      row when ``activation="dynamic"``, per tensor with fixed parameters when "static");
    - group-wise int4 (symmetric) and nf4 weights run the fused 4-bit kernel (int8 activations per
      row with "dynamic", float32 activations weight-only), which decodes the packed codes in
      registers;
    - every other case (weight-only int8/int4, uint4, asymmetric groups, fp16, bf16, log2,
      ternary, binary) dequantizes the weight with lowbit's kernels into a temporary float32
      matrix and runs ``F.linear``: storage and accuracy formats, not speed formats.

    Other devices run torch references with the same math (the int8 path bit-identical; the
    4-bit path with float activations). float16/bfloat16/float64 inputs are computed in float32
    and cast back; non-contiguous inputs are copied. No autograd through quantized activations
    (outputs do not require grad); weight-only layers (``activation=None`` and the weight-only
    formats) pass gradients to their input.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(16, 4)
        >>> q = lowbit.nn.QuantLinear.from_float(lin)
        >>> x = torch.randn(2, 16)
        >>> bool((q(x) - lin(x)).abs().max() < 0.05)
        True
        >>> q4 = lowbit.nn.QuantLinear.from_float(torch.nn.Linear(64, 4), lowbit.QuantConfig(weight="nf4"))
        >>> q4, q4.weight_packed.shape, q4.weight_scale.shape
        (QuantLinear(in_features=64, out_features=4, bias=True, weight=nf4, group_size=64, activation=dynamic, granularity=per_channel), torch.Size([4, 32]), torch.Size([4, 1]))
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
        group_size: Optional[int] = None,
        log2_bits: int = 4,
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
            group_size,
            log2_bits,
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
        activations, ``weight_qparams`` override the weight's own range (QAT).

        Raises:
            ValueError: static activations without ``act_qparams``, or a shape the 4-bit kernel
                cannot run (names the layer).
        """
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
            group_size=config.weight_group_size,
            log2_bits=config.log2_bits,
        )
        q.layer_name = name or q.layer_name
        q._set_weight(mod.weight, *(weight_qparams or (None, None)))
        q._check_kernel(name)
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
            **self._quant_spec(),
        }
