"""Pruning: structured (channels, transformer FFN channels, attention heads: the model physically
shrinks), unstructured magnitude (layer-wise / global, one shot or gradual) and N:M masks.
Torch layer next to lowbit.interop; every result is an ordinary nn.Module that quantize_model takes.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GradualPruner",
    "PruneReport",
    "prune_attention_heads",
    "prune_channels",
    "prune_ffn",
    "prune_magnitude",
    "prune_n_m",
    "reapply_masks",
    "sparsity_report",
]

_MASK_ATTR = "_lowbit_weight_mask"
_IMPORTANCE = ("l1", "l2", "activation")


# --------------------------------------------------------------------------------------------
# argument checks


def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return model


def _check_amount(amount: Any, what: str = "amount") -> float:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise TypeError(f"{what}: expected a float in [0, 1), got {type(amount).__name__}")
    if not 0.0 <= float(amount) < 1.0:
        raise ValueError(f"{what}: expected a fraction in [0, 1) (the share of weights removed), got {amount}")
    return float(amount)


def _check_importance(importance: str, calib_data: Any, allowed: tuple[str, ...] = _IMPORTANCE) -> str:
    if importance not in allowed:
        raise ValueError(f"importance: expected one of {', '.join(allowed)}, got {importance!r}")
    if importance in ("activation", "obs") and calib_data is None:
        raise ValueError(f"calib_data: importance={importance!r} needs calibration data (an iterable of batches)")
    return importance


def _check_names(model: nn.Module, names: Optional[Iterable[str]], what: str) -> Optional[list[str]]:
    if names is None:
        return None
    if isinstance(names, str):
        raise TypeError(f"{what}: expected a list of layer names, got the string {names!r}")
    names = list(names)
    known = dict(model.named_modules())
    for n in names:
        if n not in known:
            raise ValueError(f"{what}: the model has no layer {n!r}")
    return names


def _weighted(model: nn.Module, layers: Optional[list[str]], exclude: list[str]) -> dict[str, nn.Module]:
    """The Linear / Conv1d / Conv2d layers (float, or QAT from lowbit.prepare_qat: they share the
    float Parameter) to sparsify (``layers`` or all of them), minus ``exclude``."""
    from ..nn import QATConv1d, QATConv2d, QATLinear

    def ok(m: nn.Module) -> bool:
        return type(m) in (nn.Linear, nn.Conv1d, nn.Conv2d, QATConv1d, QATConv2d) or (
            type(m) is QATLinear and not m.transposed)

    if layers is None:
        out = {n: m for n, m in model.named_modules() if ok(m)}
    else:
        out = {}
        for n in layers:
            m = model.get_submodule(n)
            if not ok(m):
                raise ValueError(f"layers: {n!r} is a {type(m).__name__}, not a Linear / Conv1d / Conv2d")
            out[n] = m
    for n in exclude:
        out.pop(n, None)
    if not out:
        raise ValueError("layers: no Linear / Conv1d / Conv2d layer left to prune")
    return out


def _row_norms(w: torch.Tensor, p: str) -> torch.Tensor:
    rows = w.detach().reshape(w.shape[0], -1).float()
    return rows.abs().sum(1) if p == "l1" else rows.pow(2).sum(1).sqrt()


def _keep_count(n: int, amount: float, round_to: int) -> int:
    keep = n - int(n * amount)
    keep = -(-keep // round_to) * round_to
    return max(1, min(n, keep))


def _topk_sorted(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the ``keep`` largest scores, in increasing index order (ties: the lower index)."""
    order = torch.argsort(scores, descending=True, stable=True)[:keep]
    return torch.sort(order).values


def _run(model: nn.Module, batch: Any) -> Any:
    from ..interop.convert import run_batch

    return run_batch(model, batch)


