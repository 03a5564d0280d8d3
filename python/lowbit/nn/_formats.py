"""The torch side of a weight scheme's stored form: buffers of lowbit.nn's quantized layers.

Private; imports torch. The scheme (:mod:`lowbit.schemes`) owns the stored arrays (names, shapes,
dtypes, quantization, dequantization); this module only converts them to and from tensors, so
every layout keeps the weight in its compact form (4-bit codes two per byte, ...) and
``state_dict`` and the files of :func:`lowbit.save` hold exactly that many bytes.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..core.schemes import WeightScheme
from ..interop._torch_ops import stored_arrays  # noqa: F401  (re-exported)

__all__ = ["empty_buffers", "quantize_buffers", "stored_arrays", "to_tensor"]

_TORCH_DTYPES = {"int8": torch.int8, "uint8": torch.uint8, "int32": torch.int32, "float32": torch.float32,
                 "float16": torch.float16, "bfloat16": torch.bfloat16}


def to_tensor(a: np.ndarray, dtype_name: str) -> torch.Tensor:
    """A stored NumPy array as a tensor of the scheme's dtype (bfloat16 from uint16 bit patterns)."""
    shape = np.shape(a)
    a = np.ascontiguousarray(a)  # (0-d arrays come back 1-d: reshaped below)
    if dtype_name == "bfloat16":
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16).reshape(shape)
    return torch.from_numpy(a.astype(dtype_name, copy=False).copy()).reshape(shape)


def empty_buffers(scheme: WeightScheme, n: int, k: int) -> dict[str, torch.Tensor]:
    """The buffers of an (n, k) weight: zero codes, scales 1."""
    spec = scheme.storage_spec(n, k)
    return {name: to_tensor(a, spec[name][1]) for name, a in scheme.empty_storage(n, k).items()}


def quantize_buffers(
    scheme: WeightScheme, w: torch.Tensor, scale: Optional[torch.Tensor] = None, zero_point: Optional[torch.Tensor] = None
) -> dict[str, torch.Tensor]:
    """Quantizes a float weight (n, ...) (any device/dtype; flattened to (n, k)) with the scheme
    into its buffers. ``scale``/``zero_point`` (per channel) are used as given (QAT)."""
    w2 = w.detach().to("cpu", torch.float32).reshape(w.shape[0], -1).contiguous()
    n, k = w2.shape
    s = None if scale is None else scale.detach().to("cpu", torch.float32).numpy()
    z = None if zero_point is None else zero_point.detach().to("cpu", torch.int32).numpy()
    stored = scheme.quantize(w2.numpy(), s, z)
    spec = scheme.storage_spec(n, k)
    return {name: to_tensor(a, spec[name][1]).reshape(spec[name][0]) for name, a in stored.items()}
