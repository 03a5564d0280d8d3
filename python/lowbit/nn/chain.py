"""uint8 activations between chained static convolutions (static int8 CNNs): which layers chain,
and the switches. Public torch layer (lowbit.nn).

A static :class:`QuantConv2d` whose output feeds only the next static QuantConv2d (inside one
``nn.Sequential``, nested ones flattened, with only Identity (a folded BatchNorm), ReLU, ReLU6 or
Hardtanh between them) writes its output as uint8 bytes in the next layer's input quantization,
and the next layer reads them as its quantized image: no float round trip, 4x less memory
traffic. The bytes are exactly what the unchained model computes: the producer's float result
(the same epilogue), clamped by the activations in between and quantized with the consumer's
formula; as quantization q is monotone, ``q(clamp(y, lo, hi)) == clamp(q(y), q(lo), q(hi))``, so
the activations become a clamp on the bytes. The chained model's outputs equal the unchained
model's bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import Optional

import torch
from torch import nn

__all__ = ["ChainedActivation", "chain_int8_", "chained_layers", "unchain_int8_", "unchained"]

_STATE = threading.local()


def chaining_enabled() -> bool:
    """False inside :func:`unchained` (on this thread)."""
    return getattr(_STATE, "off", 0) == 0


@contextlib.contextmanager
def unchained() -> Iterator[None]:
    """Within this block (on this thread), chained layers return float32 like unchained ones (the
    same values): for hooks that read layer outputs (``lowbit.compare``) and for export.

    Example:
        >>> with lowbit.nn.unchained():
        ...     pass
    """
    _STATE.off = getattr(_STATE, "off", 0) + 1
    try:
        yield
    finally:
        _STATE.off -= 1


class ChainedActivation(nn.Module):
    """An activation between two chained layers (``act``: the original ReLU / ReLU6 / Hardtanh):
    a uint8 input passes unchanged (the producer applied the activation as a clamp on its bytes);
    a float input (the chain switched off, :func:`unchained`, tracing) goes through ``act``."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
            return x
        return self.act(x)


def _bounds(m: nn.Module) -> Optional[tuple[float, float]]:
    """The clamp interval of an activation module that may sit between chained layers."""
    if isinstance(m, (nn.Identity, nn.Dropout)) and not (isinstance(m, nn.Dropout) and m.training):
        return (-math.inf, math.inf)
    if isinstance(m, nn.ReLU):
        return (0.0, math.inf)
    if isinstance(m, nn.Hardtanh):  # ReLU6 too
        return (float(m.min_val), float(m.max_val))
    return None


def _flatten(seq: nn.Sequential, prefix: str) -> list[tuple[str, nn.Module]]:
    out = []
    for name, m in seq.named_children():
        full = f"{prefix}{name}"
        if type(m) is nn.Sequential:
            out += _flatten(m, full + ".")
        else:
            out.append((full, m))
    return out


def _chainable(m: nn.Module) -> bool:
    from .conv import QuantConv1d, QuantConv2d

    return (isinstance(m, QuantConv2d) and not isinstance(m, QuantConv1d) and m.activation.calibrated
            and m.kernel == "linear_int8" and m.padding_mode == "zeros"
            and (m.groups == 1 or m._direct_depthwise()))


def use_counts(model: nn.Module) -> dict[int, int]:
    """id(module) -> how many places of ``model`` hold it (more than 1: a shared module)."""
    counts: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        counts[id(m)] = counts.get(id(m), 0) + 1
    return counts


def _plan(model: nn.Module) -> list[tuple[str, str, list[str], float, float]]:
    """(producer, consumer, activation names, lo, hi) for each chainable pair."""
    counts = use_counts(model)
    inner = {id(c) for m in model.modules() if type(m) is nn.Sequential for c in m.children()}
    plan = []
    for name, seq in model.named_modules():
        if type(seq) is not nn.Sequential or id(seq) in inner:
            continue
        flat = _flatten(seq, f"{name}." if name else "")
        for i, (pname, p) in enumerate(flat):
            if not _chainable(p) or counts[id(p)] != 1:
                continue
            lo, hi, acts = -math.inf, math.inf, []
            for cname, c in flat[i + 1:]:
                if isinstance(c, ChainedActivation):
                    c = c.act
                b = _bounds(c)
                if b is not None and counts[id(c)] == 1:
                    if max(lo, b[0]) > min(hi, b[1]):
                        break  # clamps that do not compose into one interval: not chained
                    lo, hi = max(lo, b[0]), min(hi, b[1])
                    if not isinstance(c, (nn.Identity, nn.Dropout)):
                        acts.append(cname)
                    continue
                if _chainable(c) and counts[id(c)] == 1:
                    plan.append((pname, cname, acts, lo, hi))
                break
    return plan


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def chain_int8_(model: nn.Module) -> list[tuple[str, str]]:
    """Chains the static QuantConv2d layers of ``model`` that can pass uint8 activations (see the
    module docstring), in place; returns the (producer, consumer) pairs. Activations between them
    become :class:`ChainedActivation` (same behaviour on float inputs). Calling it again
    re-derives the chains (e.g. after activation parameters changed).

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.ReLU6(), torch.nn.Conv2d(8, 4, 1))
        >>> x = torch.rand(2, 3, 6, 6)
        >>> q = lowbit.quantize_model(m, lowbit.QuantConfig("int8", "static"), calib_data=[x], progress=False)
        >>> lowbit.nn.chained_layers(q)
        [('0', '2')]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    unchain_int8_(model)
    plan = _plan(model)
    for pname, cname, acts, lo, hi in plan:
        p, c = model.get_submodule(pname), model.get_submodule(cname)
        for a in acts:
            m = model.get_submodule(a)
            if not isinstance(m, ChainedActivation):
                _set(model, a, ChainedActivation(m))
        # plain attributes, not submodules: the state_dict is unchanged, deepcopy keeps the link
        object.__setattr__(p, "_chain_next", c)
        object.__setattr__(p, "_chain_clamp", (lo, hi))
        p.__dict__.pop("_chain_cache", None)
        object.__setattr__(c, "_chain_prev", p)
    return [(pn, cn) for pn, cn, _, _, _ in plan]


def unchain_int8_(model: nn.Module) -> None:
    """Undoes :func:`chain_int8_` in place: every layer returns float32 again and the
    activations are the original modules."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    for name, m in list(model.named_modules()):
        if isinstance(m, ChainedActivation):
            _set(model, name, m.act)
        for attr in ("_chain_next", "_chain_clamp", "_chain_prev", "_chain_cache"):
            if attr in m.__dict__:
                object.__delattr__(m, attr)


def chained_layers(model: nn.Module) -> list[tuple[str, str]]:
    """The (producer, consumer) layer names of ``model`` that pass uint8 activations."""
    names = {id(m): n for n, m in model.named_modules()}
    return [(n, names.get(id(m.__dict__["_chain_next"]), "?")) for n, m in model.named_modules()
            if "_chain_next" in m.__dict__]