def _activation_scores(model: nn.Module, layers: Mapping[str, nn.Module], calib_data: Any,
                       channel_dim: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Mean |output| per output channel of each layer over ``calib_data`` (eval mode, no grad)."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {n: 0 for n in layers}
    handles = []

    def hook(name: str) -> Callable:
        def fn(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
            d = channel_dim[name] % out.dim()
            a = out.detach().abs().float().movedim(d, 0).reshape(out.shape[d], -1)
            sums[name] = sums.get(name, 0) + a.sum(1)
            counts[name] += a.shape[1]

        return fn

    for n, m in layers.items():
        handles.append(m.register_forward_hook(hook(n)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            batches = [calib_data] if isinstance(calib_data, (torch.Tensor, Mapping)) else calib_data
            for b in batches:
                _run(model, b)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    missing = [n for n in layers if counts[n] == 0]
    if missing:
        raise ValueError(f"calib_data: layer {missing[0]!r} never ran, its activation importance is unknown")
    return {n: sums[n] / counts[n] for n in layers}


# --------------------------------------------------------------------------------------------
# structured channel pruning through a torch.fx graph

_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU,
    nn.ELU, nn.Mish, nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_PASS_FUNCTIONS = {
    F.relu, F.relu6, F.gelu, F.silu, F.sigmoid, F.tanh, F.hardswish, F.leaky_relu, F.elu, F.mish, F.dropout,
    F.dropout2d, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.interpolate,
    torch.relu, torch.sigmoid, torch.tanh, torch.nn.functional.hardsigmoid,
}
_PASS_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "detach"}
_SHAPE_ONLY = {"size", "dim"}
_MERGES = {operator.add, operator.iadd, operator.sub, operator.mul, torch.add, torch.sub, torch.mul, torch.cat,
           torch.concat, torch.stack}


@dataclass
class _Plan:
    """What removing output channels of ``producer`` touches: BatchNorms and depthwise convolutions
    that keep the channels, and consumers (name, group) whose inputs are ``group`` columns a channel."""

    producer: str
    channel_dim: int
    passthrough: list[str]
    consumers: list[tuple[str, int]]


def _refuse(name: str, why: str) -> ValueError:
    return ValueError(f"prune_channels: cannot remove output channels of layer '{name}': {why}. Pass layers=[...] "
                      "without it, or exclude=['" + name + "']")


def _reduced_dims(node: Any) -> Optional[tuple[int, ...]]:
    """The dims of a ``mean`` node (call_function torch.mean or method .mean), None if not given."""
    args = list(node.args[1:])
    dim = node.kwargs.get("dim", args[0] if args else None)
    if dim is None:
        return None
    return tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)


def _plan(gm: Any, modules: dict[str, nn.Module], node: Any, name: str) -> _Plan:
    """Follows ``node`` (the output of the prunable layer ``name``) to every layer that reads its
    channels; raises ValueError naming the layer for any pattern it cannot follow."""
    m = modules[name]
    is_conv = isinstance(m, nn.Conv2d)
    plan = _Plan(name, 1 if is_conv else -1, [], [])
    # state per tensor: (ndim or None, channel dim, flatten group)
    todo = [(node, 4 if is_conv else None, 1 if is_conv else -1, 1)]
    seen: set[Any] = set()
    while todo:
        cur, ndim, cdim, group = todo.pop()
        for user in cur.users:
            if (user, group) in seen:
                continue
            seen.add((user, group))
            where = f"'{user.name}'"
            if user.op == "output":
                raise _refuse(name, "its output is a model output (the model's output size would change)")
            if user.op == "call_module":
                sub = modules[user.target]
                if isinstance(sub, nn.Conv2d) and sub.groups == 1:
                    if cdim != 1 or ndim != 4 or group != 1:
                        raise _refuse(name, f"Conv2d '{user.target}' reads it with channels not at dim 1")
                    plan.consumers.append((user.target, 1))
                elif isinstance(sub, nn.Conv2d) and sub.groups == sub.in_channels == sub.out_channels:
                    plan.passthrough.append(user.target)
                    todo.append((user, ndim, cdim, group))
                elif isinstance(sub, nn.Linear):
                    if not (cdim == -1 or (ndim == 2 and cdim == 1)):
                        raise _refuse(name, f"Linear '{user.target}' reads it with channels not in the last dim")
                    plan.consumers.append((user.target, group))
                elif isinstance(sub, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    if cdim != 1:
                        raise _refuse(name, f"BatchNorm '{user.target}' normalises another dim")
                    plan.passthrough.append(user.target)
                    todo.append((user, ndim, cdim, group))
                elif isinstance(sub, _PASS_MODULES):
                    todo.append((user, ndim, cdim, group))
                elif isinstance(sub, nn.Flatten) and sub.start_dim == 1 and cdim == 1:
                    todo.append(_flatten(name, user, cur, group))
                else:
                    raise _refuse(name, f"it reaches {type(sub).__name__} '{user.target}', which pruning cannot follow")
            elif user.op == "call_function" or user.op == "call_method":
                fn = user.target
                if user.op == "call_method" and fn in _SHAPE_ONLY or fn is getattr and user.args[1] == "shape":
                    continue
                if user.args and user.args[0] is not cur and fn not in _MERGES:
                    raise _refuse(name, f"node {where} ({_fn_name(fn)}) takes it as a later argument")
                if fn in _MERGES:
                    kind = "concatenation" if fn in (torch.cat, torch.concat, torch.stack) else "residual add / product"
                    raise _refuse(name, f"it reaches a {kind} (node {where}); channels shared by several layers "
                                        "are not pruned")
                if fn in _PASS_FUNCTIONS or (user.op == "call_method" and fn in _PASS_METHODS):
                    todo.append((user, ndim, cdim, group))
                elif fn in (torch.flatten, "flatten"):
                    start = user.kwargs.get("start_dim", user.args[1] if len(user.args) > 1 else 0)
                    if start != 1 or cdim != 1:
                        raise _refuse(name, f"flatten node {where} does not start at the channel dim 1")
                    todo.append(_flatten(name, user, cur, group))
                elif fn in (torch.mean, "mean", torch.amax, "amax", torch.sum, "sum"):
                    dims = _reduced_dims(user)
                    nd = ndim or 0
                    keepdim = user.kwargs.get("keepdim", len(user.args) > 2 and bool(user.args[2]))
                    if dims is None or not nd or cdim != 1 or any(d % nd == 1 or d % nd == 0 for d in dims):
                        raise _refuse(name, f"reduction node {where} does not keep the batch and channel dims")
                    todo.append((user, nd if keepdim else nd - len(dims), cdim, group))
                else:
                    raise _refuse(name, f"it reaches node {where} ({_fn_name(fn)}), which pruning cannot follow")
            else:
                raise _refuse(name, f"it reaches node {where} ({user.op})")
    return plan


def _flatten(name: str, user: Any, cur: Any, group: int) -> tuple:
    meta = cur.meta.get("tensor_meta")
    if meta is None:
        raise _refuse(name, "a flatten needs the spatial size: pass example_inputs")
    spatial = 1
    for s in meta.shape[2:]:
        spatial *= int(s)
    return (user, 2, 1, group * spatial)


def _fn_name(fn: Any) -> str:
    return fn if isinstance(fn, str) else getattr(fn, "__name__", repr(fn))


def _slice_out(m: nn.Module, keep: torch.Tensor) -> None:
    """Keeps output channels ``keep`` of a Linear / Conv2d / depthwise Conv2d / BatchNorm, in place."""
    with torch.no_grad():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if m.affine:
                m.weight = nn.Parameter(m.weight[keep].clone())
                m.bias = nn.Parameter(m.bias[keep].clone())
            if m.track_running_stats:
                m.running_mean = m.running_mean[keep].clone()
                m.running_var = m.running_var[keep].clone()
            m.num_features = len(keep)
            return
        m.weight = nn.Parameter(m.weight[keep].clone())
        if m.bias is not None:
            m.bias = nn.Parameter(m.bias[keep].clone())
        if isinstance(m, nn.Linear):
            m.out_features = len(keep)
        else:
            m.out_channels = len(keep)
            if m.groups > 1:  # depthwise: one input channel per output channel
                m.in_channels = m.groups = len(keep)


def _slice_in(m: nn.Module, keep: torch.Tensor, group: int) -> None:
    """Keeps input channels ``keep`` (``group`` consecutive columns each) of a Linear / Conv2d, in place."""
    cols = (keep[:, None] * group + torch.arange(group)[None, :]).reshape(-1) if group > 1 else keep
    with torch.no_grad():
        m.weight = nn.Parameter(m.weight[:, cols].clone())
    if isinstance(m, nn.Linear):
        m.in_features = len(cols)
    else:
        m.in_channels = len(cols)


@dataclass
class PruneReport:
    """Rows of (layer, kind, before, after) for what a structured pruning removed: output channels,
    FFN channels or heads per layer. ``str()`` prints a table."""

    rows: list[dict[str, Any]]

    def __str__(self) -> str:
        head = ("layer", "kind", "before", "after")
        body = [(r["layer"], r["kind"], str(r["before"]), str(r["after"])) for r in self.rows]
        w = [max(len(x[i]) for x in [head, *body]) for i in range(4)]
        fmt = "  ".join(f"{{:{'>' if i >= 2 else '<'}{w[i]}}}" for i in range(4))
        return "\n".join([fmt.format(*head), "  ".join("-" * x for x in w)] + [fmt.format(*b) for b in body])

    __repr__ = __str__


def prune_channels(
    model: nn.Module,
    amount: Union[float, Mapping[str, float]],
    *,
    example_inputs: Any = None,
    layers: Optional[Sequence[str]] = None,
    exclude: Sequence[str] = (),
    importance: str = "l2",
    calib_data: Optional[Iterable] = None,
    round_to: int = 1,
) -> nn.Module:
    """Removes the least important output channels of Conv2d (groups=1) and Linear layers and the
    matching inputs of every layer that reads them, so the model physically shrinks.

    The model is traced with ``torch.fx``; from each pruned layer the graph is followed through
    element-wise activations, dropout, pooling, BatchNorm (its channels go too), depthwise Conv2d
    (its channels go too), spatial means and ``flatten(x, 1)`` (a following Linear loses the
    channel's ``H*W`` columns; needs ``example_inputs``) to the Conv2d / Linear layers that consume
    it. Patterns it cannot follow raise ValueError naming the layer: residual adds, products and
    concatenations (channels shared between layers), views and reshapes, outputs of the model. With
    ``layers=None`` every Conv2d/Linear whose output is not a model output is pruned; pass
    ``layers`` or ``exclude`` to leave out the ones behind a residual.

    Importance per output channel (higher is kept): ``"l2"`` / ``"l1"`` norm of the channel's
    weights (Li et al. 2017, "Pruning Filters for Efficient ConvNets"), or ``"activation"``: mean
    absolute output over ``calib_data`` (Hu et al. 2016, "Network Trimming"). Each layer keeps
    ``n - floor(n * amount)`` channels rounded up to a multiple of ``round_to`` (at least one).

    Args:
        model: the float model; never modified (a deep copy is pruned).
        amount: share of output channels removed, in [0, 1); or a dict layer name -> share.
        example_inputs: a tensor, tuple of tensors, for ``flatten`` (shape propagation).
        layers: names of the layers whose output channels are removed (default: all eligible).
        exclude: names left out of the default selection.
        importance: "l2", "l1" or "activation".
        calib_data: batches (tensors, dicts, ``(inputs, labels)``) for ``importance="activation"``.
        round_to: keep channel counts a multiple of this (e.g. 8 or 16 for SIMD-friendly shapes).

    Returns:
        The pruned copy (same class; smaller layers). ``pruned._lowbit_prune_report`` is a
        :class:`PruneReport`.

    Raises:
        TypeError: ``model`` is not an nn.Module.
        ValueError: amount outside [0, 1), unknown layer names, a model that torch.fx cannot trace,
            or a structure the pruning cannot follow (names the layer and the node).

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> p = lowbit.prune_channels(m, 0.5)
        >>> p[0].out_features, p[2].in_features, p(torch.ones(1, 8)).shape
        (8, 8, torch.Size([1, 2]))
    """
    model = _check_model(model)
    amounts = dict(amount) if isinstance(amount, Mapping) else None
    if amounts is not None:
        for n, a in amounts.items():
            _check_amount(a, f"amount[{n!r}]")
        if layers is None:
            layers = list(amounts)
    else:
        amount = _check_amount(amount)
    layers = _check_names(model, layers, "layers")
    exclude = _check_names(model, exclude, "exclude") or []
    _check_importance(importance, calib_data)
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ValueError(f"round_to: expected a positive int, got {round_to!r}")
    work = copy.deepcopy(model)
    import torch.fx as fx

    try:
        gm = fx.symbolic_trace(work)
    except Exception as e:
        raise ValueError(f"prune_channels: torch.fx cannot trace {type(model).__name__} ({type(e).__name__}: {e}); "
                         "for transformers use prune_ffn / prune_attention_heads") from e
    if example_inputs is not None:
        from torch.fx.passes.shape_prop import ShapeProp

        args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
        with torch.no_grad():
            ShapeProp(gm).propagate(*args)
    modules = dict(gm.named_modules())
    calls: dict[str, list[Any]] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls.setdefault(node.target, []).append(node)

    def eligible(m: nn.Module) -> bool:
        return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)

    if layers is None:
        chosen = []
        for name, nodes in calls.items():
            if name in exclude or not eligible(modules[name]):
                continue
            if not any(u.op == "output" for u in nodes[0].users) and not _feeds_output(nodes[0]):
                chosen.append(name)
    else:
        chosen = [n for n in layers if n not in exclude]
    plans = []
    for name in chosen:
        m = modules.get(name)
        if m is None or not eligible(m):
            kind = type(work.get_submodule(name)).__name__
            raise _refuse(name, f"it is a {kind}; output channels are pruned from Linear and groups=1 Conv2d layers")
        if name not in calls:
            raise _refuse(name, "it is never called in forward")
        if len(calls[name]) > 1:
            raise _refuse(name, "it is called more than once in forward")
        plans.append(_plan(gm, modules, calls[name][0], name))
    if not plans:
        raise ValueError("prune_channels: no layer to prune (all excluded or behind the model output)")
    scores: dict[str, torch.Tensor] = {}
    if importance == "activation":
        targets = {p.producer: work.get_submodule(p.producer) for p in plans}
        scores = _activation_scores(work, targets, calib_data, {p.producer: p.channel_dim for p in plans})
    report = []
    for p in plans:  # graph order: a producer's inputs may already be pruned, its rows are not
        m = work.get_submodule(p.producer)
        a = amounts.get(p.producer, 0.0) if amounts is not None else amount
        n = m.weight.shape[0]
        keep = _keep_count(n, a, round_to)
        s = scores.get(p.producer)
        if s is None:
            s = _row_norms(m.weight, importance)
        idx = _topk_sorted(s, keep)
        _slice_out(m, idx)
        for t in p.passthrough:
            _slice_out(work.get_submodule(t), idx)
        for t, group in p.consumers:
            _slice_in(work.get_submodule(t), idx, group)
        report.append({"layer": p.producer, "kind": "output channels", "before": n, "after": keep})
    work._lowbit_prune_report = PruneReport(report)
    return work


def _feeds_output(node: Any) -> bool:
    """True when ``node`` reaches the graph output through channel-keeping ops only (a head layer)."""
    todo, seen = [node], set()
    while todo:
        cur = todo.pop()
        for u in cur.users:
            if u.op == "output":
                return True
            if u in seen:
                continue
            seen.add(u)
            if u.op == "call_module" and isinstance(u.graph.owning_module.get_submodule(u.target),
                                                    (nn.Conv2d, nn.Linear)):
                continue
            todo.append(u)
    return False


# --------------------------------------------------------------------------------------------
# transformers (BERT / MiniLM layout): FFN intermediate channels and attention heads


def _bert_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules with ``intermediate.dense`` and ``output.dense`` Linear layers (BERT-style blocks)."""
    out = []
    for n, m in model.named_modules():
        inter, outp = getattr(m, "intermediate", None), getattr(m, "output", None)
        if isinstance(getattr(inter, "dense", None), nn.Linear) and isinstance(getattr(outp, "dense", None), nn.Linear):
            out.append((n, m))
    return out


def prune_ffn(
    model: nn.Module,
    amount: Union[float, Sequence[float]],
    *,
    importance: str = "l2",
    calib_data: Optional[Iterable] = None,
    reconstruct: Union[bool, str] = False,
    damp: float = 0.01,
    round_to: int = 1,
    block_steps: int = 300,
    block_lr: float = 1e-3,
) -> nn.Module:
    """Removes a share of the FFN intermediate channels of every BERT-style block (a module with
    ``intermediate.dense`` and ``output.dense`` Linear layers: BERT, MiniLM, RoBERTa, ...): rows of
    ``intermediate.dense`` and the matching columns of ``output.dense``.

    Importance per channel: ``"l2"`` / ``"l1"``: the product of the norms of its row in
    ``intermediate.dense`` and its column in ``output.dense`` (what the channel can add to the
    output); ``"activation"``: root mean square of the channel's activation over ``calib_data``
    times its column norm (the energy it adds to the block output); ``"obs"`` (needs
    ``reconstruct``): channels removed one at a time, each time the one whose removal, after the
    optimal least-squares update of the remaining columns, adds the least output error
    (``‖w_j‖² / [H⁻¹]_jj`` with H the damped Gram matrix of the activations; the structured Optimal
    Brain Surgeon of Hassibi & Stork 1993 as used for structured pruning by Kurtić et al. 2023,
    "ZipLM").

    ``reconstruct=True`` (needs ``calib_data``) then refits ``output.dense`` (weights and bias) by
    least squares so that the kept channels reproduce the full FFN output on the calibration
    tokens, block after block on the already pruned model's own inputs (as ThiNet, Luo et al. 2017,
    and the layer-wise reconstruction of Hassibi & Stork's OBS family): ``W = (G_kk + λI)⁻¹ G_k:
    W_full`` from the Gram matrix G of the activations (float64; λ = ``damp`` x the mean diagonal;
    padding tokens, ``attention_mask`` 0, left out). Calibrate on text like the one the model will
    see: on MiniLM (50% removed, 512 sentences), docstring-only calibration left the everyday
    evaluation sentences at a worst cosine of about 0.6, docstrings + everyday sentences
    (:mod:`lowbit.demo.text`) at about 0.8.

    ``reconstruct="block"`` is block-wise reconstruction (BRECQ, Li et al. 2021, applied to pruning):
    block after block, the pruned block, fed the pruned model's own block inputs, is fit to the
    *float* model's block output on the float model's inputs, so it also corrects the error that
    the earlier pruned blocks pass on. First in closed form: ``output.dense`` is solved by least
    squares for the float block's LayerNorm input minus the pruned block's attention output; then
    ``block_steps`` Adam steps (learning rate ``block_lr``, cosine decay, 1024 random real tokens a
    step) train the FFN's weights, biases and output LayerNorm on the mean squared error of the
    block output. The blocks must be consecutive entries of an ``nn.ModuleList`` that the model runs
    in sequence (checked on the first batch) with an ``output.LayerNorm``; one block's activations
    (float and pruned) are held in memory at a time. On all-MiniLM-L6-v2, 50% removed, 2048
    calibration sentences, ``importance="obs"``: worst / mean cosine of the sentence embeddings 0.83 /
    0.91 in closed form, 0.84 / 0.92 after 300 steps, against 0.79 / 0.87 for
    ``importance="activation", reconstruct=True`` (benchmarks/bench_pruning.py; about 70 s at 2 threads).

    ``model.config.intermediate_size`` is updated when every block keeps the same width.

    Args:
        model: never modified (a deep copy is pruned).
        amount: share of intermediate channels removed per block, in [0, 1), or a sequence with one
            share per block (in model order). On MiniLM, removing more early and less late (kept widths
            640, 704, 768, 768, 832, 896 of 1536: 50% overall) raised the block-reconstructed worst / mean
            cosine from 0.84 / 0.92 to 0.86 / 0.93: later blocks' errors reach the output undamped.
        importance: "l2", "l1", "activation" or "obs".
        calib_data: batches (e.g. tokenizer outputs as dicts) for ``importance="activation"`` /
            ``"obs"`` and ``reconstruct``; read several times (a list is best).
        reconstruct: False, True (refit ``output.dense`` to the unpruned FFN) or "block" (fit each
            block to the float model's block output, see above).
        damp: relative ridge term of the refit.
        round_to: keep a multiple of this many channels.
        block_steps: Adam steps per block with ``reconstruct="block"`` (0: the closed form only).
        block_lr: their learning rate.

    Raises:
        ValueError: amount outside [0, 1) or not one per block, no calib_data where needed, an unknown ``reconstruct``,
            ``importance="obs"`` without ``reconstruct``, or the model has no BERT-style block
            (``reconstruct="block"``: blocks not run in sequence from a ModuleList, or no
            ``output.LayerNorm``).

    Example:
        >>> from transformers import BertConfig, BertModel
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        ...                  intermediate_size=32, max_position_embeddings=16)
        >>> bert = BertModel(cfg).eval()
        >>> calib = [{"input_ids": torch.randint(0, 50, (4, 8))} for _ in range(2)]
        >>> small = lowbit.prune_ffn(bert, 0.5, importance="obs", reconstruct="block", calib_data=calib,
        ...                          block_steps=5)
        >>> small.encoder.layer[0].intermediate.dense.out_features
        16
    """
    model = _check_model(model)
    amounts = _ffn_amounts(model, amount)
    _check_importance(importance, calib_data, (*_IMPORTANCE, "obs"))
    if not (isinstance(reconstruct, bool) or reconstruct == "block"):
        raise ValueError(f"reconstruct: expected True, False or 'block', got {reconstruct!r}")
    if reconstruct and calib_data is None:
        raise ValueError(f"calib_data: reconstruct={reconstruct!r} needs calibration data (an iterable of batches)")
    if importance == "obs" and not reconstruct:
        raise ValueError("importance: 'obs' ranks channels by their least-squares removal cost; it needs "
                         "reconstruct=True or 'block'")
    if not isinstance(damp, (int, float)) or isinstance(damp, bool) or not damp >= 0:
        raise ValueError(f"damp: expected a number >= 0, got {damp!r}")
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ValueError(f"round_to: expected a positive int, got {round_to!r}")
    if isinstance(block_steps, bool) or not isinstance(block_steps, int) or block_steps < 0:
        raise ValueError(f"block_steps: expected an int >= 0, got {block_steps!r}")
    if not isinstance(block_lr, (int, float)) or isinstance(block_lr, bool) or not block_lr > 0:
        raise ValueError(f"block_lr: expected a number > 0, got {block_lr!r}")
    if reconstruct == "block":
        return _prune_ffn_blockwise(model, amounts, importance, calib_data, float(damp), round_to, block_steps,
                                    float(block_lr))
    work = copy.deepcopy(model)
    blocks = _bert_layers(work)
    report, widths = [], set()
    for (n, b), amount in zip(blocks, amounts):  # in order: with calib data, each block sees the pruned blocks' outputs
        w1, w2 = b.intermediate.dense, b.output.dense
        before = w1.out_features
        keep = _keep_count(before, amount, round_to)
        gram = _ffn_gram(work, b.intermediate, calib_data) if (reconstruct or importance == "activation") else None
        if importance == "obs":
            idx = _obs_select(gram, gram @ _with_bias(w2).t(), keep, damp)
        else:
            idx = _topk_sorted(_ffn_scores(b, importance, gram), keep)
        if reconstruct:
            _refit(w2, gram, idx, damp)
        _slice_out(w1, idx)
        if not reconstruct:
            _slice_in(w2, idx, 1)
        widths.add(keep)
        report.append({"layer": n, "kind": "FFN channels", "before": before, "after": keep})
    return _finish_ffn(work, report, widths)


def _ffn_amounts(model: nn.Module, amount: Any) -> list[float]:
    """One share per BERT-style block: ``amount`` repeated, or a sequence with one entry per block."""
    n = len(_bert_layers(model))
    if not n:
        raise ValueError(f"prune_ffn: {type(model).__name__} has no block with intermediate.dense and output.dense "
                         "Linear layers (BERT layout)")
    if isinstance(amount, Sequence) and not isinstance(amount, str):
        if len(amount) != n:
            raise ValueError(f"amount: expected one share per block ({n}), got {len(amount)}")
        return [_check_amount(a) for a in amount]
    return [_check_amount(amount)] * n


def _ffn_scores(block: nn.Module, importance: str, gram: Optional[torch.Tensor]) -> torch.Tensor:
    """Per-channel importance ("l1", "l2", "activation") of a block's FFN intermediate channels."""
    p = "l1" if importance == "l1" else "l2"
    col = _row_norms(block.output.dense.weight.t(), p)
    if importance == "activation":
        return (gram[:-1, :-1].diagonal() / gram[-1, -1]).sqrt().float() * col
    return _row_norms(block.intermediate.dense.weight, p) * col


def _finish_ffn(work: nn.Module, report: list[dict[str, Any]], widths: set[int]) -> nn.Module:
    cfg = getattr(work, "config", None)
    if cfg is not None and len(widths) == 1 and hasattr(cfg, "intermediate_size"):
        cfg.intermediate_size = widths.pop()
    work._lowbit_prune_report = PruneReport(report)
    return work


def _with_bias(w2: nn.Linear) -> torch.Tensor:
    """``[W, b]`` (out, in + 1) in float64 (b = 0 without a bias)."""
    b = w2.bias.detach().double() if w2.bias is not None else torch.zeros(w2.out_features, dtype=torch.float64)
    return torch.cat([w2.weight.detach().double(), b[:, None]], 1)


def _damped(gram: torch.Tensor, damp: float) -> torch.Tensor:
    """``gram`` + λI on the activation rows (not the constant one), λ = damp x their mean diagonal."""
    ridge = torch.ones(gram.shape[0], dtype=torch.float64)
    ridge[-1] = 0.0
    return gram + damp * float(gram.diagonal()[:-1].mean()) * torch.diag(ridge)


def _obs_select(gram: torch.Tensor, cross: torch.Tensor, keep: int, damp: float) -> torch.Tensor:
    """Kept channels (sorted) by greedy structured OBS: from the least-squares solution
    ``W = (G + λI)⁻¹ cross`` on all channels (+ the constant column, never removed), repeatedly remove
    the channel with the least error increase ``‖w_j‖² / [H⁻¹]_jj`` and update the rest optimally
    (``W -= w_j h_j / h_jj``, ``H⁻¹ -= h_j h_jᵀ / h_jj``). The removed rows and columns are dropped
    from the working matrices every 64 steps (they are zero after their update)."""
    h = _damped(gram, damp)
    hinv = torch.linalg.inv(h)
    w = torch.linalg.solve(h, cross).t().contiguous()  # (out, k + 1)
    k = gram.shape[0] - 1
    ids = torch.arange(k)  # channel of each working column but the last (the constant)
    alive = torch.ones(k, dtype=torch.bool)
    for step in range(k - keep):
        cost = (w[:, :-1] ** 2).sum(0) / hinv.diagonal()[:-1]
        cost[~alive[ids]] = float("inf")
        j = int(cost.argmin())
        row = hinv[j].clone()
        w.addr_(w[:, j].clone(), row, alpha=-1.0 / float(row[j]))  # in place: one pass over the matrices
        hinv.addr_(row, row, alpha=-1.0 / float(row[j]))
        alive[ids[j]] = False
        if step % 64 == 63:
            live = torch.cat([torch.nonzero(alive[ids]).flatten(), torch.tensor([len(ids)])])
            ids, w, hinv = ids[live[:-1]], w[:, live].contiguous(), hinv[live][:, live].contiguous()
    return torch.nonzero(alive).flatten()


def _prune_ffn_blockwise(model: nn.Module, amounts: list[float], importance: str, calib_data: Any, damp: float,
                         round_to: int, steps: int, lr: float) -> nn.Module:
    """``prune_ffn(reconstruct="block")``: see its docstring."""
    from ..interop.convert import _advance, _block_plan, _calib_batches, _capture_block_inputs

    batches = _calib_batches(calib_data, "prune_ffn")
    batches = batches if isinstance(batches, Sequence) else list(batches)
    if not batches:
        raise ValueError("calib_data: no batches (the iterable is empty)")
    work = copy.deepcopy(model)
    names = [n for n, _ in _bert_layers(model)]
    for n in names:
        if not isinstance(getattr(model.get_submodule(n).output, "LayerNorm", None), nn.Module):
            raise ValueError(f"prune_ffn: block '{n}' has no output.LayerNorm (reconstruct='block' fits its input)")
    was = model.training
    model.eval()
    work.eval()
    try:
        with torch.no_grad():
            plan = _block_plan(model, {f"{n}.intermediate.dense": model.get_submodule(f"{n}.intermediate.dense")
                                       for n in names}, batches)
            if plan is None or [id(b) for b in plan[0]] != [id(model.get_submodule(n)) for n in names]:
                raise ValueError("prune_ffn: reconstruct='block' needs the BERT-style blocks to be the entries of one "
                                 "nn.ModuleList that the model runs in sequence (each block's output the next one's "
                                 "input)")
            float_in = _capture_block_inputs(model, plan[0][0], batches)
        pruned_in = list(float_in)  # the embeddings are not pruned: the first block sees the same inputs
        report, widths = [], set()
        for n, amount in zip(names, amounts):
            fb, pb = model.get_submodule(n), work.get_submodule(n)
            before = pb.intermediate.dense.out_features
            keep = _keep_count(before, amount, round_to)
            with torch.no_grad():
                a, y, gram, cross, float_out = _block_statistics(fb, pb, float_in, pruned_in)
                w2 = pb.output.dense
                if importance == "obs":
                    idx = _obs_select(gram, cross, keep, damp)
                else:
                    idx = _topk_sorted(_ffn_scores(pb, importance, gram), keep)
                kept = torch.cat([idx, torch.tensor([before])])
                sol = torch.linalg.solve(_damped(gram, damp)[kept][:, kept], cross[kept]).t()
                _slice_out(pb.intermediate.dense, idx)
                w2.weight = nn.Parameter(sol[:, :-1].to(w2.weight.dtype).contiguous())
                w2.bias = nn.Parameter(sol[:, -1].to(w2.weight.dtype).contiguous())
                w2.in_features = keep
            err = _train_ffn(pb, a, y, steps, lr, seed=len(report))
            with torch.no_grad():
                pruned_in = [_advance(it, pb(*it[0], **it[1])) for it in pruned_in]
                float_in = [_advance(it, out) for it, out in zip(float_in, float_out)]
            del a, y, float_out
            widths.add(keep)
            report.append({"layer": n, "kind": "FFN channels", "before": before, "after": keep,
                           "block error": err})
    finally:
        model.train(was)
    for p in work.parameters():
        p.grad = None
    work.train(was)
    return _finish_ffn(work, report, widths)


def _block_statistics(fb: nn.Module, pb: nn.Module, float_in: list, pruned_in: list) -> tuple:
    """For block ``pb`` (pruned, still full width) and its float twin ``fb`` over the cached block
    inputs (real tokens only): the pruned block's attention output ``a`` (tokens, d), the float
    block's output ``y`` (tokens, d), the Gram matrix of ``[pruned activations, 1]`` and its cross
    product with the least-squares target ``float LayerNorm input - a`` (float64), and the float
    block's outputs per item (the next block's inputs)."""
    from ..interop.convert import _hidden, _real_tokens

    got: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, key=key: got.__setitem__(key, out))
             for m, key in ((fb.output, "y"), (pb.intermediate, "act"))]
    hooks += [fb.output.LayerNorm.register_forward_pre_hook(lambda mod, args: got.__setitem__("z", args[0])),
              pb.intermediate.register_forward_pre_hook(lambda mod, args: got.__setitem__("a", args[0]))]
    a_rows, y_rows, float_out = [], [], []
    gram = cross = None
    try:
        for f_item, p_item in zip(float_in, pruned_in):
            float_out.append(_hidden(fb(*f_item[0], **f_item[1])))
            z, y = got["z"], got["y"]
            pb(*p_item[0], **p_item[1])
            mask = p_item[2]
            a = _real_tokens(got["a"], mask).reshape(-1, got["a"].shape[-1])
            act = _real_tokens(got["act"], mask).reshape(-1, got["act"].shape[-1])
            x1 = torch.cat([act, torch.ones(act.shape[0], 1, dtype=act.dtype)], 1)
            target = _real_tokens(z, mask).reshape(-1, z.shape[-1]) - a
            g, c = (x1.t() @ x1).double(), (x1.t() @ target).double()  # float32 products per batch, summed in float64
            gram, cross = (g, c) if gram is None else (gram + g, cross + c)
            a_rows.append(a)
            y_rows.append(_real_tokens(y, mask).reshape(-1, y.shape[-1]))
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(a_rows), torch.cat(y_rows), gram, cross, float_out


