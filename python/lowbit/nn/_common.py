"""Shared helpers of the lowbit.nn modules: input checks and quantization-parameter math in torch.

Private; imports torch.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
import torch

import lowbit

from ..core.quantize import qrange

__all__ = ["calc_qparams", "check_input", "is_conv1d", "linear_shape", "main_output", "quantize_weight",
           "stamp", "stamped", "symmetric_qmax"]

_EPS = float(np.finfo(np.float32).eps)


def check_input(x: object, layer: str, what: str = "input") -> torch.Tensor:
    """Returns ``x`` as a float32 tensor (converted when it is float16/bfloat16/float64).

    Raises:
        TypeError: ``x`` is not a tensor or not floating point (names the layer).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{layer}: expected a torch.Tensor {what}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{layer}: expected a floating-point {what}, got dtype {x.dtype}")
    return x if x.dtype == torch.float32 else x.to(torch.float32)


def recording_graph() -> bool:
    """True while torch.compile, torch.export, jit tracing or ONNX export records a graph: eager-only
    paths (lowbit's kernels on NumPy views, recycled buffers, data-dependent shapes) step aside."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def is_conv1d(m: object) -> bool:
    """True for transformers' ``Conv1D`` (GPT-2 family): a Linear whose weight is stored transposed,
    (in, nf). Detected by duck typing (type name, ``nf``, a 2-D (in, nf) weight), so lowbit never
    imports transformers."""
    w = getattr(m, "weight", None)
    return (type(m).__name__ == "Conv1D" and isinstance(getattr(m, "nf", None), int)
            and isinstance(w, torch.Tensor) and w.dim() == 2 and w.shape[1] == m.nf)


def linear_shape(m: object) -> tuple[int, int, torch.Tensor]:
    """``(in_features, out_features, weight (out, in))`` of an ``nn.Linear`` or a transformers
    ``Conv1D`` (whose stored weight is transposed: the result is a view of it, no copy)."""
    if is_conv1d(m):
        return int(m.weight.shape[0]), int(m.nf), m.weight.t()
    return int(m.in_features), int(m.out_features), m.weight


def symmetric_qmax(dtype: str) -> int:
    """Largest magnitude of symmetric quantization: 127 for int8, 7 for int4 (range [-qmax, qmax],
    so that the int8 kernels' sign trick never meets -128)."""
    return qrange(dtype)[1]


def calc_qparams(
    min_val: torch.Tensor, max_val: torch.Tensor, dtype: str, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale (float32) and zero point (int32) covering ``[min_val, max_val]`` widened to include 0.

    Symmetric (signed dtypes): ``scale = max(|min|, |max|) / qmax``, zero point 0, the range
    ``[-qmax, qmax]``. Affine: :func:`lowbit.choose_qparams`'s (PyTorch's) formula. Scales never
    fall below float32 eps. Any device, no autograd.
    """
    qmin, qmax = qrange(dtype)
    lo = torch.clamp(min_val.detach().to(torch.float32), max=0.0)
    hi = torch.clamp(max_val.detach().to(torch.float32), min=0.0)
    if symmetric:
        if qmin == 0:
            raise ValueError(f"symmetric quantization needs a signed dtype, got {dtype!r}")
        scale = torch.clamp(torch.maximum(-lo, hi) / float(qmax), min=_EPS)
        zp = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = torch.clamp((hi - lo) / float(qmax - qmin), min=_EPS)
        zp = torch.clamp(qmin - torch.round(lo / scale), qmin, qmax).to(torch.int32)
    return scale, zp


def quantize_weight(
    w: torch.Tensor,
    dtype: str,
    *,
    per_channel: bool = True,
    symmetric: bool = True,
    scale: Optional[torch.Tensor] = None,
    zero_point: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantizes a float weight (out_channels, ...) with lowbit's kernel.

    Returns ``(q, scale, zero_point)``: ``q`` int8 of shape (out_channels, prod(rest)) holding
    values of ``dtype``'s range (4-bit values one per byte here; the layers store them packed two
    per byte, see ``lowbit.nn._formats``), ``scale`` float32 and
    ``zero_point`` int32 of shape (out_channels,). Given ``scale``/``zero_point`` are used as is
    (values clamp to the range, as fake quantization does).
    """
    w2 = w.detach().to("cpu", torch.float32).reshape(w.shape[0], -1).contiguous()
    n = w2.shape[0]
    if scale is None:
        if w2.numel() == 0:
            lo = hi = torch.zeros(n)
        elif per_channel:
            lo, hi = w2.amin(dim=1), w2.amax(dim=1)
        else:
            lo, hi = w2.amin().expand(n), w2.amax().expand(n)
        scale, zero_point = calc_qparams(lo, hi, dtype, symmetric)
    scale = scale.detach().to("cpu", torch.float32).reshape(-1).expand(n).contiguous()
    zero_point = zero_point.detach().to("cpu", torch.int32).reshape(-1).expand(n).contiguous()
    qmin, qmax = qrange(dtype)
    # Quantize at int8 with the 4-bit scale, then clamp: identical to 4-bit rounding (the clamp
    # bounds are integers) and keeps one value per byte for the int8 kernels.
    q = lowbit.quantize(
        w2.numpy(), scale.numpy(), zero_point.numpy().clip(-128, 127), dtype="int8", axis=0
    )
    qi = torch.from_numpy(np.ascontiguousarray(q.int_repr())).clamp_(qmin, qmax)
    return qi, scale, zero_point


def buffer_guards(module: torch.nn.Module) -> tuple:
    """What a prepared kernel call of ``module`` depends on: each buffer with its version and
    address (see :func:`guards_hold`)."""
    return tuple((name, t, t._version, t.data_ptr()) for name, t in module._buffers.items() if t is not None)


def guards_hold(module: torch.nn.Module, guards: tuple) -> bool:
    """True while no buffer of ``module`` was replaced, modified in place or moved since
    :func:`buffer_guards`. Allocates nothing (it runs on every forward call)."""
    buffers = module._buffers
    if len(buffers) != len(guards):
        return False
    for name, t, version, ptr in guards:
        if buffers.get(name) is not t or t._version != version or t.data_ptr() != ptr:
            return False
    return True


def stamp(x: torch.Tensor) -> tuple[Any, Optional[int]]:
    """``x`` remembered without keeping it alive: a weak reference and its version counter (None
    for an inference tensor, which has none and no in-place writer outside inference mode)."""
    return weakref.ref(x), None if x.is_inference() else x._version


def stamped(st: Optional[tuple[Any, Optional[int]]], x: torch.Tensor) -> bool:
    """True when ``x`` is the very tensor :func:`stamp` saw, unmodified since."""
    return st is not None and st[0]() is x and st[1] == (None if x.is_inference() else x._version)


def main_output(out: Any, what: str) -> torch.Tensor:
    """The tensor of a model's output: the tensor itself, ``logits`` / ``last_hidden_state`` of a
    transformers output, or the first tensor of a tuple, list or dict; else TypeError naming ``what``."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("logits", "last_hidden_state"):
        v = getattr(out, key, None)
        if isinstance(v, torch.Tensor):
            return v
    values = out.values() if isinstance(out, Mapping) else out if isinstance(out, (tuple, list)) else ()
    for v in values:
        if isinstance(v, torch.Tensor):
            return v
    raise TypeError(f"{what}: cannot find a tensor in the model output of type {type(out).__name__}")


def rows_kernel(x: torch.Tensor, fn: Any) -> torch.Tensor:
    """``fn`` (a lowbit kernel on a C-contiguous float32 (rows, n) array, returning one of the same
    shape) over the last axis of the CPU float32 tensor ``x``; the result has x's shape."""
    x2 = x.reshape(-1, x.shape[-1])
    if not x2.is_contiguous():
        x2 = x2.contiguous()
    return torch.from_numpy(fn(x2.detach().numpy())).reshape(x.shape)


def _blocks_times_hadamard(x: torch.Tensor, block: int) -> torch.Tensor:
    """Each block of ``block`` values along the last axis times the normalized Hadamard matrix."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < block:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    h = (h / float(np.sqrt(block))).to(device=x.device, dtype=x.dtype)
    return (x.reshape(*x.shape[:-1], x.shape[-1] // block, block) @ h).reshape(x.shape)


def rotate_input(x: torch.Tensor, signs: torch.Tensor, block: int) -> torch.Tensor:
    """``x R`` over the last axis (:func:`lowbit.core.rotation.rotate`): lowbit's Walsh-Hadamard
    kernel for eager CPU float32 inputs without autograd; else a torch matmul with the block's
    Hadamard matrix (differentiable, any device; equal up to float rounding)."""
    eager = (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.compiler.is_compiling()
             and not torch.jit.is_tracing() and not (x.requires_grad and torch.is_grad_enabled()))
    if eager:
        return rows_kernel(x, lambda a: lowbit._core.hadamard(a, signs.numpy(), block))
    return rotate_input_torch(x, signs, block)


def rotate_input_torch(x: torch.Tensor, signs: torch.Tensor, block: int) -> torch.Tensor:
    """:func:`rotate_input` in torch ops only (autograd, other devices, tracing and export)."""
    return _blocks_times_hadamard(x * signs.to(device=x.device, dtype=x.dtype), block)


def unrotate_rows(w: torch.Tensor, signs: torch.Tensor, block: int) -> torch.Tensor:
    """``w R^T`` for rows ``w`` (the inverse rotation: an effective weight on unrotated inputs)."""
    return _blocks_times_hadamard(w, block) * signs.to(w.device, w.dtype)
