"""Sibling layers on one input: a transformer's query, key and value, quantized once and multiplied
in one parallel GEMM. Public torch layer (lowbit.nn).

Attention blocks call three (or more) :class:`QuantLinear` children on the same hidden states.
Called one by one, each quantizes the input again and runs its own small GEMM with its own thread
wake-up (MiniLM at batch 8: 0.80 ms for the three against 0.65 ms together, 2 threads). Here the
int8 siblings of one parent that take the same number of input features form a group; when one of
them is called, the whole group's results come from one ``_core.linear_parts`` call (the input
quantized once, the GEMMs split over the threads as one), and the others' calls on the same
input take theirs. Each result equals the layer's own bit for bit (the same quantized rows, the
same integer sums and epilogue).

Nothing is assumed from names or code: a group watches its members' calls first and shares only
among members it has seen called one after another on the same tensor, twice. A result is
handed over only when it is provably the one the layer would compute:
- the input is the very tensor the group computed from, unmodified since (identity and version
  counter), within the same forward call of the parent module (forward pre-hook / hook);
- eager CPU, no autograd recording, not while torch.compile / export traces.
Otherwise the layer computes alone, as without the group. A group whose precomputed results go
unused three times (members called on different tensors after all) switches itself off.
"""

from __future__ import annotations

import weakref
from typing import Any, Optional

import torch
from torch import nn

from .. import _core
from ._common import stamp, stamped
from .chain import use_counts
from .fused import call_number, count_enter, count_leave, remove_call_hooks

__all__ = ["group_siblings_", "sibling_groups", "ungroup_siblings_"]

# parent module -> [calls in progress, calls so far] (the hooks below)
_ACTIVE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_WASTE_LIMIT = 3  # unused precomputed results before a group switches off
_OBSERVE_LIMIT = 16  # runs watched without seeing two members share an input


def _enter(module: nn.Module, args: Any) -> None:  # noqa: ARG001 - forward pre-hook of a group's parent
    count_enter(_ACTIVE, module)


def _leave(module: nn.Module, args: Any, output: Any) -> None:  # noqa: ARG001 - forward hook (always called)
    count_leave(_ACTIVE, module)


class SiblingGroup:
    """The int8 :class:`QuantLinear` children of ``parent`` with one input width (see the module
    docstring). ``shared`` is None while watching, then the members seen sharing an input."""

    def __init__(self, parent: nn.Module, members: list[nn.Module]) -> None:
        self.parent = parent
        self.members = members
        self._reset()

    def _reset(self) -> None:
        self.shared: Optional[list[nn.Module]] = None
        self.off = False
        self.src: Optional[tuple[Any, int]] = None  # (stamp of the input, parent call)
        self.run: list[nn.Module] = []  # watching: members called one after another on src
        self.last_run: frozenset = frozenset()
        self.runs = 0
        # sharing: (stamp of the input, parent call, {member: result not yet taken}), replaced whole,
        # so a thread never pairs one input with another input's results
        self.ready: Optional[tuple[Any, int, dict[nn.Module, torch.Tensor]]] = None
        self.waste = 0

    # runtime state is not saved: a copied or unpickled group starts watching again
    def __getstate__(self) -> dict[str, Any]:
        return {"parent": self.parent, "members": self.members}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.parent, self.members = state["parent"], state["members"]
        self._reset()

    def take(self, layer: nn.Module, x: torch.Tensor) -> Optional[torch.Tensor]:
        """``layer``'s result for its input ``x`` (float32) from the group, or None: compute alone."""
        if (self.off or x.device.type != "cpu" or torch.compiler.is_compiling()
                or (torch.is_grad_enabled() and x.requires_grad)):
            return None
        call = call_number(_ACTIVE, self.parent)
        if call is None:  # called on its own, outside its parent's forward
            return None
        if self.shared is None:
            src = self.src
            self._watch(layer, x, call, src is not None and src[1] == call and stamped(src[0], x))
            return None
        ready = self.ready
        if ready is not None and ready[1] == call and stamped(ready[0], x):
            y = ready[2].pop(layer, None)
            if y is not None:
                if not ready[2]:
                    self.ready = None
                return y
        if layer not in self.shared:
            return None
        if ready is not None and ready[2]:  # results computed for another input went unused
            self.ready = None
            self.waste += 1
            if self.waste >= _WASTE_LIMIT:
                self.off = True
                return None
        ys = self._compute(x)
        if ys is None:
            self.off, self.ready = True, None
            return None
        y = ys.pop(layer)
        self.ready = (stamp(x), call, ys)
        return y

    def _watch(self, layer: nn.Module, x: torch.Tensor, call: int, same: bool) -> None:
        if same and layer not in self.run:
            self.run.append(layer)
        else:
            self._close_run()
            self.run = [layer]
            self.src = (stamp(x), call)
        if len(self.run) == len(self.members):
            self._close_run()

    def _close_run(self) -> None:
        """A run of members on one input ended: share among them once the same run is seen twice."""
        run = frozenset(self.run)
        if len(run) >= 2 and run == self.last_run:
            self.shared = [m for m in self.members if m in run]
            self.src, self.run = None, []
            return
        self.last_run = run if len(run) >= 2 else self.last_run
        self.run = []
        self.runs += 1
        if self.runs > _OBSERVE_LIMIT:
            self.off, self.src = True, None

    def _compute(self, x: torch.Tensor) -> Optional[dict[nn.Module, torch.Tensor]]:
        """Every shared member's result on x, from one linear_parts call; None when they cannot
        share one quantized x (activation parameters differ)."""
        k = x.shape[-1]
        parts = [m._prepared(k).args for m in self.shared]
        if any(p[6:10] != parts[0][6:10] for p in parts):
            return None
        x2 = x.detach().reshape(-1, k)
        if not x2.is_contiguous():
            x2 = x2.contiguous()
        outs = _core.linear_parts(x2.numpy(), parts)
        lead = x.shape[:-1]
        return {m: torch.from_numpy(o).reshape(*lead, o.shape[1]) for m, o in zip(self.shared, outs)}