def _train_ffn(block: nn.Module, a: torch.Tensor, y: torch.Tensor, steps: int, lr: float, seed: int) -> float:
    """Adam on the FFN (intermediate.dense, output.dense, output.LayerNorm) of ``block`` so that
    ``block.output(block.intermediate(a), a)`` matches ``y`` (mean squared error, 1024 random tokens
    a step, cosine learning-rate decay); returns the final error relative to ``y``'s variance."""
    params = [p for m in (block.intermediate, block.output) for p in m.parameters()]
    flags = [p.requires_grad for p in params]

    def ffn(x: torch.Tensor) -> torch.Tensor:
        return block.output(block.intermediate(x), x)

    try:
        for p in params:
            p.requires_grad_(True)
        if steps:
            opt = torch.optim.Adam(params, lr=lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
            gen = torch.Generator().manual_seed(seed)
            for _ in range(steps):
                rows = torch.randint(0, a.shape[0], (min(1024, a.shape[0]),), generator=gen)
                opt.zero_grad()
                F.mse_loss(ffn(a[rows]), y[rows]).backward()
                opt.step()
                sched.step()
        with torch.no_grad():
            return float(F.mse_loss(ffn(a), y) / y.var().clamp(min=1e-30))
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
            p.grad = None


def _ffn_gram(model: nn.Module, inter: nn.Module, calib_data: Any) -> torch.Tensor:
    """Gram matrix (float64) of ``[activations, 1]`` at the output of ``inter`` over ``calib_data``
    (padding positions, ``attention_mask`` 0 in a dict batch, left out); its last diagonal entry is
    the token count. Each forward stops once ``inter`` has run (the later blocks are not needed)."""
    from ..interop.convert import _real_tokens, _StopForward, _token_mask

    acc: dict[str, Any] = {}

    def hook(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
        a = _real_tokens(out.detach(), acc.get("mask"))
        a = a.reshape(-1, out.shape[-1]).double()
        a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], 1)
        acc["g"] = acc.get("g", 0) + a.t() @ a
        raise _StopForward

    h = inter.register_forward_hook(hook)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in [calib_data] if isinstance(calib_data, (torch.Tensor, Mapping)) else calib_data:
                acc["mask"] = _token_mask(batch)
                try:
                    _run(model, batch)
                except _StopForward:
                    pass
    finally:
        h.remove()
        model.train(was)
    if "g" not in acc:
        raise ValueError("calib_data: no batch reached the FFN blocks")
    return acc["g"]


