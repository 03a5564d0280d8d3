"""LayerNorm on lowbit's float32 kernel inside torch models. Public torch layer (lowbit.nn).

Between a quantized transformer's int8 layers, torch's LayerNorm is one of the larger float ops
left (MiniLM, batch 8 x 128 tokens, 2 threads: 13 calls, ~2.4 ms of a ~35 ms forward, most of it
in cache misses on its fresh results). :class:`LayerNorm` is ``nn.LayerNorm`` with the same
parameters and state dict whose eager CPU float32 inference calls run lowbit's kernel
(``lowbit/norm.hpp``: two passes over each row while it is in L1, results from lowbit's recycled
buffers; under torch.compile / torch.export the same kernel as the op ``lowbit::layer_norm``, so
compiled and eager agree bit for bit); every other call (autograd, other dtypes or devices, jit
tracing, ONNX export) runs torch's ``F.layer_norm``. :func:`use_lowbit_layernorm_` switches a model's ``nn.LayerNorm``
modules to it in place (a class change: parameters, hooks and names stay); ``quantize_model`` and
``load`` apply it, :func:`use_torch_layernorm_` undoes it.

Values: float32 sums in the kernel's lane order (within a few ulps of torch's, not bit-identical;
torch's own CPU kernels differ from each other as much).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import _core
from ._common import rows_kernel

__all__ = ["LayerNorm", "use_lowbit_layernorm_", "use_torch_layernorm_"]


def _kernel_takes(m: nn.LayerNorm) -> bool:
    """True when the kernel takes the module's weight and bias (float32 on the CPU, or None)."""
    return all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu") for t in (m.weight, m.bias))


def _params(m: nn.LayerNorm) -> Optional[tuple]:
    """(weight, bias) as NumPy arrays (or None each) for the kernel, or None when it cannot take
    them; cached until a parameter is replaced or modified in place."""
    w, b = m.weight, m.bias
    key = tuple(None if t is None else (id(t), t._version) for t in (w, b))
    hit = m.__dict__.get("_lowbit_params")
    if hit is None or hit[0] != key:
        arrays = tuple(None if t is None else t.detach().numpy() for t in (w, b)) if _kernel_takes(m) else None
        hit = (key, arrays)
        m.__dict__["_lowbit_params"] = hit
    return hit[1]


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last axis on lowbit's kernel for CPU float32 inference (see the
    module docstring); made by :func:`use_lowbit_layernorm_` from existing modules.

    Example:
        >>> ln = torch.nn.LayerNorm(8)
        >>> x = torch.randn(3, 8)
        >>> lowbit.nn.use_lowbit_layernorm_(torch.nn.Sequential(ln))
        ['0']
        >>> with torch.no_grad():
        ...     bool(torch.allclose(ln(x), torch.nn.functional.layer_norm(x, (8,), ln.weight, ln.bias), atol=1e-5))
        True
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (x.dtype == torch.float32 and x.device.type == "cpu" and x.dim() > 0
                and x.shape[-1] == self.normalized_shape[0]
                and not (torch.is_grad_enabled() and (x.requires_grad or self._grad_params()))
                and not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())):
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        if torch.compiler.is_compiling():  # the same kernel as an op (compile / export see one node)
            if _kernel_takes(self):
                return torch.ops.lowbit.layer_norm(x, self.weight, self.bias, self.eps)
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        params = _params(self)
        if params is None:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        w, b = params
        return rows_kernel(x, lambda a: _core.layer_norm(a, w, b, self.eps))

    def _grad_params(self) -> bool:
        return any(p.requires_grad for p in self.parameters(recurse=False))


def use_lowbit_layernorm_(model: nn.Module) -> list[str]:
    """Switches every plain ``nn.LayerNorm`` over one axis in ``model`` to :class:`LayerNorm`, in
    place; returns their names. Subclasses of nn.LayerNorm (their own forward) are left alone."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    done = []
    for name, m in model.named_modules():
        if type(m) is nn.LayerNorm and len(m.normalized_shape) == 1:
            m.__class__ = LayerNorm
            done.append(name)
    return done


def use_torch_layernorm_(model: nn.Module) -> list[str]:
    """Undoes :func:`use_lowbit_layernorm_` in place; returns the names."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    done = []
    for name, m in model.named_modules():
        if type(m) is LayerNorm:
            m.__class__ = nn.LayerNorm
            done.append(name)
    return done
