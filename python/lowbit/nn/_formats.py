"""How lowbit.nn's quantized layers store their weight, per weight format: the buffers, the
quantization of a float weight into them, and which kernel runs the layer. Private; imports torch.

Every layout keeps the weight in its compact form (4-bit codes two per byte, 2-bit codes four per
byte, ...), so ``state_dict`` and the files of :func:`lowbit.save` hold exactly that many bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

import lowbit

from .._torch_ops import pack_nibbles
from ..config import _CODE_BITS, QuantConfig
from ._common import quantize_weight

__all__ = ["WeightLayout"]

_FLOAT_FORMATS = ("fp16", "bf16")
_CODE_FORMATS = ("log2", "ternary", "binary")


@dataclass(frozen=True)
class WeightLayout:
    """A layer's weight format, resolved from its :class:`lowbit.QuantConfig`.

    Attributes:
        dtype: the config's ``weight``. granularity / symmetric: the config's. group_size: the
            resolved group size (64 for nf4 by default) or None. log2_bits: code bits of log2.
        activation: the activation mode the layer runs (None for the weight-only formats).
    """

    dtype: str
    granularity: str
    symmetric: bool
    group_size: Optional[int]
    log2_bits: int
    activation: Optional[str]

    @classmethod
    def from_config(cls, cfg: QuantConfig) -> WeightLayout:
        return cls(cfg.weight, cfg.granularity, cfg.symmetric_weights, cfg.weight_group_size,
                   cfg.log2_bits, cfg.effective_activation)

    @property
    def kernel(self) -> str:
        """ "int8": lowbit's int8 kernels (activations quantized); "4bit": the fused 4-bit kernel
        (group-wise symmetric int4, nf4); "float": dequantize, then a float matmul."""
        if self.dtype == "nf4" or (self.dtype == "int4" and self.group_size is not None and self.symmetric):
            return "4bit"
        if self.dtype in ("int8", "int4") and self.group_size is None and self.activation is not None:
            return "int8"
        return "float"

    @property
    def code_bits(self) -> int:
        """Bits per stored code (scales not included)."""
        return self.log2_bits if self.dtype == "log2" else _CODE_BITS[self.dtype]

    @property
    def data_buffer(self) -> str:
        """Name of the buffer holding the codes."""
        if self.dtype == "int8":
            return "weight_int8"
        if self.dtype in ("int4", "uint4", "nf4"):
            return "weight_packed"
        if self.dtype in _FLOAT_FORMATS:
            return f"weight_{self.dtype}"
        return "weight_codes"

    @property
    def has_zero_point(self) -> bool:
        return self.dtype in ("int8", "int4", "uint4") and self.kernel != "4bit"

    @property
    def granularity_label(self) -> str:
        """ "per_channel", "per_tensor", "per_group" (int4/uint4 groups), "per_block" (nf4) or
        "elementwise" (fp16/bf16, no scales)."""
        if self.dtype in _FLOAT_FORMATS:
            return "elementwise"
        if self.group_size is not None:
            return "per_block" if self.dtype == "nf4" else "per_group"
        return self.granularity

    def describe(self) -> str:
        """E.g. "int4 weights group 64", "nf4 weights block 64", "log2 (4-bit) weights per_channel"."""
        name = f"log2 ({self.log2_bits}-bit)" if self.dtype == "log2" else self.dtype
        if self.dtype in _FLOAT_FORMATS:
            return f"{name} weights"
        if self.group_size is not None:
            return f"{name} weights {'block' if self.dtype == 'nf4' else 'group'} {self.group_size}"
        return f"{name} weights {self.granularity}"

    # -- buffers -------------------------------------------------------------------------------

    def empty_buffers(self, n: int, k: int) -> dict[str, torch.Tensor]:
        """The weight buffers of an (n, k) weight, zero weights (scales 1)."""
        half = (k + 1) // 2
        d = self.dtype
        if d in _FLOAT_FORMATS:
            return {self.data_buffer: torch.zeros(n, k, dtype=torch.float16 if d == "fp16" else torch.bfloat16)}
        if d in _CODE_FORMATS:
            size = {"log2": (n, half if self.log2_bits == 4 else k), "ternary": (-(-n * k // 4),),
                    "binary": (-(-n * k // 8),)}[d]
            s = torch.ones(n) if self.granularity == "per_channel" else torch.ones(())
            return {"weight_codes": torch.zeros(size, dtype=torch.uint8), "weight_scale": s}
        codes = torch.zeros(n, k, dtype=torch.int8) if d == "int8" else torch.zeros(n, half, dtype=torch.uint8)
        scale_shape = (n,) if self.group_size is None else (n, -(-k // self.group_size))
        out = {self.data_buffer: codes, "weight_scale": torch.ones(scale_shape)}
        if self.has_zero_point:
            out["weight_zero_point"] = torch.zeros(scale_shape, dtype=torch.int32)
        return out

    def quantize(
        self,
        w: torch.Tensor,
        scale: Optional[torch.Tensor] = None,
        zero_point: Optional[torch.Tensor] = None,
    ) -> dict[str, torch.Tensor]:
        """Quantizes a float weight (n, k) (any device/dtype) with lowbit's kernels into the
        buffers of :meth:`empty_buffers`. ``scale``/``zero_point`` (per channel) are used as
        given (QAT); only the per-channel int8/int4 layouts take them.

        Scales: int8/int4 per channel or tensor ``max|w| / qmax`` with qmax 127 / 7 (the int8
        kernels' symmetric range); group-wise int4 ``max|w| / 7.5`` per group (as
        :func:`lowbit.pack_weight`); uint4 and asymmetric groups :func:`lowbit.choose_qparams`;
        nf4 the absmax of each block of ``group_size`` inputs of a row; log2 / ternary / binary
        :func:`lowbit.quantize`'s defaults per output channel (or per tensor). A last group of a
        row shorter than ``group_size`` has its own scale.
        """
        d = self.dtype
        w2 = w.detach().to("cpu", torch.float32).reshape(w.shape[0], -1).contiguous()
        n, k = w2.shape
        if d in ("int8", "int4") and self.group_size is None:
            q, s, z = quantize_weight(w2, d, per_channel=self.granularity == "per_channel",
                                      symmetric=self.symmetric, scale=scale, zero_point=zero_point)
            return {self.data_buffer: q if d == "int8" else pack_nibbles(q), "weight_scale": s,
                    "weight_zero_point": z}
        if scale is not None or zero_point is not None:
            raise ValueError(f"weight_qparams: {self.describe()} do not take given scales "
                             "(only per-channel int8/int4 weights do, for QAT)")
        if w2.numel() == 0:
            return self.empty_buffers(n, k)
        a = w2.numpy()
        if d in _FLOAT_FORMATS:
            data = torch.from_numpy(lowbit.quantize(a, dtype=d).data)
            return {self.data_buffer: data if d == "fp16" else data.view(torch.int16).view(torch.bfloat16)}
        if d in _CODE_FORMATS:
            opts = {"bits": self.log2_bits} if d == "log2" else {}
            q = lowbit.quantize(a, dtype=d, per_channel=self.granularity == "per_channel", **opts)
            return {"weight_codes": torch.from_numpy(np.ascontiguousarray(q.data)),
                    "weight_scale": torch.as_tensor(np.asarray(q.scale, np.float32)).reshape(
                        (n,) if self.granularity == "per_channel" else ())}
        if d == "nf4":
            return self._quantize_nf4(a)
        if self.group_size is None:  # uint4 per channel / per tensor
            lo, hi = (a.min(axis=1), a.max(axis=1)) if self.granularity == "per_channel" else (
                np.full(n, a.min(), np.float32), np.full(n, a.max(), np.float32))
            return self._affine(a, lo, hi, {"axis": 0})
        starts = np.arange(0, k, self.group_size)
        if self.kernel == "4bit":  # symmetric int4 groups, as lowbit.pack_weight computes them
            m = np.maximum.reduceat(np.abs(a), starts, axis=1)
            s, _ = lowbit.choose_qparams(-m, m, dtype="int4", symmetric=True)
            q = lowbit.quantize(a, s, 0, dtype="int4", group_size=self.group_size)
            return {"weight_packed": torch.from_numpy(q.data.view(np.uint8)), "weight_scale": torch.from_numpy(s)}
        lo = np.minimum.reduceat(a, starts, axis=1)
        hi = np.maximum.reduceat(a, starts, axis=1)
        return self._affine(a, lo, hi, {"group_size": self.group_size})

    def _affine(self, a: np.ndarray, lo: np.ndarray, hi: np.ndarray, where: dict) -> dict[str, torch.Tensor]:
        s, z = lowbit.choose_qparams(lo, hi, dtype=self.dtype, symmetric=self.symmetric)
        q = lowbit.quantize(a, s, z, dtype=self.dtype, **where)
        return {"weight_packed": torch.from_numpy(np.ascontiguousarray(q.data).view(np.uint8)),
                "weight_scale": torch.from_numpy(s), "weight_zero_point": torch.from_numpy(z)}

    def _quantize_nf4(self, a: np.ndarray) -> dict[str, torch.Tensor]:
        n, k = a.shape
        g = self.group_size
        groups = -(-k // g)
        if groups * g != k:  # zero-pad each row to whole blocks: a pad never raises a block's absmax
            a = np.concatenate([a, np.zeros((n, groups * g - k), np.float32)], axis=1)
        q = lowbit.quantize(a, dtype="nf4", block_size=g)
        codes = torch.from_numpy(np.ascontiguousarray(q.int_repr()[:, :k]))
        return {"weight_packed": pack_nibbles(codes),
                "weight_scale": torch.from_numpy(np.asarray(q.scale, np.float32).reshape(n, groups))}