def _refit(w2: nn.Linear, gram: torch.Tensor, idx: torch.Tensor, damp: float) -> None:
    """``w2`` (out, k) + bias refit on the kept inputs ``idx``: least squares against the full layer."""
    k = w2.in_features
    full = _with_bias(w2)  # (out, k + 1)
    bias = w2.bias is not None  # without a bias the constant column is not refit
    kept = torch.cat([idx, torch.tensor([k])]) if bias else idx
    g_kk = gram[kept][:, kept]
    ridge = torch.ones(len(kept), dtype=torch.float64)
    if bias:
        ridge[-1] = 0.0
    g_kk = g_kk + damp * float(gram.diagonal()[idx].mean()) * torch.diag(ridge)
    sol = torch.linalg.solve(g_kk, gram[kept] @ full.t()).t()  # (out, kept)
    with torch.no_grad():
        w2.weight = nn.Parameter(sol[:, : len(idx)].to(w2.weight.dtype).contiguous())
        if bias:
            w2.bias = nn.Parameter(sol[:, -1].to(w2.bias.dtype).contiguous())
    w2.in_features = len(idx)


def prune_attention_heads(
    model: nn.Module,
    heads: Union[float, Mapping[int, Sequence[int]]],
    *,
    importance: str = "l2",
) -> nn.Module:
    """Removes attention heads of BERT-style self-attention (``query``/``key``/``value`` Linear
    layers with ``num_attention_heads`` and ``attention_head_size``, followed by ``output.dense``):
    their rows in query/key/value and their columns in the attention output projection. The
    same as Hugging Face's former ``prune_heads`` (removed in transformers 5), for the attention
    implementations that reshape with ``-1`` heads (transformers >= 5).

    Args:
        model: never modified (a deep copy is pruned).
        heads: a dict block index -> head indices to remove (as ``prune_heads`` took), or a share
            in [0, 1) of each block's heads removed by importance (the L2 / L1 norm of the head's
            query, key, value rows and output columns).
        importance: "l2" or "l1" (used with a share).

    Raises:
        ValueError: a share outside [0, 1), a block or head index that does not exist, all heads of
            a block removed, or the model has no BERT-style attention.
    """
    model = _check_model(model)
    if importance not in ("l1", "l2"):
        raise ValueError(f"importance: expected 'l1' or 'l2' for heads, got {importance!r}")
    atts = [m for _, m in model.named_modules() if _is_bert_attention(m)]
    if not atts:
        raise ValueError(f"prune_attention_heads: {type(model).__name__} has no BERT-style attention "
                         "(self.query/key/value and output.dense)")
    if isinstance(heads, Mapping):
        for blk, hs in heads.items():
            if not isinstance(blk, int) or not 0 <= blk < len(atts):
                raise ValueError(f"heads: block {blk!r} does not exist (the model has {len(atts)})")
            n_heads = atts[blk].self.num_attention_heads
            bad = [h for h in hs if not isinstance(h, int) or not 0 <= h < n_heads]
            if bad:
                raise ValueError(f"heads: block {blk} has heads 0..{n_heads - 1}, got {bad}")
            if len(set(hs)) >= n_heads:
                raise ValueError(f"heads: removing every head of block {blk} is not supported")
    else:
        _check_amount(heads, "heads")
    work = copy.deepcopy(model)
    atts = [m for _, m in work.named_modules() if _is_bert_attention(m)]
    report = []
    for i, att in enumerate(atts):
        sa, out = att.self, att.output.dense
        n_heads, d = sa.num_attention_heads, sa.attention_head_size
        if isinstance(heads, Mapping):
            drop = set(heads.get(i, ()))
            kept_heads = [h for h in range(n_heads) if h not in drop]
        else:
            p = "l1" if importance == "l1" else "l2"
            per_row = sum(_row_norms(lin.weight, p) for lin in (sa.query, sa.key, sa.value))
            per_row = per_row + _row_norms(out.weight.t(), p)
            s = per_row.reshape(n_heads, d).sum(1)
            kept_heads = _topk_sorted(s, _keep_count(n_heads, heads, 1)).tolist()
        if len(kept_heads) == n_heads:
            report.append({"layer": f"block {i}", "kind": "attention heads", "before": n_heads, "after": n_heads})
            continue
        idx = torch.tensor([h * d + j for h in kept_heads for j in range(d)])
        for lin in (sa.query, sa.key, sa.value):
            _slice_out(lin, idx)
        _slice_in(out, idx, 1)
        sa.num_attention_heads = len(kept_heads)
        sa.all_head_size = len(kept_heads) * d
        report.append({"layer": f"block {i}", "kind": "attention heads", "before": n_heads, "after": len(kept_heads)})
    work._lowbit_prune_report = PruneReport(report)
    return work


