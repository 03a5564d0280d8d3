"""QuantLinear: an nn.Linear with quantized weights (int8, int4, uint4, nf4, fp16, bf16, log2,
ternary, binary) run by lowbit's kernels.

Public torch layer; the math runs in lowbit.linear through the lowbit::linear_int8 (int8 kernels)
and lowbit::linear_4bit (fused 4-bit kernel) ops, or lowbit::dequantize_weight + a float matmul.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import QuantConfig
from ..core.linear_4bit import prepare_linear_4bit
from ..core.matmul import prepare_linear
from ..interop import _torch_ops
from ._common import buffer_guards, check_input, guards_hold, linear_shape, rotate_input, unrotate_rows
from ._formats import empty_buffers, quantize_buffers, to_tensor
from .fused import note_result

__all__ = ["DequantizedWeight", "QuantLinear"]

# Prepared eager CPU calls per module: (buffer versions and addresses, call). Kept outside the
# module so state_dict, pickling and deepcopy never see it.
_EAGER: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

class DequantizedWeight(torch.Tensor):
    """A quantized layer's ``weight``: the float32 tensor its kernels effectively multiply with
    (:meth:`_QuantBase.dequantized_weight`, in the float module's layout), as metadata for free
    (shape, dtype float32, device: what models read, e.g. T5's ``self.wo.weight.dtype`` and ViT's
    ``projection.weight.dtype`` in their forward) and dequantized from the stored weight when a
    torch op or :meth:`numpy` uses it (each time: no float copy is kept). Not a Parameter and not in
    the state dict.

    Example:
        >>> q = lowbit.nn.QuantLinear.from_float(torch.nn.Linear(16, 4))
        >>> q.weight.shape, q.weight.dtype
        (torch.Size([4, 16]), torch.float32)
        >>> bool(torch.equal(q.weight * 1, q.dequantized_weight()))
        True
    """

    @staticmethod
    def __new__(cls, layer: nn.Module, shape: tuple[int, ...], device: torch.device,
                dtype: torch.dtype = torch.float32) -> DequantizedWeight:
        t = torch.Tensor._make_wrapper_subclass(cls, shape, dtype=dtype, device=device, requires_grad=False)
        t._layer = layer
        return t

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        # An override (not torch's disabled one), so that torch.overrides.has_torch_function is True:
        # nn.TransformerEncoderLayer / nn.MultiheadAttention then skip their fused float "fast path",
        # which would otherwise run the dequantized weights in float under no_grad and bypass the
        # quantized kernels. The results are plain tensors (__torch_dispatch__ materializes).
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        def real(a: Any) -> Any:
            return a.materialize() if isinstance(a, DequantizedWeight) else a

        return func(*torch.utils._pytree.tree_map(real, args), **torch.utils._pytree.tree_map(real, kwargs or {}))

    def materialize(self) -> torch.Tensor:
        """The dequantized float32 weight as an ordinary tensor."""
        with torch.no_grad():
            return self._layer.dequantized_weight().reshape(self.shape).to(self.dtype)

    def numpy(self, *, force: bool = False) -> np.ndarray:  # noqa: ARG002
        return self.materialize().numpy()

    def __repr__(self, *, tensor_contents: Any = None) -> str:  # noqa: ARG002
        return f"DequantizedWeight of {type(self._layer).__name__}: {self.materialize()!r}"


def plain_weight(layer: nn.Module) -> torch.Tensor:
    """``layer.weight`` as an ordinary tensor: a quantized layer's :class:`DequantizedWeight`
    materialized, a float layer's Parameter as it is."""
    w = layer.weight
    return w.materialize() if isinstance(w, DequantizedWeight) else w


class _NoBackward(torch.autograd.Function):
    """Marks the output of a kernel that quantizes activations as depending on its input, so that
    a backward pass reaches it and raises an error that points to QAT (instead of torch's generic
    'does not require grad')."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:  # noqa: ARG004
        ctx.name = name
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple:
        raise RuntimeError(
            f"layer '{ctx.name}': lowbit's quantized inference layers have no backward (their kernels quantize the "
            "activations). To train with quantization, use lowbit.prepare_qat(model, config), train, then "
            "lowbit.convert(model); for weight-only layers use activation='float'.")


class _QuantBase(nn.Module):
    """Buffers and the quantized matmul shared by QuantLinear and QuantConv2d.

    The weight is stored in its scheme's compact form (:meth:`lowbit.schemes.WeightScheme.storage_spec`;
    K = in_flat, G = ceil(K / group_size)):

    - int8: ``weight_int8`` int8 (out, K), ``weight_scale`` float32 (out,), ``weight_zero_point``
      int32 (out,).
    - int4 / uint4 per channel or tensor: ``weight_packed`` uint8 (out, ceil(K / 2)) (two 4-bit
      values per byte, low nibble first), ``weight_scale`` (out,), ``weight_zero_point`` (out,).
    - int4 groups (symmetric) and nf4: ``weight_packed`` (out, ceil(K / 2)), ``weight_scale``
      float32 (out, G); asymmetric int4 / uint4 groups add ``weight_zero_point`` int32 (out, G).
    - fp16 / bf16: ``weight_fp16`` float16 / ``weight_bf16`` bfloat16 (out, K).
    - log2 / ternary / binary: ``weight_codes`` uint8 and ``weight_scale`` float32 (out,) or ().
    - ``bias`` float32 (out,) or None; static activations: ``act_scale`` float32 (),
      ``act_zero_point`` int32 ().

    Attributes:
        scheme: the :class:`~lowbit.schemes.WeightScheme`. activation: the
            :class:`~lowbit.schemes.ActivationScheme` the layer runs. kernel: "linear_int8",
            "linear_4bit" or "dequantize".
    """

    def _init_quant(self, out_features: int, in_flat: int, bias: bool, config: QuantConfig) -> None:
        self.scheme = config.weight
        self.activation = config.activation
        # a plain string for the ops (torch.compile traces no json); double-quantized nf4 passes its
        # decoded float32 block scales, so the ops see plain nf4
        plain = dataclasses.replace(self.scheme, double_quant=False) if getattr(self.scheme, "double_quant", False) \
            else self.scheme
        self._scheme_key = plain.key
        self.in_flat = int(in_flat)
        self.out_flat = int(out_features)
        self.layer_name = type(self).__name__
        for name, t in empty_buffers(self.scheme, out_features, in_flat).items():
            self.register_buffer(name, t)
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32) if bias else None)
        if self.activation.calibrated:
            self.register_buffer("act_scale", torch.ones((), dtype=torch.float32))
            self.register_buffer("act_zero_point", torch.zeros((), dtype=torch.int32))
        else:
            self.act_scale = None
            self.act_zero_point = None

    @property
    def kernel(self) -> str:
        """ "linear_int8" (the int8 GEMM), "linear_4bit" (the fused 4-bit kernel) or "dequantize"
        (lowbit dequantizes the weight, then a float matmul)."""
        return self.scheme.kernel(self.activation)

    @property
    def weight(self) -> DequantizedWeight:
        """The float32 weight in the float module's layout, dequantized when used (see
        :class:`DequantizedWeight`); models that read ``layer.weight.dtype`` or ``.device`` run."""
        return DequantizedWeight(self, self._weight_shape(), getattr(self, self.scheme.data_name).device)

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_flat, self.in_flat)

    @property
    def weight_dtype(self) -> str:
        """The weight format's name ("int8", "nf4", ...)."""
        return self.scheme.name

    @property
    def group_size(self) -> Optional[int]:
        return self.scheme.group_size

    @property
    def activation_dtype(self) -> str:
        return getattr(self.activation, "dtype", "uint8")

    @property
    def granularity(self) -> str:
        """The weight scheme's scale granularity ("per_channel" or "per_tensor")."""
        return getattr(self.scheme, "granularity", "per_channel")

    @property
    def symmetric_weights(self) -> bool:
        return getattr(self.scheme, "symmetric", True)

    @property
    def log2_bits(self) -> int:
        return getattr(self.scheme, "bits", 4)

    @property
    def weight_bits(self) -> int:
        """Bits per stored weight code (4 for int4/uint4/nf4, ...), scales not included."""
        return self.scheme.code_bits

    @property
    def weight_granularity(self) -> str:
        """ "per_channel", "per_tensor", "per_group", "per_block" (nf4) or "elementwise"."""
        return self.scheme.granularity_label

    def _stored_buffers(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self.scheme.storage_spec(self.out_flat, self.in_flat)}

    def _set_weight(self, w: torch.Tensor, scale: Optional[torch.Tensor] = None, zp: Optional[torch.Tensor] = None) -> None:
        new = quantize_buffers(self.scheme, w, scale, zp)
        with torch.no_grad():
            for name, t in new.items():
                buf = getattr(self, name)
                buf.copy_(t.reshape(buf.shape).to(buf.dtype))

    def _set_stored(self, stored: dict[str, Any]) -> None:
        """Copies a weight scheme's stored arrays (NumPy, e.g. from GPTQ) into the buffers."""
        spec = self.scheme.storage_spec(self.out_flat, self.in_flat)
        with torch.no_grad():
            for name, a in stored.items():
                getattr(self, name).copy_(to_tensor(a, spec[name][1]).reshape(spec[name][0]))

    def _set_act(self, scale: Any, zero_point: Any) -> None:
        with torch.no_grad():
            self.act_scale.fill_(float(scale))
            self.act_zero_point.fill_(int(zero_point))

    def _scale(self) -> Optional[torch.Tensor]:
        """The weight scales the kernels read: the ``weight_scale`` buffer, or for double-quantized
        nf4 the block scales decoded from their int8 codes (``codes * scale[i // 256] + offset``
        in float32, bit-identical to :meth:`lowbit.schemes.NF4Weights.block_scales`)."""
        codes = self._buffers.get("weight_scale_codes")
        if codes is None:
            return getattr(self, "weight_scale", None)
        s = self.weight_scale_scale.repeat_interleave(256)[: codes.numel()].reshape(codes.shape)
        return codes.to(torch.float32) * s + self.weight_scale_offset

    def _weight_matrix(self) -> torch.Tensor:
        """The float32 (out, in_flat) weight the kernels effectively use (lowbit::dequantize_weight)."""
        return torch.ops.lowbit.dequantize_weight(
            getattr(self, self.scheme.data_name),
            self._scale(),
            getattr(self, "weight_zero_point", None),
            self._scheme_key,
            self.out_flat,
            self.in_flat,
        )

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the kernels effectively use, shape (out, in_flat); for a layer with
        rotated inputs, the weight on its unrotated inputs (``Q R^T``: ``F.linear(x, w)`` gives the
        layer's output)."""
        w = self._weight_matrix()
        block = getattr(self, "rotation_block", 0)
        return unrotate_rows(w, self.rotation_signs, block) if block else w

    def _init_rotation(self, block: Optional[int]) -> None:
        """``rotation_block`` (0: none) and, when rotated, the ``rotation_signs`` buffer (in_flat,)."""
        self.rotation_block = int(block or 0)
        if self.rotation_block:
            if self.rotation_block & (self.rotation_block - 1) or self.in_flat % self.rotation_block:
                raise ValueError(f"rotation_block: expected a power of two dividing {self.in_flat}, got {block}")
            self.register_buffer("rotation_signs", torch.ones(self.in_flat, dtype=torch.float32))

    def set_rotation(self, signs: Any, block: int) -> None:
        """Makes the layer rotate its inputs (:mod:`lowbit.core.rotation`) with ``signs`` (in_flat,)
        and ``block``; the stored weight must already be the rotated one (``W R``)."""
        self._init_rotation(block)
        with torch.no_grad():
            self.rotation_signs.copy_(torch.as_tensor(np.asarray(signs, np.float32)))

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            sparse = self.__dict__.get("_lowbit_sparse")  # lowbit.sparse_storage: codes stored as mask + values
            if sparse is not None and name == sparse["data"]:
                from ..compress.sparse import dense_codes

                return dense_codes(self)
            if name == "weight_int8" and self.scheme.name == "int4" and self.scheme.group_size is None:
                return _torch_ops.unpack_nibbles(self.weight_packed, self.in_flat, signed=True)
            raise

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        # Files written before per-channel int4 was packed hold int8 ``weight_int8`` values.
        old = prefix + "weight_int8"
        if old in state_dict and "weight_packed" in self._buffers and self.scheme.name == "int4":
            state_dict[prefix + "weight_packed"] = _torch_ops.pack_nibbles(state_dict.pop(old))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def nbytes(self) -> int:
        """Bytes of the quantized layer's tensors (weights as stored, e.g. 4-bit codes at half a
        byte each, scales, zero points, bias, activation parameters)."""
        return sum(b.numel() * b.element_size() for b in self.buffers(recurse=False))

    def _no_backward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            return _NoBackward.apply(y, x, self.layer_name)
        return y

    def _rows(self, t: Optional[torch.Tensor], rows: Optional[tuple[int, int]]) -> Optional[torch.Tensor]:
        """``t`` restricted to the output rows [lo, hi) (a grouped convolution's group), or ``t``."""
        if rows is None or t is None or t.dim() == 0 or t.shape[0] != self.out_flat:
            return t
        return t[rows[0] : rows[1]]

    def _matmul(self, x: torch.Tensor, rows: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """(..., in_flat) float32 -> (..., out) float32; with ``rows`` = (lo, hi) only the weight's
        output rows lo..hi-1 (one group of a grouped convolution)."""
        kernel = self.kernel
        n_out = self.out_flat if rows is None else rows[1] - rows[0]
        if kernel == "dequantize":
            b = None if self.bias is None else self._rows(self.bias, rows).to(x.dtype)
            w = self._rows(self._weight_matrix(), rows)
            return F.linear(x, w.to(device=x.device, dtype=x.dtype), b)
        quantized = self.activation.quantized
        x_in = x
        if kernel == "linear_4bit":
            if quantized:
                x = x.detach()  # as the int8 kernels: no backward through quantized activations
            if x.numel() == 0:
                return x.new_zeros((*x.shape[:-1], n_out))
            eager = (x.device.type == "cpu" and not torch.compiler.is_compiling()
                     and not (x.requires_grad and torch.is_grad_enabled()))
            if eager:
                y = self._eager(x, rows)
            else:
                y = torch.ops.lowbit.linear_4bit(x, self._rows(self.weight_packed, rows),
                                                 self._rows(self._scale(), rows), self._rows(self.bias, rows),
                                                 self.weight_dtype, self.group_size, "int8" if quantized else "float")
            return self._no_backward(y, x_in) if quantized else y
        x = x.detach()  # the int8 kernels have no backward
        if x.numel() == 0:
            return x.new_zeros((*x.shape[:-1], n_out))
        # Eager CPU calls the kernel directly (skips the dispatcher; same code as the op).
        if x.device.type == "cpu" and not torch.compiler.is_compiling():
            y = self._eager(x, rows)
        else:
            y = torch.ops.lowbit.linear_int8(
                x,
                self._rows(getattr(self, self.scheme.data_name), rows),
                self._rows(self.weight_scale, rows),
                self._rows(self.weight_zero_point, rows),
                self._rows(self.bias, rows),
                self.act_scale,
                self.act_zero_point,
                self.activation.name,
                self.activation_dtype,
            )
        return self._no_backward(y, x_in)

    def _eager(self, x: torch.Tensor, rows: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Eager CPU forward: the kernel call prepared once per module (and per group ``rows``:
        packed weight, bias and activation parameters validated and bound) and rebuilt when any
        buffer is replaced or modified in place. Same numerics as the ops; saves the per-call
        Python work that dominates small layers."""
        call = self._prepared(x.shape[-1], rows)
        flat = x.dim() == 2  # the common case: no reshapes (each costs ~0.7 us on small layers)
        x2 = x if flat else x.reshape(-1, x.shape[-1])
        if not x2.is_contiguous():
            x2 = x2.contiguous()
        y = torch.from_numpy(call(x2.numpy()))
        return y if flat else y.reshape(*x.shape[:-1], y.shape[1])

    def _prepared(self, k: int, rows: Optional[tuple[int, int]] = None) -> Any:
        """The eager kernel call for inputs of k features (and group ``rows``), prepared once and
        rebuilt when any buffer is replaced or modified in place."""
        hit = _EAGER.get(self)
        if hit is None or not guards_hold(self, hit[0]):
            hit = (buffer_guards(self), {})
            _EAGER[self] = hit
        call = hit[1].get(rows)
        if call is None:
            call = hit[1][rows] = self._prepare_eager(k, rows)
        return call

    def _prepare_eager(self, k: int, rows: Optional[tuple[int, int]] = None) -> Any:
        b = None if self.bias is None else _torch_ops.to_numpy(self._rows(self.bias, rows).to(torch.float32))
        rot = (self.rotation_signs.numpy(), self.rotation_block) if self._fuses_rotation(rows) else None
        if self.kernel == "linear_4bit":
            pw = _torch_ops.packed_weight_4bit(self._rows(self.weight_packed, rows), self._rows(self._scale(), rows),
                                               self.weight_dtype, self.group_size, k)
            return prepare_linear_4bit(pw, b, activation="dynamic" if self.activation.quantized else "float",
                                       rotation=rot)
        w_q = self._rows(getattr(self, self.scheme.data_name), rows)
        packed = _torch_ops.packed_weight(w_q, self._rows(self.weight_scale, rows),
                                          self._rows(self.weight_zero_point, rows), k)
        if self.activation.calibrated:
            return prepare_linear(packed, b, activation="static", activation_scale=float(self.act_scale),
                                  activation_zero_point=int(self.act_zero_point),
                                  activation_dtype=self.activation_dtype, rotation=rot)
        return prepare_linear(packed, b, activation=self.activation.name, rotation=rot)

    def _fuses_rotation(self, rows: Optional[tuple[int, int]] = None) -> bool:
        """True when the eager kernel call rotates the input itself as it quantizes it (a rotated
        QuantLinear on the int8 GEMM or the 4-bit kernel with int8 activations, not compiling);
        otherwise forward rotates it first."""
        kernel = self.kernel
        return (getattr(self, "rotation_block", 0) > 0 and rows is None and not torch.compiler.is_compiling()
                and (kernel == "linear_int8" or (kernel == "linear_4bit" and self.activation.quantized)))

    def _fill(self, weight: torch.Tensor, bias: Optional[torch.Tensor], act_qparams: Any, weight_qparams: Any,
              name: str) -> Any:
        """Quantizes ``weight`` (out, ...) into the buffers, copies ``bias``, sets static
        activation parameters and checks that the kernel runs; returns self."""
        self.layer_name = name or self.layer_name
        self._set_weight(weight, *(weight_qparams or (None, None)))
        if bias is not None:
            with torch.no_grad():
                self.bias.copy_(bias.detach().to("cpu", torch.float32))
        if self.activation.calibrated:
            if act_qparams is None:
                raise ValueError(f"{self.layer_name}: static activations need act_qparams (scale, zero_point)")
            self._set_act(*act_qparams)
        self._check_kernel(name)
        return self

    def _check_kernel(self, name: str) -> None:
        """Raises ValueError (naming the layer) when the kernel rejects this layer's shape: a
        one-row product with the stored weight is tried once (its packed form stays cached)."""
        if self.kernel == "dequantize":
            return
        try:
            self._matmul(torch.zeros(1, self.in_flat))
        except ValueError as e:
            raise ValueError(f"{name or self.layer_name}: the {self.kernel} kernel cannot run "
                             f"in_features={self.in_flat} with {self.scheme.describe()}: {e}") from e

    def _quant_extra_repr(self) -> str:
        s = f"weight={self.scheme.describe()}, activation={self.activation.name}"
        if self.activation.calibrated:
            s += f" ({self.activation_dtype}, scale={float(self.act_scale):.4g}, zp={int(self.act_zero_point)})"
        return s

    def _quant_spec(self) -> dict[str, Any]:
        return {"weight": self.scheme.to_dict(), "activation": self.activation.to_dict()}

    def spec(self) -> dict[str, Any]:
        """Constructor arguments as JSON-able data (used by lowbit.save / lowbit.load)."""
        raise NotImplementedError


class QuantLinear(_QuantBase):
    """Drop-in replacement of :class:`torch.nn.Linear` with quantized weights in any weight scheme
    (:class:`lowbit.QuantConfig`'s ``weight`` and ``activation``, objects or shorthands).

    ``forward`` takes float tensors of shape (..., in_features) on any device. On CPU the weight's
    scheme picks the kernel (``kernel``):

    - "linear_int8": int8 and per-channel int4 weights with quantized activations (per row with
      "dynamic", per tensor with "dynamic_per_tensor" or calibrated "static" parameters);
    - "linear_4bit": group-wise int4 (symmetric) and nf4 weights (int8 activations per row and
      group with "dynamic", float32 with "float"), codes decoded in registers;
    - "dequantize": every weight-only case (float activations): lowbit dequantizes the weight into
      a temporary float32 matrix and runs ``F.linear``.

    Other devices run torch references with the same math. float16/bfloat16/float64 inputs are
    computed in float32 and cast back. Layers that quantize activations have no backward (a
    backward pass raises an error pointing to :func:`lowbit.prepare_qat`); weight-only layers
    pass gradients to their input.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(16, 4)
        >>> q = lowbit.nn.QuantLinear.from_float(lin)
        >>> x = torch.randn(2, 16)
        >>> bool((q(x) - lin(x)).abs().max() < 0.05)
        True
        >>> q4 = lowbit.nn.QuantLinear.from_float(torch.nn.Linear(64, 4), lowbit.QuantConfig(weight="nf4"))
        >>> q4, q4.weight_packed.shape, q4.weight_scale.shape
        (QuantLinear(in_features=64, out_features=4, bias=True, weight=nf4 weights block 64, activation=dynamic), torch.Size([4, 32]), torch.Size([4, 1]))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        weight: Any = "int8",
        activation: Any = "auto",
        rotation_block: Optional[int] = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self._init_quant(out_features, in_features, bias, QuantConfig(weight, activation, **options))
        self._init_rotation(rotation_block)

    @classmethod
    def from_float(
        cls,
        mod: nn.Module,
        config: Optional[QuantConfig] = None,
        *,
        act_qparams: Optional[tuple[float, int]] = None,
        weight_qparams: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
        name: str = "",
    ) -> QuantLinear:
        """Quantizes an ``nn.Linear`` or a transformers ``Conv1D`` (GPT-2's Linear with a
        transposed (in, out) weight: the layer stores ``weight.t()`` and computes the same
        ``x @ weight + bias``); ``act_qparams`` (scale, zero_point) are required for static
        activations, ``weight_qparams`` override the weight's own range (QAT).

        Raises:
            ValueError: static activations without ``act_qparams``, or a shape the kernel cannot
                run (names the layer).
        """
        config = config or QuantConfig()
        in_features, out_features, weight = linear_shape(mod)
        q = cls(in_features, out_features, mod.bias is not None, weight=config.weight, activation=config.activation)
        return q._fill(weight, mod.bias, act_qparams, weight_qparams, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = check_input(x, self.layer_name)
        if xf.dim() == 0 or xf.shape[-1] != self.in_features:
            raise ValueError(
                f"{self.layer_name}: expected input with last dimension {self.in_features}, got shape {tuple(x.shape)}"
            )
        if self.rotation_block and not (xf.device.type == "cpu" and self._fuses_rotation()):
            xf = rotate_input(xf, self.rotation_signs, self.rotation_block)  # the stored weight is W R
        group = self.__dict__.get("_siblings")  # see lowbit.nn.siblings
        y = None if group is None else group.take(self, xf)
        if y is None:
            y = self._matmul(xf)
        y = y if y.dtype == x.dtype else y.to(x.dtype)
        if "_fused_parent" in self.__dict__ and not torch.compiler.is_compiling():  # see lowbit.nn.fused
            note_result(self, y)
        return y

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, " + self._quant_extra_repr()
            + (f", rotation=hadamard block {self.rotation_block}" if self.rotation_block else "")
        )

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "QuantLinear",
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            **self._quant_spec(),
            **({"rotation_block": self.rotation_block} if self.rotation_block else {}),
        }
