"""Activations applied in place on a quantized layer's result. Public torch layer (lowbit.nn).

In a transformer FFN, ``act(dense(x))`` allocates a second tensor of the widest activation in the
model for the activation's result; the C allocator hands large blocks back to the kernel, so that
tensor's pages are faulted in again on every call (MiniLM, batch 8: GELU took 1.4 ms per call
instead of 0.4). When a :class:`QuantLinear`'s (or a :class:`lowbit.nn.ConvTranspose`'s) result
feeds only one activation module (found by
tracing the parent module with torch.fx: the layer's output has that activation as its only user),
the activation becomes an :class:`InplaceActivation`: it runs the same ATen function in place on
the layer's fresh result, which lowbit's buffer cache recycles (:func:`lowbit.buffer_cache`). The
values are those of the unfused model bit for bit (the same ATen kernel on the same input).

The in-place form runs only when it is provably safe; otherwise the wrapped module runs as before:
- the input must be the very tensor the producer returned on its last call, unmodified since
  (identity and version counter), within the same forward call of their parent module (forward
  pre-hook / hook on the parent: a layer called on its own, outside that forward, may have its
  result kept by the caller), with no forward hooks on the producer (a hook may keep it);
- eager mode: not while torch.compile / export traces, not with autograd recording, not in
  training mode, not inside :func:`lowbit.nn.unchained` (``lowbit.compare`` reads layer outputs).
Supported activations: ``nn.ReLU``, ``nn.GELU`` (both approximations), ``nn.SiLU``, ``nn.Tanh``,
``nn.Sigmoid`` and transformers' ``GELUActivation`` / ``GELUTanh`` / ``PytorchGELUTanh`` (which
call ``torch.nn.functional.gelu``). Others (e.g. GPT-2's ``NewGELUActivation``, a Python formula
whose rounding differs from ATen's) stay as they are.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._common import stamp, stamped
from .chain import chaining_enabled, use_counts

__all__ = ["InplaceActivation", "activation_kind", "fuse_activations_", "fused_activations", "unfuse_activations_"]


def _gelu_(x: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.gelu_(x)


def _gelu_tanh_(x: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.gelu_(x, approximate="tanh")


def _silu_(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x, inplace=True)


# kind -> the in-place ATen function (module-level functions: a fused model still pickles)
_INPLACE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu_, "gelu": _gelu_, "gelu_tanh": _gelu_tanh_, "silu": _silu_, "tanh": torch.tanh_,
    "sigmoid": torch.sigmoid_}
_PLAIN = {nn.ReLU: "relu", nn.SiLU: "silu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
# producer -> its last result (stamp, parent call id), kept off the module (pickling)
_LAST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def activation_kind(m: nn.Module) -> Optional[str]:
    """The in-place ATen twin of an activation module's forward (a key of _INPLACE), or None."""
    t = type(m)
    if t in _PLAIN:
        return _PLAIN[t]
    if t is nn.GELU:
        return "gelu" if m.approximate == "none" else "gelu_tanh"
    if t.__module__ == "transformers.activations":
        if t.__name__ == "GELUActivation" and getattr(m, "act", None) is F.gelu:
            return "gelu"
        if t.__name__ in ("GELUTanh", "PytorchGELUTanh") and not getattr(m, "use_gelu_tanh_python", False):
            return "gelu_tanh"
    return None