def _is_bert_attention(m: nn.Module) -> bool:
    sa = getattr(m, "self", None)
    return (all(isinstance(getattr(sa, k, None), nn.Linear) for k in ("query", "key", "value"))
            and hasattr(sa, "num_attention_heads") and hasattr(sa, "attention_head_size")
            and isinstance(getattr(getattr(m, "output", None), "dense", None), nn.Linear))


# --------------------------------------------------------------------------------------------
# unstructured and N:M masks (weights zeroed; the mask rides on the module for reapply_masks)


def _set_mask(m: nn.Module, mask: torch.Tensor) -> None:
    old = getattr(m, _MASK_ATTR, None)
    if old is not None:
        mask = mask & old
    with torch.no_grad():
        m.weight.mul_(mask.to(m.weight.dtype))
    setattr(m, _MASK_ATTR, mask)


def _magnitude_masks(targets: Mapping[str, nn.Module], amount: float, scope: str) -> dict[str, torch.Tensor]:
    """Masks keeping the largest |w| (exactly ``floor(numel * amount)`` zeroed per layer or overall;
    ties broken by position, so the count is exact)."""
    if scope == "layer":
        out = {}
        for n, m in targets.items():
            w = m.weight.detach().abs().reshape(-1)
            k = int(w.numel() * amount)
            mask = torch.ones_like(w, dtype=torch.bool)
            if k:
                mask[torch.argsort(w, stable=True)[:k]] = False
            out[n] = mask.reshape(m.weight.shape)
        return out
    flat = torch.cat([m.weight.detach().abs().reshape(-1) for m in targets.values()])
    k = int(flat.numel() * amount)
    mask = torch.ones_like(flat, dtype=torch.bool)
    if k:
        mask[torch.argsort(flat, stable=True)[:k]] = False
    out, start = {}, 0
    for n, m in targets.items():
        out[n] = mask[start : start + m.weight.numel()].reshape(m.weight.shape)
        start += m.weight.numel()
    return out


