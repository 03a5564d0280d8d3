"""Layers lowbit has no kernel for, rewritten as modules of ``nn.Linear`` / ``nn.Conv2d`` layers over
the same weights (views where the layout allows), so that every lowbit scheme, algorithm, report and file format
covers them. Public torch layer (lowbit.nn).

Five kinds today, each a module class built from the original with ``Cls(module)``:

- transformers' fused MoE experts -> :class:`lowbit.nn.Experts` (``experts.gate_up.3``, ...);
- ``torch.nn.MultiheadAttention`` -> :class:`lowbit.nn.MultiheadAttention` (``q_proj``, ``k_proj``,
  ``v_proj``, ``out_proj``);
- ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` -> :class:`lowbit.nn.Recurrent` (``ih_l0``, ``hh_l0``,
  ``ih_l0_reverse``, ...);
- ``torch.nn.ConvTranspose1d`` / ``2d`` (groups=1) -> :class:`lowbit.nn.ConvTranspose` (``linear``);
- ``torch.nn.Conv3d`` -> :class:`lowbit.nn.Conv3d` (``conv``: the kernel depth's slices as channels;
  grouped: ``depth.0``, ``depth.1``, ..., one Conv2d per kernel depth).

``quantize_model`` / ``prepare_qat`` decompose their working copy, ``load`` decomposes the float
model when the file holds the decomposed layers, and ``compare`` / ``sensitivity`` match a
quantized model's layers with the float model's through :func:`decomposed_like`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Callable

from torch import nn

from .conv3d import Conv3d, is_torch_conv3d
from .conv3d import part_names as conv3d_parts
from .conv_transpose import ConvTranspose, is_torch_conv_transpose
from .experts import Experts, is_fused_experts
from .mha import MultiheadAttention, is_torch_mha
from .rnn import Recurrent, is_torch_rnn

__all__ = ["decomposable", "decompose_", "decompose_saved_", "decomposed", "decomposed_like", "decomposed_names"]

# (is the module of this kind, the decomposed class, the names of the layers it will hold)
_KINDS: tuple[tuple[Callable[[nn.Module], bool], type, Callable[[nn.Module], list[str]]], ...] = (
    (is_fused_experts, Experts,
     lambda m: [f"{part}{e}" for part in ("gate_up", "down") for e in ["", *(f".{i}" for i in range(
         m.gate_up_proj.shape[0]))]]),
    (is_torch_mha, MultiheadAttention, lambda m: ["q_proj", "k_proj", "v_proj", "out_proj"]),
    (is_torch_rnn, Recurrent, Recurrent.part_names),
    (is_torch_conv_transpose, ConvTranspose, lambda m: ["linear"]),
    (is_torch_conv3d, Conv3d, conv3d_parts),
)


def _kind(m: nn.Module) -> tuple | None:
    return next((k for k in _KINDS if k[0](m)), None)


def decomposable(m: nn.Module) -> bool:
    """True when ``m`` itself has a decomposed form (see the module docstring)."""
    return _kind(m) is not None


def _swap(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _targets(model: nn.Module, kinds: tuple[type, ...] | None) -> list[tuple[str, nn.Module, type, list[str]]]:
    """(name, module, decomposed class, its layers' relative names) of every decomposable module,
    ``model`` itself ("") included."""
    out = []
    for name, m in model.named_modules():
        k = _kind(m)
        if k is not None and (kinds is None or k[1] in kinds):
            out.append((name, m, k[1], k[2](m)))
    return out


def decomposed(model: nn.Module, kinds: tuple[type, ...] | None = None) -> nn.Module:
    """:func:`decompose_`, and ``model`` itself replaced when it is of a decomposable kind (a bare
    ``nn.LSTM``): returns the model to use from now on."""
    decompose_(model, kinds)
    k = _kind(model)
    return k[1](model) if k is not None and (kinds is None or k[1] in kinds) else model


def decompose_(model: nn.Module, kinds: tuple[type, ...] | None = None) -> list[str]:
    """Replaces, in place, every module of ``model`` that has a decomposed form (see the module
    docstring; ``kinds``: only these classes, e.g. ``(lowbit.nn.Experts,)``) by that form over the
    same weights; returns their names.

    Example:
        >>> m = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        >>> lowbit.nn.decompose_(m)
        ['self_attn']
        >>> type(m.self_attn.k_proj).__name__
        'Linear'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    found = [t for t in _targets(model, kinds) if t[0]]  # the model itself: decomposed()
    for name, m, cls, _ in found:
        _swap(model, name, cls(m))
    return [t[0] for t in found]


def decomposed_names(model: nn.Module) -> list[str]:
    """The module names :func:`decompose_` would add to ``model`` (``self_attn.q_proj``,
    ``experts.gate_up.3``, ...), so that configs may name them before the model is decomposed."""
    return [f"{name}.{part}" if name else part for name, _, _, parts in _targets(model, None) for part in parts]


def decompose_saved_(model: nn.Module, keys: Iterable[str]) -> nn.Module:
    """Decomposes, in place, the modules of ``model`` whose decomposed layers appear in ``keys``
    (tensor names of a saved file: a part the original module lacks, as ``self_attn.q_proj.``);
    returns the model to use (a new one when ``model`` itself is decomposed). How ``load`` rebuilds
    a quantized model's layout on a fresh float model."""
    keys = list(keys)
    for name, m, cls, parts in _targets(model, None):
        new = [p for p in parts if not hasattr(m, p.split(".")[0])]
        prefix = f"{name}." if name else ""
        if any(k.startswith(f"{prefix}{p}.") for p in new for k in keys):
            if not name:
                return cls(m)  # nothing inside a decomposable module is decomposable too
            _swap(model, name, cls(m))
    return model


@contextlib.contextmanager
def decomposed_like(model: nn.Module, other: nn.Module) -> Iterator[nn.Module]:
    """``model`` with its modules decomposed where ``other`` (a quantized copy) has the decomposed
    form at the same name, for as long as the block runs (views: no copy); the original modules
    are put back afterwards. Yields the model to use (a decomposed copy of ``model`` itself when
    ``other`` is the decomposed form of it). How ``compare`` matches a quantized model's layers
    with the float model's."""
    theirs = {n: type(m) for n, m in other.named_modules() if isinstance(m, tuple(k[1] for k in _KINDS))}
    found = [(n, m, cls) for n, m, cls, _ in _targets(model, None) if theirs.get(n) is cls]
    if any(not n for n, _, _ in found):
        yield found[0][2](model)
        return
    try:
        for name, m, cls in found:
            _swap(model, name, cls(m))
        yield model
    finally:
        for name, m, _ in found:
            _swap(model, name, m)