class InplaceActivation(nn.Module):
    """An activation module (``act``) that runs in place on its producer's fresh result when that
    is provably safe (see the module docstring), else ``act(x)``: the same values either way.

    Attributes:
        act: the original module. kind: its in-place ATen twin ("gelu", "relu", ...).
    """

    def __init__(self, act: nn.Module, kind: str) -> None:
        super().__init__()
        self.act = act
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or not chaining_enabled() or self.training:
            return self.act(x)
        producer = self.__dict__.get("_producer")
        last = None if producer is None else _LAST.get(producer)
        if (last is not None and stamped(last[0], x) and last[1] == _call_id(producer.__dict__.get("_fused_parent"))
                and not producer._forward_hooks and not (torch.is_grad_enabled() and x.requires_grad)):
            del _LAST[producer]
            return _INPLACE[self.kind](x)
        return self.act(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, in place on its producer's result"


def note_result(layer: nn.Module, y: torch.Tensor) -> None:
    """Called by a producer on each fresh result: lets its InplaceActivation recognize it, within
    the same call of their parent module (only there is the activation known to be its one user)."""
    call = _call_id(layer.__dict__.get("_fused_parent"))
    if call is None:  # called on its own, outside its parent's forward: the caller may keep it
        _LAST.pop(layer, None)
        return
    _LAST[layer] = (stamp(y), call)


# parent module -> [calls in progress, calls so far] (forward pre-hook / hook below)
_ACTIVE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def call_number(active: weakref.WeakKeyDictionary, parent: Optional[nn.Module]) -> Optional[int]:
    """The number of the parent's forward call in progress (counted in ``active`` by
    :func:`count_enter` / :func:`count_leave`), or None outside one."""
    st = None if parent is None else active.get(parent)
    return st[1] if st is not None and st[0] > 0 else None


def count_enter(active: weakref.WeakKeyDictionary, module: nn.Module) -> None:
    """A forward pre-hook's work: one more call of ``module`` in progress, and a new call number."""
    if torch.compiler.is_compiling():
        return
    st = active.get(module)
    if st is None:
        st = active[module] = [0, 0]
    st[0] += 1
    st[1] += 1


def count_leave(active: weakref.WeakKeyDictionary, module: nn.Module) -> None:
    """A forward hook's work (registered with always_call=True): one call of ``module`` less."""
    if torch.compiler.is_compiling():
        return
    st = active.get(module)
    if st is not None and st[0] > 0:
        st[0] -= 1


def remove_call_hooks(module: nn.Module, enter: Callable, leave: Callable) -> None:
    """Removes the forward pre-hook ``enter`` and the forward hook ``leave`` from ``module``."""
    for hooks, fn in ((module._forward_pre_hooks, enter), (module._forward_hooks, leave)):
        for key in [k for k, h in hooks.items() if h is fn]:
            del hooks[key]
            module._forward_hooks_always_called.pop(key, None)


def _call_id(parent: Optional[nn.Module]) -> Optional[int]:
    return call_number(_ACTIVE, parent)


def _enter(module: nn.Module, args: Any) -> None:  # noqa: ARG001 - forward pre-hook of a fused pair's parent
    count_enter(_ACTIVE, module)


def _leave(module: nn.Module, args: Any, output: Any) -> None:  # noqa: ARG001 - forward hook (always called)
    count_leave(_ACTIVE, module)


class _Leaves(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # noqa: ARG002
        return True


def _pairs(parent: nn.Module) -> list[tuple[str, str]]:
    """(layer, activation) child names of ``parent`` where the QuantLinear's result's only user is
    the activation module, called on it alone; [] when ``parent`` does not trace."""
    from .conv_transpose import ConvTranspose
    from .linear import QuantLinear

    producers = (QuantLinear, ConvTranspose)  # layers whose every result is a fresh tensor
    kids = dict(parent.named_children())
    acts = {n for n, m in kids.items() if activation_kind(m)}
    if not acts or not any(isinstance(m, producers) for m in kids.values()):
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = _Leaves().trace(parent)
    except Exception:  # noqa: BLE001 - any model code fx cannot trace: no fusion there
        return []
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    out = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(kids.get(node.target), producers):
            continue
        users = list(node.users)
        if len(users) != 1:
            continue
        u = users[0]
        if (u.op == "call_module" and u.target in acts and u.args == (node,) and not u.kwargs
                and calls[u.target] == 1 and calls[node.target] == 1):
            out.append((node.target, u.target))
    return out


def fuse_activations_(model: nn.Module) -> list[tuple[str, str]]:
    """Makes the activations that alone consume a :class:`QuantLinear`'s result run in place on it
    (see the module docstring), in place; returns the (layer, activation) names. Calling it again
    re-derives the pairs.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
        >>> lowbit.nn.fused_activations(lowbit.quantize_model(m, progress=False))
        [('0', '1')]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    unfuse_activations_(model)
    counts = use_counts(model)
    done = []
    for name, parent in list(model.named_modules()):
        hooked = False
        for lname, aname in _pairs(parent):
            layer, act = getattr(parent, lname), getattr(parent, aname)
            if counts[id(layer)] != 1 or counts[id(act)] != 1:
                continue  # a shared module: its other uses may keep the result
            wrapper = InplaceActivation(act, activation_kind(act))
            wrapper.train(act.training)
            object.__setattr__(wrapper, "_producer", layer)  # a plain attribute: not a second submodule
            setattr(parent, aname, wrapper)
            object.__setattr__(layer, "_fused_parent", parent)  # also marks the layer as a producer
            if not hooked:  # module-level functions: a fused model still pickles
                parent.register_forward_pre_hook(_enter)
                parent.register_forward_hook(_leave, always_call=True)
                hooked = True
            prefix = f"{name}." if name else ""
            done.append((prefix + lname, prefix + aname))
    return done


def unfuse_activations_(model: nn.Module) -> None:
    """Undoes :func:`fuse_activations_` in place: the original activation modules come back."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    for m in list(model.modules()):
        for cname, c in list(m.named_children()):
            if isinstance(c, InplaceActivation):
                setattr(m, cname, c.act)
        if "_fused_parent" in m.__dict__:
            object.__delattr__(m, "_fused_parent")
        remove_call_hooks(m, _enter, _leave)
        _LAST.pop(m, None)
        _ACTIVE.pop(m, None)


def fused_activations(model: nn.Module) -> list[tuple[str, str]]:
    """The (layer, activation) names of ``model`` whose activation runs in place on the layer's
    result (:func:`fuse_activations_`)."""
    names = {id(m): n for n, m in model.named_modules()}
    return [(names.get(id(m.__dict__["_producer"]), "?"), n) for n, m in model.named_modules()
            if isinstance(m, InplaceActivation) and "_producer" in m.__dict__]