def _check_scope(scope: str) -> str:
    if scope not in ("layer", "global"):
        raise ValueError(f"scope: expected 'layer' or 'global', got {scope!r}")
    return scope


def prune_magnitude(
    model: nn.Module,
    amount: float,
    *,
    scope: str = "layer",
    layers: Optional[Sequence[str]] = None,
    exclude: Sequence[str] = (),
    inplace: bool = False,
) -> nn.Module:
    """Unstructured magnitude pruning (Han et al. 2015): zeroes the ``floor(numel * amount)``
    smallest |weights| of each Linear / Conv1d / Conv2d (``scope="layer"``) or across all of them
    (``scope="global"``). Biases are kept. The mask rides on the module (re-applied after optimizer
    steps by :func:`reapply_masks` and :func:`lowbit.distill`); existing masks are kept (AND).

    Zeroed weights alone neither shrink nor speed up the dense kernels: this is for accuracy
    studies and for N:M / compressed formats.

    Raises:
        ValueError: amount outside [0, 1), unknown layer names, a bad scope. The model is unchanged.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(8, 8))
        >>> p = lowbit.prune_magnitude(m, 0.75)
        >>> int((p[0].weight == 0).sum())
        48
    """
    model = _check_model(model)
    amount = _check_amount(amount)
    _check_scope(scope)
    layers = _check_names(model, layers, "layers")
    exclude = _check_names(model, exclude, "exclude") or []
    _weighted(model, layers, exclude)
    work = model if inplace else copy.deepcopy(model)
    targets = _weighted(work, layers, exclude)
    for n, mask in _magnitude_masks(targets, amount, scope).items():
        _set_mask(targets[n], mask)
    return work