def _candidates(parent: nn.Module, counts: dict[int, int]) -> list[list[tuple[str, nn.Module]]]:
    from .linear import QuantLinear

    by_key: dict[tuple, list[tuple[str, nn.Module]]] = {}
    for name, m in parent.named_children():
        if type(m) is not QuantLinear or counts[id(m)] != 1 or m.kernel != "linear_int8":
            continue
        # rotated layers share only with layers rotating alike (they quantize x R, rotated as it is)
        rot = (m.rotation_block, m.rotation_signs.numpy().tobytes()) if m.rotation_block else None
        key = (m.in_features, m.activation.name, m.activation_dtype, rot)
        by_key.setdefault(key, []).append((name, m))
    return [g for g in by_key.values() if len(g) >= 2]


def group_siblings_(model: nn.Module) -> list[tuple[str, ...]]:
    """Groups the int8 :class:`QuantLinear` siblings of ``model`` that may share an input (see
    the module docstring), in place; returns each group's layer names. Calling it again starts
    over (the groups watch their members again).

    Example:
        >>> import torch
        >>> class QKV(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.q, self.k = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
        ...     def forward(self, x):
        ...         return self.q(x) * self.k(x)
        >>> lowbit.nn.sibling_groups(lowbit.quantize_model(QKV(), progress=False))
        [('q', 'k')]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    ungroup_siblings_(model)
    counts = use_counts(model)
    done = []
    for name, parent in list(model.named_modules()):
        groups = _candidates(parent, counts)
        for members in groups:
            group = SiblingGroup(parent, [m for _, m in members])
            for _, m in members:
                object.__setattr__(m, "_siblings", group)  # a plain attribute: not a submodule
            prefix = f"{name}." if name else ""
            done.append(tuple(prefix + n for n, _ in members))
        if groups:  # module-level functions: a grouped model still pickles
            parent.register_forward_pre_hook(_enter)
            parent.register_forward_hook(_leave, always_call=True)
    return done


def ungroup_siblings_(model: nn.Module) -> None:
    """Undoes :func:`group_siblings_` in place: every layer computes alone again."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    for m in model.modules():
        if "_siblings" in m.__dict__:
            object.__delattr__(m, "_siblings")
        remove_call_hooks(m, _enter, _leave)
        _ACTIVE.pop(m, None)


def sibling_groups(model: nn.Module) -> list[tuple[str, ...]]:
    """The layer names of each group of ``model`` (:func:`group_siblings_`), sharing or not yet."""
    names = {id(m): n for n, m in model.named_modules()}
    seen, out = set(), []
    for m in model.modules():
        g = m.__dict__.get("_siblings")
        if g is not None and id(g) not in seen:
            seen.add(id(g))
            out.append(tuple(names.get(id(x), "?") for x in g.members))
    return out