def prune_n_m(
    model: nn.Module,
    n: int = 2,
    m: int = 4,
    *,
    layers: Optional[Sequence[str]] = None,
    exclude: Sequence[str] = (),
    inplace: bool = False,
) -> nn.Module:
    """N:M semi-structured sparsity (Mishra et al. 2021, "Accelerating Sparse Deep Neural
    Networks"): in every run of ``m`` consecutive weights along a layer's input (a Linear row; a
    Conv weight row flattened as (in_channels, kh, kw)), the ``m - n`` smallest |w| are zeroed and
    ``n`` kept (ties: the lower index is kept). The mask rides on the module as with
    :func:`prune_magnitude`. For sparse QAT, apply it to the :func:`lowbit.prepare_qat` model (its
    QAT layers hold the masks; :func:`lowbit.distill` keeps them through training, ``convert`` keeps
    the zeros).

    Raises:
        ValueError: not ``0 < n < m``, or ``m`` does not divide a selected layer's input size (the
            layer is named: pass ``exclude`` for it). The model is unchanged.

    Example:
        >>> import torch
        >>> p = lowbit.prune_n_m(torch.nn.Sequential(torch.nn.Linear(8, 4)), 2, 4)
        >>> int((p[0].weight != 0).sum())
        16
    """
    model = _check_model(model)
    for v, what in ((n, "n"), (m, "m")):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{what}: expected an int, got {type(v).__name__}")
    if not 0 < n < m:
        raise ValueError(f"n, m: expected 0 < n < m, got n={n}, m={m}")
    layers = _check_names(model, layers, "layers")
    exclude = _check_names(model, exclude, "exclude") or []
    for name, mod in _weighted(model, layers, exclude).items():
        k = mod.weight[0].numel()
        if k % m:
            raise ValueError(f"m: {m} does not divide the input size {k} of layer '{name}' (pass exclude=[{name!r}])")
    work = model if inplace else copy.deepcopy(model)
    for mod in _weighted(work, layers, exclude).values():
        w = mod.weight.detach().abs().reshape(-1, m)
        order = torch.argsort(w, dim=1, descending=True, stable=True)[:, :n]
        mask = torch.zeros_like(w, dtype=torch.bool).scatter_(1, order, True)
        _set_mask(mod, mask.reshape(mod.weight.shape))
    return work


def reapply_masks(model: nn.Module) -> int:
    """Zeroes again, in place, the weights that :func:`prune_magnitude`, :func:`prune_n_m` or a
    :class:`GradualPruner` masked (call after each optimizer step when fine-tuning a sparse model).
    Returns the number of masked layers."""
    count = 0
    with torch.no_grad():
        for mod in _check_model(model).modules():
            mask = getattr(mod, _MASK_ATTR, None)
            if mask is not None:
                mod.weight.mul_(mask.to(mod.weight.dtype))
                count += 1
    return count


class GradualPruner:
    """Gradual magnitude pruning with the cubic schedule of Zhu & Gupta 2017 ("To prune, or not to
    prune"): at step t in [start, start + steps] the target sparsity is
    ``final + (initial - final) * (1 - (t - start) / steps) ** 3``; every ``frequency`` steps the
    masks are recomputed from the current weights (keeping earlier zeros), and every :meth:`step`
    re-applies them. Works **in place** on the training model given.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(8, 8))
        >>> pruner = lowbit.GradualPruner(m, 0.5, steps=4)
        >>> [round(pruner.step(), 3) for _ in range(5)]
        [0.289, 0.438, 0.492, 0.5, 0.5]
    """

    def __init__(self, model: nn.Module, final_amount: float, *, steps: int, start: int = 0,
                 initial_amount: float = 0.0, frequency: int = 1, scope: str = "layer",
                 layers: Optional[Sequence[str]] = None, exclude: Sequence[str] = ()) -> None:
        self.model = _check_model(model)
        self.final_amount = _check_amount(final_amount, "final_amount")
        self.initial_amount = _check_amount(initial_amount, "initial_amount")
        for v, what, lo in ((steps, "steps", 1), (start, "start", 0), (frequency, "frequency", 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{what}: expected an int >= {lo}, got {v!r}")
        self.steps, self.start, self.frequency = steps, start, frequency
        self.scope = _check_scope(scope)
        layers = _check_names(model, layers, "layers")
        exclude = _check_names(model, exclude, "exclude") or []
        self.targets = _weighted(model, layers, exclude)
        self.t = 0
        self.amount = 0.0

    def target(self, t: int) -> float:
        """The scheduled sparsity at step ``t``."""
        if t < self.start:
            return 0.0
        frac = min(1.0, (t - self.start) / self.steps)
        return self.final_amount + (self.initial_amount - self.final_amount) * (1.0 - frac) ** 3

    def step(self) -> float:
        """Advances one step (call after ``optimizer.step()``); returns the sparsity now applied."""
        self.t += 1
        due = self.t >= self.start and ((self.t - self.start) % self.frequency == 0 or self.t >= self.start + self.steps)
        goal = self.target(self.t)
        reapply_masks(self.model)  # earlier zeros first, so the new masks contain them
        if due and goal > self.amount:
            for n, mask in _magnitude_masks(self.targets, goal, self.scope).items():
                _set_mask(self.targets[n], mask)
            self.amount = goal
        return self.amount


# --------------------------------------------------------------------------------------------
# report


def sparsity_report(model: nn.Module) -> list[dict[str, Any]]:
    """Per Linear / Conv layer (float or lowbit-quantized): weight shape, share of zero weights
    (of the stored values for quantized layers), whether a pruning mask rides on it, and how the
    weights are stored ("dense", or "bitmask + values" after :func:`lowbit.sparse_storage`).

    Example:
        >>> import torch
        >>> rows = lowbit.sparsity_report(lowbit.prune_n_m(torch.nn.Sequential(torch.nn.Linear(8, 4))))
        >>> rows[0]["layer"], rows[0]["sparsity"]
        ('0', 0.5)
    """
    from ..nn.linear import _QuantBase

    rows = []
    for name, mod in _check_model(model).named_modules():
        if type(mod) in (nn.Linear, nn.Conv1d, nn.Conv2d):
            w = mod.weight.detach()
        elif isinstance(mod, _QuantBase):
            w = mod.dequantized_weight() if hasattr(mod, "dequantized_weight") else None
            if w is None:
                continue
        else:
            continue
        rows.append({"layer": name, "type": type(mod).__name__, "shape": tuple(w.shape),
                     "sparsity": float((w == 0).float().mean()), "masked": hasattr(mod, _MASK_ATTR),
                     "stored": "bitmask + values" if "_lowbit_sparse" in mod.__dict__ else "dense"})
    return rows
