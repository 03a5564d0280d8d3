"""Whole-model transforms: quantize_model (dynamic / static / weight-only), prepare_qat, convert,
summary. Public torch layer built from lowbit.nn, lowbit.observers and lowbit.calibrate.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import nn

from ..core.calibration import _progress
from ..core.clipping import MSEClip, mse_clip_quantize
from ..core.config import QuantConfig, as_config
from ..core.metrics import format_bytes
from ..core.schemes import Int4Weights, Int8Weights, StaticActivations
from ..nn import (
    FakeQuantize,
    QATConv1d,
    QATConv2d,
    QATLinear,
    QuantConv1d,
    QuantConv2d,
    QuantEmbedding,
    QuantEmbeddingBag,
    QuantLinear,
)
from ..nn._common import is_conv1d, linear_shape, rotate_input
from ..nn.decompose import decomposable, decomposed, decomposed_names
from ..nn.linear import _QuantBase
from ..nn.norm import LayerNorm, use_lowbit_layernorm_
from . import distributed as _dist
from .equalize import InputScaled

__all__ = ["Summary", "convert", "prepare_qat", "quantize_model", "run_batch", "summary"]

_REASONS_ATTR = "_lowbit_float_layers"
_FOLDED_ATTR = "_lowbit_folded_bn"
_CONFIG_ATTR = "_lowbit_config"


# --------------------------------------------------------------------------------------------
# helpers


def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return model


def _param_bytes(m: nn.Module, seen: Optional[set[int]] = None) -> int:
    """Bytes of ``m``'s own parameters and buffers; with ``seen`` (ids of tensors already
    counted, updated here) a tensor shared with an earlier module counts 0."""
    total = 0
    for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
        if seen is not None:
            if id(t) in seen:
                continue
            seen.add(id(t))
        total += t.numel() * t.element_size()
    return total


def _float_bytes(model: nn.Module) -> dict[str, int]:
    """name -> float bytes of each module's own tensors, a tensor shared by several modules
    counted at the first of them (``named_modules`` order), as :func:`lowbit.metrics.model_nbytes`."""
    seen: set[int] = set()
    return {n: _param_bytes(m, seen) for n, m in model.named_modules()}


def _aliases(model: nn.Module) -> dict[int, list[str]]:
    """id(module) -> every name the module has (a module registered twice has two)."""
    out: dict[int, list[str]] = {}
    for n, m in model.named_modules(remove_duplicate=False):
        out.setdefault(id(m), []).append(n)
    return out


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _unsupported_reason(name: str, m: nn.Module, cfg: QuantConfig) -> Optional[str]:
    """Why the Linear/Conv2d ``m`` stays float under ``cfg``, or None if it can be quantized."""
    if cfg.is_excluded(name):
        return "excluded by config"
    w = m.weight
    if not w.is_floating_point():
        return f"weight dtype {w.dtype} is not floating point"
    if w.device.type == "meta":
        return "weights on the meta device"
    if not bool(torch.isfinite(w).all()):
        return "weights contain NaN or inf"
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        if isinstance(m.padding, str) and m.padding == "same":
            total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
            if any(t % 2 for t in total) or tuple(m.stride) != (1, 1):
                return "padding='same' with an asymmetric padding is not supported"
    return None


def _unsupported(name: str, why: str, cfg: QuantConfig, reasons: dict[str, str]) -> None:
    """A layer that cannot be quantized as ``cfg`` asks: raises ValueError (the default), or with
    ``on_unsupported="float"`` records the reason (shown by :func:`summary`) and warns."""
    if cfg.on_unsupported == "raise":
        raise ValueError(
            f"layer '{name}' cannot be quantized as configured: {why}. To keep it float, add it to "
            f"QuantConfig(exclude=[{name!r}]) or pass on_unsupported='float' (it is then listed in "
            "lowbit.summary)")
    warnings.warn(f"lowbit: layer '{name}' stays float: {why}", UserWarning, stacklevel=3)
    reasons[name] = why


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Layers lowbit replaces: plain nn.Linear and nn.Conv2d, and transformers' Conv1D (GPT-2's
    Linear with a transposed weight, detected by duck typing: transformers is never imported)."""
    return [(n, m) for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv1d, nn.Conv2d) or is_conv1d(m)]


def _is_linear(m: nn.Module) -> bool:
    return type(m) is nn.Linear or is_conv1d(m)


def _shared_weights(model: nn.Module, cands: list[tuple[str, nn.Module]]) -> list[list[tuple[str, nn.Module]]]:
    """Groups of two or more candidate layers and plain nn.Embedding layers that use the same weight
    Parameter (tied input embedding and LM head; Linear layers sharing a weight), in module order."""
    owners: dict[int, list[tuple[str, nn.Module]]] = {}
    names = {n for n, _ in cands}
    for n, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor) and (n in names or type(m) is nn.Embedding):
            owners.setdefault(id(w), []).append((n, m))
    return [g for g in owners.values() if len(g) > 1]


def _embedding_quantized(name: str, m: nn.Embedding, config: QuantConfig) -> bool:
    cfg = config.for_layer(name)
    return cfg.embedding is not None and not cfg.is_excluded(name) and m.max_norm is None


_ROW_SCHEME = Int8Weights()  # the one layout a QuantLinear and a QuantEmbedding can share (int8 rows)


def _shared_policy(
    group: list[tuple[str, nn.Module]], config: QuantConfig, why: dict[str, Optional[str]]
) -> tuple[dict[str, str], Optional[str]]:
    """The policy for layers sharing one weight: it is quantized once and stored once, or all of
    them stay float. Returns (layer -> reason it stays float, the embedding whose int8 rows the
    layers share or None). ``why`` holds each candidate's own reason to stay float (or None).

    - Linear layers (same orientation) with the same weight scheme: quantized once, they share the
      weight buffers; if one of them stays float (excluded, unsupported) or the schemes differ, all
      stay float (a float copy beside a quantized one would make the model bigger).
    - A Linear tied to an Embedding (GPT-2's LM head): quantized only when the Embedding is too
      (``QuantConfig(embedding='int8')``) and the Linear's weights are int8 per channel symmetric,
      the layout of the Embedding's int8 rows; both then read one int8 table.
    - Anything else (Conv2d, Conv1D tied to a Linear, two Embeddings): all stay float.
    """
    embs = [n for n, m in group if type(m) is nn.Embedding]
    lins = [(n, m) for n, m in group if type(m) is not nn.Embedding]
    names = [n for n, _ in group]

    def others(n: str) -> str:
        return ", ".join(repr(o) for o in names if o != n)

    if len(embs) > 1 or any(not _is_linear(m) for _, m in lins) or len({type(m) for _, m in lins}) > 1:
        return {n: f"shares its weight with {others(n)}: lowbit shares weights only between Linear "
                   "layers and one Embedding" for n in names}, None
    if embs:
        emb = embs[0]
        emb_mod = group[names.index(emb)][1]
        if not _embedding_quantized(emb, emb_mod, config):
            return {n: f"tied to '{emb}'; quantize the embedding too with QuantConfig(embedding='int8')"
                    for n, _ in lins}, None
        bad = [n for n, _ in lins if why.get(n) is None and config.for_layer(n).weight != _ROW_SCHEME]
        blocked = [n for n, _ in lins if why.get(n) is not None]
        if bad or blocked:
            culprit = (bad or blocked)[0]
            out = {emb: f"tied to '{culprit}', which cannot read its int8 rows: embedding kept float"}
            for n, _ in lins:
                out[n] = (f"tied to '{emb}': a tied weight is stored once, as the embedding's int8 rows, "
                          f"so it needs weight='int8' (per channel, symmetric), not "
                          f"{config.for_layer(n).weight.describe()}") if n in bad else                     (why[n] or f"tied to '{emb}' with '{culprit}', which stays float")
            return out, None
        return {}, emb
    blocked = [n for n, _ in lins if why.get(n) is not None]
    schemes = {config.for_layer(n).weight for n, _ in lins}
    if blocked or len(schemes) > 1:
        cause = f"'{blocked[0]}' stays float" if blocked else "they are configured with different weight schemes"
        return {n: why.get(n) or f"shares its weight with {others(n)} and {cause}" for n, _ in lins}, None
    return {}, None


def _share_buffers(q: _QuantBase, first: _QuantBase, same_bias: bool) -> None:
    """Makes ``q`` use ``first``'s weight buffers (the same tensor objects), and its bias when the
    float layers shared the bias Parameter too."""
    for b in first.scheme.storage_spec(first.out_flat, first.in_flat):
        q._buffers[b] = first._buffers[b]
    if same_bias and first.bias is not None:
        q._buffers["bias"] = first._buffers["bias"]


def _float_leaves(model: nn.Module, handled: set[str]) -> dict[str, str]:
    """Leaf modules that hold parameters and that no transform touched, with a reason."""
    out = {}
    for n, m in model.named_modules():
        if n in handled or isinstance(
            m, (_QuantBase, QuantEmbedding, QATLinear, QATConv2d, FakeQuantize)
        ):
            continue
        if any(True for _ in m.parameters(recurse=False)):
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                base = next(b for b in (nn.Linear, nn.Conv1d, nn.Conv2d) if isinstance(m, b))
                out[n] = f"subclass {type(m).__name__} of {base.__name__} is not replaced"
            elif is_conv1d(m):
                out[n] = "Conv1D (transformers) not replaced"
            elif type(m) in (nn.Embedding, nn.EmbeddingBag):
                out[n] = f"{type(m).__name__} kept float (QuantConfig(embedding='int8') stores it as int8 rows)"
            elif type(m) in (nn.LayerNorm, LayerNorm) and len(m.normalized_shape) == 1:
                out[n] = "LayerNorm kept float32 (on lowbit's LayerNorm kernel)"
            elif hasattr(type(m), "_float_note"):  # a decomposed layer's own float part (lowbit.nn.decompose)
                out[n] = type(m)._float_note
            else:
                out[n] = f"{type(m).__name__} has no lowbit kernel"
    return out


def _conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, batchnorm) module names where the BatchNorm's only input is the convolution's output
    and nothing else reads that output: from a torch.fx trace when the model traces, otherwise
    from consecutive children of nn.Sequential containers."""
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    bns = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    if not any(isinstance(m, bns) for m in model.modules()):
        return []
    try:
        import torch.fx

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # models with data-dependent control flow do not trace
        graph = None
    pairs = []
    if graph is not None:
        mods = dict(model.named_modules())
        for node in graph.nodes:
            if node.op != "call_module" or not isinstance(mods.get(node.target), bns) or len(node.args) != 1:
                continue
            src = node.args[0]
            if (isinstance(src, torch.fx.Node) and src.op == "call_module" and type(mods.get(src.target)) in convs
                    and len(src.users) == 1):
                pairs.append((src.target, node.target))
        return pairs
    for name, m in model.named_modules():
        if isinstance(m, nn.Sequential):
            kids = list(m.named_children())
            for (n1, a), (n2, b) in zip(kids, kids[1:]):
                if type(a) in convs and isinstance(b, bns):
                    pre = f"{name}." if name else ""
                    pairs.append((pre + n1, pre + n2))
    return pairs


def _fold_batchnorm(conv: nn.Module, bn: nn.Module) -> None:
    """Folds an eval-mode BatchNorm into the preceding convolution, in place:
    ``w' = w * gamma / sqrt(var + eps)`` per output channel and
    ``b' = (b - mean) * gamma / sqrt(var + eps) + beta`` (in float64, stored in the weight's dtype)."""
    with torch.no_grad():
        var = bn.running_var.double()
        factor = torch.rsqrt(var + bn.eps)
        if bn.weight is not None:
            factor = factor * bn.weight.double()
        b = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
        b = (b - bn.running_mean.double()) * factor
        if bn.bias is not None:
            b = b + bn.bias.double()
        w = conv.weight.double() * factor.reshape(-1, *([1] * (conv.weight.dim() - 1)))
        conv.weight = nn.Parameter(w.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
        conv.bias = nn.Parameter(b.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)


def _fold_batchnorms(work: nn.Module, config: QuantConfig) -> dict[str, str]:
    """Folds each BatchNorm that directly follows a (not excluded) Conv1d/Conv2d into it and
    replaces it with nn.Identity; returns conv name -> BatchNorm name."""
    folded = {}
    for conv_name, bn_name in _conv_bn_pairs(work):
        conv, bn = work.get_submodule(conv_name), work.get_submodule(bn_name)
        if (config.for_layer(conv_name).is_excluded(conv_name) or bn.running_mean is None
                or bn.num_features != conv.out_channels or not conv.weight.is_floating_point()):
            continue
        _fold_batchnorm(conv, bn)
        _set_submodule(work, bn_name, nn.Identity())
        folded[conv_name] = bn_name
    return folded


def _quantize_embeddings(
    work: nn.Module,
    config: QuantConfig,
    reasons: dict[str, str],
    float_bytes: dict[str, int],
    tied: Mapping[str, QuantLinear],
) -> set[str]:
    """Replaces plain nn.Embedding layers whose config asks for it; returns the names handled.
    An embedding in ``tied`` (name -> the QuantLinear of its tied LM head) reads that layer's
    ``weight_int8`` / ``weight_scale`` buffers (one stored table); one in ``reasons`` stays float."""
    done = set()
    for name, m in list(work.named_modules()):
        if type(m) not in (nn.Embedding, nn.EmbeddingBag):
            continue
        cfg = config.for_layer(name)
        if name in reasons:
            done.add(name)
            continue
        if cfg.embedding is None:
            continue
        done.add(name)
        if cfg.is_excluded(name):
            reasons[name] = "excluded by config"
            continue
        try:
            q = (QuantEmbeddingBag if type(m) is nn.EmbeddingBag else QuantEmbedding).from_float(m, name=name)
        except ValueError as e:
            reasons[name] = str(e)
            continue
        if name in tied:
            q._buffers["weight_int8"] = tied[name]._buffers["weight_int8"]
            q._buffers["weight_scale"] = tied[name]._buffers["weight_scale"]
        q._float_nbytes = float_bytes[name]
        _set_submodule(work, name, q)
    return done


def run_batch(model: nn.Module, batch: Any) -> Any:
    """Runs one calibration batch: a tensor -> ``model(x)``; a dict -> ``model(**batch)`` (e.g.
    tokenizer output); a tuple/list -> ``model(batch[0])`` (DataLoader ``(inputs, labels)``)."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("calib_data: empty batch")
        return model(batch[0])
    return model(batch)


def _token_mask(batch: Any) -> Optional[torch.Tensor]:
    """The (batch, tokens) attention mask of a tokenizer-style dict batch, else None."""
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    return mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None


def _real_tokens(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """The rows of a (batch, tokens, features) layer input at unmasked positions: padding tokens
    never reach a pooled or attended output, so they must not steer a weight's rounding."""
    if mask is None or x.dim() != 3 or tuple(x.shape[:2]) != tuple(mask.shape):
        return x
    return x[mask.to(torch.bool)]


def _float_tensor(name: str, x: Any, kind: str = "received {} input") -> torch.Tensor:
    """``x`` when it is a float tensor, else TypeError naming the layer (``kind`` formats the type)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"layer '{name}' {kind.format(type(x).__name__)}, expected a float tensor")
    return x


def _calib_batches(calib_data: Any, what: str) -> Iterable:
    """``calib_data`` as an iterable of batches (one tensor or dict is one batch); ValueError if None."""
    if calib_data is None:
        raise ValueError(f"calib_data: {what} needs calibration data (an iterable of batches)")
    return [calib_data] if isinstance(calib_data, (torch.Tensor, Mapping)) else calib_data


def _batch_error(i: int, layer: Optional[str], e: Exception) -> ValueError:
    """The error for calibration batch ``i`` failing (in ``layer``, when known)."""
    where = f" in layer '{layer}'" if layer else ""
    return ValueError(f"calib_data: batch {i} does not fit the model{where}: {type(e).__name__}: {e}")


def _run_with_hooks(
    model: nn.Module,
    targets: dict[str, nn.Module],
    on_input: Any,
    calib_data: Any,
    progress: bool,
    what: str,
    real_tokens: bool = False,
    outputs: bool = False,
) -> dict[str, int]:
    """Runs ``calib_data`` through ``model`` (eval mode, no grad) and calls ``on_input(name, x)``
    with the input of every target layer (with ``real_tokens``, only its rows at positions the
    batch's ``attention_mask`` keeps; with ``outputs``, its output instead); returns name -> number
    of calls."""
    calib_data = _calib_batches(calib_data, what)
    seen: dict[str, int] = {n: 0 for n in targets}
    state: dict[str, Any] = {"layer": None, "batch": -1, "mask": None}
    handles = []

    def observe(name: str, x: Any, kind: str) -> None:
        x = _float_tensor(name, x, kind).detach().cpu()
        on_input(name, _real_tokens(x, state["mask"]) if real_tokens else x)
        seen[name] += 1

    def pre_hook(name: str):
        def hook(mod: nn.Module, args: tuple) -> None:
            state["layer"] = name
            if not outputs:
                observe(name, args[0] if args else None, "received {} input")

        return hook

    for n, m in targets.items():
        handles.append(m.register_forward_pre_hook(pre_hook(n)))
        if outputs:
            handles.append(m.register_forward_hook(lambda mod, args, out, n=n: observe(n, out, "returned {}")))
    was_training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            for batch in _progress(calib_data, progress, desc=what):
                state["batch"] += 1
                state["layer"] = None
                state["mask"] = _token_mask(batch)
                try:
                    run_batch(model, batch)
                except Exception as e:  # re-raised with the batch and layer that failed
                    raise _batch_error(state["batch"], state["layer"], e) from e
    finally:
        for h in handles:
            h.remove()
        for m, t in was_training.items():
            m.training = t
    if state["batch"] < 0:
        raise ValueError("calib_data: no batches (the iterable is empty)")
    return seen


def _calibrate(
    model: nn.Module,
    targets: dict[str, nn.Module],
    cfgs: dict[str, QuantConfig],
    calib_data: Any,
    progress: bool,
    group: Any = None,
) -> dict[str, tuple[float, int]]:
    """Observes the inputs of ``targets`` over ``calib_data``; returns name -> (scale, zero_point)
    for the layers that saw data."""
    observers = {n: cfgs[n].activation.make_observer() for n in targets}
    seen = _dist.run(group, "static calibration", lambda: _run_with_hooks(  # issue 17: group=None runs as before
        model, targets, lambda n, x: observers[n].update(x), calib_data, progress, "static activation quantization"))
    seen = _dist.merge_observers(group, "static calibration", observers, seen)  # issue 17: no-op without a group
    return {n: tuple(observers[n].compute_qparams()) for n in targets if seen[n]}


def _layer_rows(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows a layer's weight (n, k) multiplies: Linear inputs (..., k), or Conv2d patches in
    lowbit's (kh, kw, in_channels) order (an nn.Conv1d as a Conv2d with a (1, k) kernel on
    (N, C, 1, L))."""
    if not isinstance(m, (nn.Conv1d, nn.Conv2d)):
        return x.reshape(-1, x.shape[-1])
    x = x.to(torch.float32)
    one_d = isinstance(m, nn.Conv1d)
    ks, dil, stride = ((1, *m.kernel_size), (1, *m.dilation), (1, *m.stride)) if one_d else \
        (m.kernel_size, m.dilation, m.stride)
    if one_d:
        x = x.unsqueeze(-2)
    if isinstance(m.padding, str):  # "valid", or "same" (symmetric: others are refused earlier)
        total = [d * (k - 1) for d, k in zip(dil, ks)]
        pad = (0, 0) if m.padding == "valid" else (total[0] // 2, total[1] // 2)
    else:
        pad = (0, *m.padding) if one_d else tuple(m.padding)
    if m.padding_mode != "zeros":
        x = torch.nn.functional.pad(x, (pad[1], pad[1], pad[0], pad[0]), mode=m.padding_mode)
        pad = (0, 0)
    cols = torch.nn.functional.unfold(x, ks, dilation=dil, padding=pad, stride=stride)  # (N, C * kh * kw, L)
    n, _, length = cols.shape
    kh, kw = ks
    cols = cols.reshape(n, m.in_channels, kh, kw, length).permute(0, 4, 2, 3, 1)
    return cols.reshape(-1, kh * kw * m.in_channels)


def _collect_hessians(model: nn.Module, targets: dict[str, nn.Module], calib_data: Any,
                      progress: bool, group: Any = None) -> dict[str, Any]:
    """GPTQ statistics: name -> HessianObserver of the rows each target layer's weight multiplies."""
    from ..core.gptq import HessianObserver

    hessians = {n: HessianObserver(_weight_rows(m).shape[1]) for n, m in targets.items()}
    seen = _dist.run(group, "GPTQ statistics", lambda: _run_with_hooks(  # issue 17: group=None runs as before
        model, targets, lambda n, x: hessians[n].update(_layer_rows(targets[n], x)), calib_data, progress,
        "GPTQ statistics", real_tokens=True))
    seen = _dist.merge_hessians(group, "GPTQ statistics", hessians, seen)  # issue 17: no-op without a group
    return {n: h for n, h in hessians.items() if seen[n]}


class _StopForward(BaseException):
    """Ends a calibration pass once the layers it observes have run (a BaseException, so model code
    that catches Exception does not swallow it)."""


def _gptq_sequential(model: nn.Module, targets: dict[str, nn.Module], calib_data: Any, progress: bool,
                     quantize_layer: Any, group: Any = None) -> list[str]:
    """Layer-sequential GPTQ (the GPTQ paper's order): each layer's statistics are its inputs in the
    model whose earlier layers are already quantized, so a layer compensates the rounding error that
    reaches it. ``quantize_layer(name, hessian)`` quantizes a layer and installs it in ``model``;
    returns the names never reached.

    Layers are taken in groups: the layers that read the same input tensor (a transformer block's
    query/key/value) form one group, and each group costs one pass over the data, stopped as soon as
    a later layer is about to run. In a model built from a ``ModuleList`` of blocks (transformers),
    the passes run block by block on the cached inputs of one block (only one block's activations in
    memory; each block's output, computed once its layers are quantized, is the next block's input),
    after checking on the first batch that chaining the blocks reproduces the model; other models
    (and layers outside the blocks) run the whole model per pass. Rows at padding positions
    (``attention_mask`` 0 in a dict batch) are left out of the statistics. With a process ``group``
    every pass is a collective: the ranks must find the same layer groups, and each group's statistics
    are summed over the ranks before it is quantized."""
    calib_data = _calib_batches(calib_data, "GPTQ statistics")
    batches = calib_data if isinstance(calib_data, Sequence) else list(calib_data)  # several passes
    if not batches:
        raise ValueError("calib_data: no batches (the iterable is empty)")
    bar = _progress(range(len(targets)), progress, desc="GPTQ (layer by layer)", unit="layer")
    ticks = iter(bar)

    def passes(remaining: dict[str, nn.Module], items: Sequence[Any], run: Any, mask: Any) -> list[str]:
        return _layer_passes(remaining, items, run, mask, lambda n, h: (quantize_layer(n, h), next(ticks, None)),
                             group)

    was_training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            plan = _block_plan(model, targets, batches)
            if group is not None:  # issue 17: one plan on every rank
                _dist.check_same(group, "GPTQ (layer by layer)", {"block plan": plan is not None})
            if plan is None:
                return passes(dict(targets), batches, lambda b: run_batch(model, b), _token_mask)
            blocks, per_block, pre, post = plan
            unreached = passes(pre, batches, lambda b: run_batch(model, b), _token_mask)
            inputs = _capture_block_inputs(model, blocks[0], batches)
            for block, mine in zip(blocks, per_block):
                unreached += passes(mine, inputs, lambda it, block=block: block(*it[0], **it[1]), lambda it: it[2])
                inputs = [_advance(it, block(*it[0], **it[1])) for it in inputs]
            del inputs
            return unreached + passes(post, batches, lambda b: run_batch(model, b), _token_mask)
    finally:
        for m, t in was_training.items():
            m.training = t
        if hasattr(bar, "close"):
            bar.close()


def _layer_passes(remaining: dict[str, nn.Module], items: Sequence[Any], run: Any, mask_of: Any,
                  quantize_layer: Any, group: Any) -> list[str]:
    """The passes of :func:`_gptq_sequential` over ``items`` (``run(item)`` runs one; ``mask_of(item)``
    its attention mask or None) until every layer of ``remaining`` is quantized; returns the names
    never reached."""
    from ..core.gptq import HessianObserver

    remaining = dict(remaining)
    while remaining:
        state: dict[str, Any] = {"group": None, "input": None, "layer": None, "mask": None, "gram": None}
        hess: dict[str, HessianObserver] = {}

        def pre_hook(name: str, state: dict[str, Any] = state, hess: dict[str, HessianObserver] = hess):
            def hook(mod: nn.Module, args: tuple) -> None:
                x = _float_tensor(name, args[0] if args else None)
                members = state["group"]
                if members is None:  # the first remaining layer to run leads this pass's group
                    state["group"], state["input"] = [name], x
                elif name not in members:
                    if x is not state["input"]:  # a later layer: this item has given what it can
                        raise _StopForward
                    members.append(name)  # same input tensor as the leader (q, k, v)
                state["layer"] = name
                cached = state["gram"]
                if cached is not None and cached[0] is x and not isinstance(mod, nn.Conv2d):
                    part = cached[1]  # q, k, v: one x^T x for the input they share
                else:
                    rows = _layer_rows(mod, _real_tokens(x.detach().cpu(), state["mask"]))
                    part = HessianObserver(rows.shape[1])
                    part.update(rows)
                    if not isinstance(mod, nn.Conv2d):
                        state["gram"] = (x, part)
                hess.setdefault(name, HessianObserver(part.k)).merge(part)

            return hook

        def one_pass(state: dict[str, Any] = state, pre_hook: Any = pre_hook) -> None:
            handles = [m.register_forward_pre_hook(pre_hook(n)) for n, m in remaining.items()]
            try:
                for i, item in enumerate(items):
                    state["mask"], state["gram"] = mask_of(item), None
                    try:
                        run(item)
                    except _StopForward:
                        pass
                    except Exception as e:
                        raise _batch_error(i, state["layer"], e) from e
                    if state["group"] is not None:
                        state["input"] = None  # groups form within one item's forward
            finally:
                for h in handles:
                    h.remove()

        _dist.run(group, "GPTQ (layer by layer)", one_pass)  # issue 17: a local error reaches the other ranks
        names = state["group"] or []
        if group is not None:  # issue 17: the same layers on every rank, their statistics summed
            _dist.check_same(group, "GPTQ (layer by layer)", {"next layers": names})
            _dist.merge_hessians(group, "GPTQ (layer by layer)", {n: hess[n] for n in names}, {n: 1 for n in names})
        if not names:  # no remaining layer runs on this data
            break
        for name in names:
            quantize_layer(name, hess[name])
            del remaining[name]
    return list(remaining)


def _hidden(out: Any) -> Optional[torch.Tensor]:
    """The hidden state a block returns: the tensor itself, or the first element of a tuple/output."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _advance(item: tuple, out: Any) -> tuple:
    """A block's cached input (args, kwargs, mask) with its hidden state replaced by ``out``'s."""
    args, kwargs, mask = item
    h = _hidden(out)
    if args:
        return (h, *args[1:]), kwargs, mask
    return args, {**kwargs, "hidden_states": h}, mask


def _block_input(args: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    x = args[0] if args else kwargs.get("hidden_states")
    return x if isinstance(x, torch.Tensor) and x.is_floating_point() else None


_CACHE_KWARGS = ("past_key_value", "past_key_values", "layer_past")


def _is_cache(v: Any) -> bool:
    return type(v).__name__.endswith("Cache")


def _without_cache(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A block's arguments without its key/value cache (transformers' ``DynamicCache`` and friends,
    by keyword or position as GPT-2 passes it, or a legacy past): the block is replayed many times
    on one cached input (float, then quantized; AutoRound's steps), and a cache would grow by every
    replay's keys and values, which the next replays then attend to (and through which AutoRound's
    backward reached freed graphs)."""
    out = {}
    for k, v in kwargs.items():
        if k in _CACHE_KWARGS or _is_cache(v):
            v = None
        elif k == "use_cache":
            v = False
        out[k] = v
    return tuple(None if _is_cache(a) else a for a in args), out


def _capture_block_inputs(model: nn.Module, block: nn.Module, batches: Sequence[Any]) -> list[tuple]:
    """(args, kwargs, attention mask) of ``block``'s call for every batch; each forward stops there."""
    inputs: list[tuple] = []

    def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
        inputs.append((*_without_cache(args, kwargs), mask))
        raise _StopForward

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for i, batch in enumerate(batches):
            mask = _token_mask(batch)
            before = len(inputs)
            try:
                run_batch(model, batch)
            except _StopForward:
                pass
            except Exception as e:
                raise _batch_error(i, None, e) from e
            if len(inputs) == before:
                raise ValueError(f"calib_data: batch {i} never reached the model's first block")
    finally:
        handle.remove()
    return inputs


def _block_plan(model: nn.Module, targets: dict[str, nn.Module], batches: Sequence[Any]) -> Optional[tuple]:
    """(blocks, targets per block, targets before the blocks, after them) when the targets sit in a
    ``ModuleList`` of blocks that the model runs one after the other, each block's hidden-state output
    being the next block's input with its other arguments unchanged (checked on the first batch:
    chaining the blocks reproduces the model's own block inputs exactly); else None."""
    best = None
    for list_name, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) >= 2:
            count = sum(n.startswith(list_name + ".") for n in targets)
            if count and (best is None or count > best[2]):
                best = (list_name, m, count)
    if best is None:
        return None
    list_name, blocks, _ = best
    per_block = [{n: t for n, t in targets.items() if n.startswith(f"{list_name}.{j}.")} for j in range(len(blocks))]
    inside = {n for d in per_block for n in d}
    order: list[str] = []
    recorded: list[tuple] = []
    def block_hook(j: int):
        def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            order.append(j)
            recorded.append((j, *_without_cache(args, kwargs)))

        return hook

    handles = [t.register_forward_pre_hook(lambda mod, args, n=n: order.append(n)) for n, t in targets.items()
               if n not in inside]
    handles += [b.register_forward_pre_hook(block_hook(j), with_kwargs=True) for j, b in enumerate(blocks)]
    try:
        run_batch(model, batches[0])
    except Exception:
        return None  # the passes report the failing batch
    finally:
        for h in handles:
            h.remove()
    if [j for j, _, _ in recorded] != list(range(len(blocks))):
        return None  # blocks skipped, repeated or out of order
    for (_, args, kwargs), (_, nargs, nkwargs) in zip(recorded, recorded[1:]):
        x, nx = _block_input(args, kwargs), _block_input(nargs, nkwargs)
        if x is None or nx is None or len(args) != len(nargs) or set(kwargs) != set(nkwargs):
            return None
        rest = [(a, b) for a, b in zip(args[1:], nargs[1:])] + [(kwargs[k], nkwargs[k]) for k in kwargs
                                                                 if k != "hidden_states" or args]
        if not all(a is b or (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                              and torch.equal(a, b)) for a, b in rest):
            return None
    for (j, args, kwargs), (_, nargs, nkwargs) in zip(recorded, recorded[1:]):
        out = _hidden(blocks[j](*args, **kwargs))
        nx = _block_input(nargs, nkwargs)
        if out is None or out.shape != nx.shape or not torch.equal(out, nx):
            return None
    first = order.index(0)
    pre = {n: targets[n] for n in order[:first] if isinstance(n, str)}
    post = {n: t for n, t in targets.items() if n not in inside and n not in pre}
    return blocks, per_block, pre, post


def _weight_rows(m: nn.Module) -> torch.Tensor:
    """The float weight as lowbit stores it: (out, k), Conv2d in (kh, kw, in_channels) order."""
    w = m.weight.detach().to("cpu", torch.float32)
    if is_conv1d(m):  # transformers' Conv1D stores (in, out)
        return w.t()
    if isinstance(m, nn.Conv1d):  # a (1, k) kernel: (out, k, in) like Conv2d's (kh, kw, in)
        return w.permute(0, 2, 1).reshape(w.shape[0], -1)
    return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1) if isinstance(m, nn.Conv2d) else w


def _rotate_inputs(targets: dict[str, nn.Module], cfgs: dict[str, QuantConfig],
                   groups: list[list[tuple[str, nn.Module]]]) -> dict[int, tuple]:
    """Rotates the float Linear targets whose config asks for it (:mod:`lowbit.core.rotation`): the
    weight becomes ``W R`` and a forward pre-hook, registered before any calibration hook, rotates
    the input, so the layer computes the same and every statistic, observer and block loss sees
    what the quantized layer will. Layers with a shared weight, convolutions and widths without a
    power-of-two factor >= 8 are left alone. Returns id(layer) -> (signs, block, float weight, hook)."""
    from ..core.rotation import hadamard_signs, rotation_block

    shared = {id(m) for g in groups for _, m in g}
    out: dict[int, tuple] = {}
    for name, m in targets.items():
        rot = cfgs[name].rotation
        if rot is None or not _is_linear(m) or id(m) in shared or id(m) in out:
            continue
        k = m.weight.shape[0] if is_conv1d(m) else m.weight.shape[1]
        block = rotation_block(k, rot.block)
        if not block:
            continue
        signs = hadamard_signs(k, rot.seed)
        st = torch.from_numpy(signs)
        original = m.weight
        with torch.no_grad():  # each row of W (Conv1D: column) times R
            w = original.detach().to(torch.float32)
            w = rotate_input((w.t() if is_conv1d(m) else w).contiguous(), st, block)
        m.weight = nn.Parameter((w.t() if is_conv1d(m) else w).to(original.dtype).contiguous(),
                                requires_grad=original.requires_grad)
        hook = m.register_forward_pre_hook(
            lambda mod, args, st=st, block=block: (rotate_input(args[0], st, block), *args[1:]), prepend=True)
        out[id(m)] = (signs, block, original, hook)
    return out


def _unrotate_float(work: nn.Module, rotated: dict[int, tuple]) -> None:
    """Undoes :func:`_rotate_inputs` on the layers still float in ``work`` (the quantized ones
    rotate their inputs themselves)."""
    for _, _, _, hook in rotated.values():
        hook.remove()
    for m in work.modules():
        if id(m) in rotated:
            m.weight = rotated[id(m)][2]


def _begin(model: Any, config: Any, inplace: bool, what: str) -> tuple:
    """The shared start of quantize_model and prepare_qat: checks the model and the config's layer
    names, finds the candidate layers, copies the model (unless inplace), records the float bytes,
    folds BatchNorms and decomposes (lowbit.nn.decompose). Returns (model, config, candidates, work,
    float_bytes, folded)."""
    model = _check_model(model)
    config = as_config(config)
    parts = decomposed_names(model)  # the layers decomposition adds (lowbit.nn.decompose)
    config.check_patterns([n for n, _ in model.named_modules()] + parts)
    cands = _candidates(model)
    if not cands and not parts:
        kinds = sorted({type(m).__name__ for m in model.modules() if any(True for _ in m.parameters(recurse=False))})
        raise ValueError(
            f"{what}: {type(model).__name__} has no nn.Linear or nn.Conv2d layer to quantize"
            + (f" (layers with weights: {', '.join(kinds)})" if kinds else "")
        )
    if inplace and decomposable(model):
        raise ValueError(f"inplace: the model is itself a {type(model).__name__}, which {what} replaces by its "
                         "Linear-layer form (lowbit.nn.decompose); pass inplace=False or wrap it in a module")
    work = model if inplace else copy.deepcopy(model)
    unfolded = _float_bytes(work)  # a folded convolution's "before" is its own float weights
    # BatchNorms fold before the decomposition: torch's own layers (nn.MultiheadAttention, nn.LSTM)
    # are leaves of the fx trace that finds the pairs, which lowbit's Linear-layer forms are not, and
    # a Conv3d is still whole
    folded = _fold_batchnorms(work, config)
    if parts:
        work = decomposed(work)
        cands = _candidates(work)
    float_bytes = {**_float_bytes(work), **{n: unfolded[n] for n in folded}}
    return model, config, cands, work, float_bytes, folded


# --------------------------------------------------------------------------------------------
# public transforms


def quantize_model(
    model: nn.Module,
    config: Union[QuantConfig, Mapping, None] = None,
    *,
    calib_data: Optional[Iterable] = None,
    inplace: bool = False,
    progress: bool = True,
    process_group: Any = None,
    chain_int8: bool = True,
) -> nn.Module:
    """Replaces ``nn.Linear``, transformers' ``Conv1D`` (GPT-2; a QuantLinear holding its
    transposed weight) and ``nn.Conv2d`` (groups=1) layers with lowbit's quantized modules.

    ``config.weight`` picks the weight format (int8, int4 per channel or in groups, uint4, nf4,
    fp16, bf16, log2, ternary, binary; see :class:`lowbit.QuantConfig`) and
    ``config.activation`` the mode: "dynamic" (activations quantized per row at run time),
    "static" (per-tensor activation parameters from observers on each layer's input while
    ``calib_data`` runs through the model in eval mode under ``lowbit.calibrate``), or None
    (weight-only). Layers left in float (excluded, grouped convolutions, other layer types, static
    layers never reached by the calibration data, shapes the 4-bit kernel cannot run) are
    recorded with the reason: see :func:`summary`.

    Shared weights (one Parameter used by several layers) are quantized once and stored once: Linear
    layers sharing a weight get the same buffer objects (if one of them stays float, or their
    weight schemes differ, all stay float); a Linear tied to an Embedding (an LM head) is quantized
    only with ``embedding="int8"`` and int8 per-channel symmetric weights, and then reads the
    embedding's int8 rows; otherwise both stay float with the reason in :func:`summary` (a policy,
    not an error). A module registered under several names stays one module. So a quantized model
    is never larger than its float model.

    Args:
        model: a float model. Never modified unless ``inplace=True``.
        config: a :class:`lowbit.QuantConfig` (or a dict of its fields).
        calib_data: iterable of batches for static mode: tensors (``model(x)``), dicts
            (``model(**batch)``) or ``(inputs, labels)`` tuples (``model(inputs)``).
        inplace: modify ``model`` itself.
        progress: show a progress bar during calibration.
        process_group: None (one process, the default, also under torchrun), ``"world"`` or a
            ``torch.distributed`` ProcessGroup (gloo): a collective call; each rank passes its shard
            of ``calib_data`` and every rank gets the same model, observers and GPTQ statistics
            merged over all shards (see :mod:`lowbit.interop.distributed`).
        chain_int8: static QuantConv2d layers that feed only the next static QuantConv2d (in one
            ``nn.Sequential``, through folded BatchNorms and ReLU/ReLU6) pass uint8 activations to it
            (:func:`lowbit.nn.chain_int8_`; the same outputs bit for bit, less memory traffic).

    Returns:
        The quantized model (``model`` itself when inplace).

    Raises:
        TypeError: ``model`` is not an nn.Module or ``config`` is not a QuantConfig.
        ValueError: the model has no Linear/Conv2d layer; static mode without ``calib_data``; a
            calibration batch that does not fit the model (names the batch and layer).
        lowbit.RankMismatchError, lowbit.DistributedError: with ``process_group``, ranks with
            different models or configs; another rank failed, died or timed out.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> q = lowbit.quantize_model(m)
        >>> type(q[0]).__name__, q(torch.ones(1, 8)).shape
        ('QuantLinear', torch.Size([1, 2]))
        >>> m4 = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
        >>> q4 = lowbit.quantize_model(m4, lowbit.QuantConfig(weight="nf4"))
        >>> [row["action"] for row in lowbit.summary(q4).rows][0]
        'nf4 weights block 64, dynamic int8 act (per row and group), 4-bit kernel'
    """
    # -- issue 14: AWQ / SmoothQuant scale the float model first, bias correction runs after (equalize.py) --
    cfg0 = as_config(config)
    if any(c.bias_correction or getattr(c.algorithm, "name", None) in ("awq", "smoothquant")
           for c in (cfg0, *cfg0.per_layer.values())):
        if process_group is not None:
            raise ValueError("process_group: AWQ, SmoothQuant and bias correction run in one process (their "
                             "statistics are not merged across ranks yet); drop process_group or the algorithm")
        from .equalize import quantize_equalized

        q = quantize_equalized(_check_model(model), cfg0, calib_data, inplace, progress)
        return _chain(q, chain_int8)
    # -- end issue 14 --
    if process_group is not None and any(getattr(c.algorithm, "name", None) == "autoround"
                                         for c in (cfg0, *cfg0.per_layer.values())):
        raise ValueError("process_group: AutoRound trains in one process (its block losses are not reduced across "
                         "ranks yet); drop process_group or the algorithm")
    pgroup = _dist.resolve_group(process_group)  # issue 17: distributed calibration (None: one process)
    model, config, cands, work, float_bytes, folded = _dist.run(  # issue 17: a local error reaches the other ranks
        pgroup, "quantize_model", lambda: _begin(model, config, inplace, "quantize_model"))
    if pgroup is not None:  # issue 17: the ranks fingerprint the same model and config
        _dist.check_same(pgroup, "quantize_model", _dist.model_parts(config, cands))
    aliases = _aliases(work)
    reasons: dict[str, str] = {}
    targets: dict[str, nn.Module] = {}
    cfgs: dict[str, QuantConfig] = {}
    why: dict[str, Optional[str]] = {}
    for name, _ in cands:
        m = work.get_submodule(name)
        why[name] = _unsupported_reason(name, m, config.for_layer(name))
    groups = _shared_weights(work, cands)
    tied_emb: dict[str, str] = {}  # linear -> the embedding whose int8 rows it shares
    for group in groups:
        floats, emb = _shared_policy(group, config, why)
        reasons.update(floats)  # the shared-weight policy, listed by summary (not an error)
        if emb is not None:
            tied_emb.update({n: emb for n, _ in group if n != emb})
    for name, _ in cands:
        if name in reasons:
            continue
        m = work.get_submodule(name)
        cfg = config.for_layer(name)
        if why[name] is None:
            targets[name], cfgs[name] = m, cfg
        elif cfg.is_excluded(name):
            reasons[name] = why[name]
        else:
            _unsupported(name, why[name], cfg, reasons)
    rotated = _rotate_inputs(targets, cfgs, groups)  # float layers now W R, their inputs rotated by hooks
    try:
        act_qparams: dict[str, tuple[float, int]] = {}
        static = {n: m for n, m in targets.items() if cfgs[n].activation.calibrated}
        if static:
            act_qparams = _calibrate(work, static, cfgs, calib_data, progress, pgroup)
        gptq = {n: m for n, m in targets.items() if getattr(cfgs[n].algorithm, "name", None) == "gptq"}
        for n, m in list(gptq.items()):
            if getattr(m, "groups", 1) != 1:
                _unsupported(n, "GPTQ covers Linear, transformers Conv1D and groups=1 Conv1d / Conv2d layers (not "
                             "grouped convolutions yet)", cfgs[n], reasons)
                del gptq[n], targets[n]
        built: dict[str, _QuantBase] = {}  # layers quantized (and installed) by layer-sequential GPTQ or AutoRound

        def build(name: str, hessian: Any = None, plain: bool = False) -> Optional[_QuantBase]:
            """The quantized module of target ``name``, or None (reason recorded) when it stays float.
            ``plain``: round to nearest whatever the algorithm (AutoRound then sets the weights)."""
            m, cfg = targets[name], cfgs[name]
            algo = None if plain else cfg.algorithm
            if getattr(algo, "name", None) == "autoround":  # not tuned (outside the blocks): its starting rounding
                algo = MSEClip() if algo.clip else None
            if cfg.activation.calibrated and name not in act_qparams:
                _unsupported(name, "static: never called while calib_data ran, no activation range", cfg, reasons)
                return None
            if name in gptq and hessian is None:
                _unsupported(name, "GPTQ: never called while calib_data ran, no input statistics", cfg, reasons)
                return None
            cls = QuantConv2d if isinstance(m, nn.Conv2d) else QuantConv1d if isinstance(m, nn.Conv1d) else QuantLinear
            try:
                q = cls.from_float(m, cfg, act_qparams=act_qparams.get(name), name=name)
                if id(m) in rotated:
                    q.set_rotation(*rotated[id(m)][:2])
                if name in gptq:
                    from ..core.gptq import gptq_quantize

                    stored, stats = gptq_quantize(_weight_rows(m), hessian.hessian(), q.scheme, cfg.algorithm)
                elif algo is not None:  # MSE clipping: no data needed
                    stored, stats = mse_clip_quantize(_weight_rows(m), q.scheme, algo)
                if algo is not None:
                    q._set_stored(stored)
                    q.algorithm, q.algorithm_stats = algo, stats
            except ValueError as e:
                _unsupported(name, str(e), cfg, reasons)
                return None
            return q

        def install(name: str, q: Optional[_QuantBase]) -> None:
            """Puts layer-sequential GPTQ's or AutoRound's quantized ``q`` in the model (under every alias)."""
            if q is not None:
                built[name] = q
                for alias in aliases[id(targets[name])]:
                    _set_submodule(work, alias, q)

        sequential = {n: m for n, m in gptq.items() if cfgs[n].algorithm.sequential}
        if sequential:
            _gptq_sequential(work, sequential, calib_data, progress, lambda n, h: install(n, build(n, h)), pgroup)
        auto = {n: m for n, m in targets.items() if getattr(cfgs[n].algorithm, "name", None) == "autoround"}
        if auto:  # AutoRound: block by block, each block's layers installed once trained
            if calib_data is None:
                raise ValueError("calib_data: AutoRound learns the rounding from calibration data; pass calib_data")
            from .autoround import autoround_layers

            autoround_layers(work, auto, calib_data, lambda n: build(n, plain=True), install,
                             lambda n: cfgs[n].algorithm, progress)
        one_pass = {n: m for n, m in gptq.items() if n not in sequential}
        hessians = _collect_hessians(work, one_pass, calib_data, progress, pgroup) if one_pass else {}
        first_by_weight: dict[int, tuple[nn.Module, _QuantBase]] = {}
        tied: dict[str, QuantLinear] = {}
        for name, m in targets.items():
            if name in reasons:
                continue
            q = built[name] if name in built else None if name in sequential else build(name, hessians.get(name))
            if q is None:
                if name in sequential and name not in reasons:
                    build(name)  # never reached by calib_data: records why
                continue
            if is_conv1d(m):
                q._float_type = type(m).__name__
            prev = first_by_weight.setdefault(id(m.weight), (m, q))
            if prev[1] is not q:  # a weight shared with an earlier layer: one stored copy
                _share_buffers(q, prev[1], m.bias is not None and m.bias is prev[0].bias)
            if name in tied_emb:
                tied.setdefault(tied_emb[name], prev[1])
            q._float_nbytes = float_bytes[name]
            for alias in aliases[id(m)]:  # a module registered under several names stays one module
                _set_submodule(work, alias, q)
        for group in groups:  # a member fell back to float (on_unsupported='float'): the group stays float
            fell = [n for n, _ in group if n in targets and n in reasons]
            if not fell:
                continue
            for n, m in group:
                if type(m) is nn.Embedding:
                    reasons[n] = f"tied to '{fell[0]}', which stays float"
                elif n in targets and n not in reasons:
                    reasons[n] = f"shares its weight with '{fell[0]}', which stays float"
                    for alias in aliases[id(m)]:
                        _set_submodule(work, alias, m)
        handled = set(reasons) | set(targets) | _quantize_embeddings(work, config, reasons, float_bytes, tied)
        reasons.update(_float_leaves(work, handled))
        setattr(work, _REASONS_ATTR, {**getattr(work, _REASONS_ATTR, {}), **reasons})
        setattr(work, _FOLDED_ATTR, {**getattr(work, _FOLDED_ATTR, {}), **folded})
        setattr(work, _CONFIG_ATTR, config)
        return _chain(work, chain_int8)
    finally:
        _unrotate_float(work, rotated)


def _chain(model: nn.Module, on: bool) -> nn.Module:
    """Chains the static convolutions of a quantized model (lowbit.nn.chain) or unchains them;
    activations that alone consume a QuantLinear's result run in place on it (lowbit.nn.fused:
    the same values, one allocation less; listed by lowbit.nn.fused_activations); int8 siblings
    on one input (query, key, value) share one quantized input and GEMM (lowbit.nn.siblings);
    transformers models on "sdpa" attention run lowbit's float32 attention kernel (lowbit.nn.attention),
    and LayerNorms lowbit's LayerNorm kernel (lowbit.nn.norm)."""
    from ..nn.attention import use_lowbit_attention_
    from ..nn.chain import chain_int8_, unchain_int8_
    from ..nn.fused import fuse_activations_
    from ..nn.siblings import group_siblings_

    if on:
        chain_int8_(model)
    else:
        unchain_int8_(model)
    fuse_activations_(model)
    group_siblings_(model)
    use_lowbit_attention_(model)
    use_lowbit_layernorm_(model)
    return model


def prepare_qat(
    model: nn.Module,
    config: Union[QuantConfig, Mapping, None] = None,
    *,
    learnable_scale: bool = False,
    inplace: bool = False,
) -> nn.Module:
    """Inserts :class:`lowbit.nn.FakeQuantize` on the weights (and, for static activations, the
    inputs) of every Linear / transformers Conv1D (fake-quantized per output channel on its
    transposed Parameter) / Conv2d (groups=1) for quantization-aware training. Layers sharing a
    weight with another layer or an Embedding (tied LM heads) stay float, listed in :func:`summary`.

    The returned model trains like the float one (same Parameters, straight-through gradients;
    ``learnable_scale=True`` adds LSQ learnable scales). Ranges are observed in training mode and
    frozen in eval mode. :func:`convert` then makes the int8 model.

    Weight formats: int8 and int4 per channel or tensor, and symmetric int4 groups
    (``QuantConfig(weight="int4", group_size=g)``: Linear layers whose input size is a multiple of
    g, one fake-quant scale per group; :func:`convert` stores exactly those codes and scales).

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(8, 4))
        >>> qat = lowbit.prepare_qat(m, lowbit.QuantConfig(weight="int4", activation="static"))
        >>> type(qat[0]).__name__
        'QATLinear'
    """
    cfg0 = as_config(config)
    if any(c.rotation is not None for c in (cfg0, *cfg0.per_layer.values())):
        raise ValueError("config: prepare_qat does not rotate inputs yet (QuantConfig.rotation is for quantize_model); "
                         "drop rotation")
    # BatchNorms are folded with frozen statistics: they become Identity
    model, config, cands, work, float_bytes, folded = _begin(model, config, inplace, "prepare_qat")
    reasons: dict[str, str] = {}
    for group in _shared_weights(work, cands):  # policy: QAT keeps shared weights float
        for n, m in group:
            if type(m) is not nn.Embedding:
                others = ", ".join(repr(o) for o, _ in group if o != n)
                reasons[n] = f"shares its weight with {others}: QAT keeps shared weights float"
    done = set()
    for name, _ in cands:
        if name in reasons:
            continue
        m = work.get_submodule(name)
        cfg = config.for_layer(name)
        why = _unsupported_reason(name, m, cfg)
        if why is not None and cfg.is_excluded(name):
            reasons[name] = why
            continue
        if why is None and cfg.algorithm is not None:
            why = f"{cfg.algorithm.name.upper()} is a post-training algorithm (QAT learns the rounding); drop algorithm="
        if why is None and cfg.bias_correction:  # issue 14
            why = "bias correction is a post-training step (QAT learns the biases); drop bias_correction="
        groups = type(cfg.weight) is Int4Weights and cfg.group_size is not None and cfg.weight.symmetric
        if why is None and (type(cfg.weight) not in (Int8Weights, Int4Weights)
                            or cfg.group_size is not None and not groups):
            why = (f"{cfg.weight.describe()} have no QAT form (fake quantization covers per-channel or "
                   "per-tensor int8/int4 and symmetric int4 groups: QuantConfig(weight='int8'), 'int4', or "
                   "'int4' with group_size)")
        if why is None and groups and not (_is_linear(m) and linear_shape(m)[0] % cfg.group_size == 0):
            why = (f"QAT with int4 groups covers Linear layers whose input size is a multiple of group_size "
                   f"({cfg.group_size})")
        if why is not None:
            _unsupported(name, why, cfg, reasons)
            continue
        cls = QATConv2d if isinstance(m, nn.Conv2d) else QATConv1d if isinstance(m, nn.Conv1d) else QATLinear
        qat = cls(m, cfg, learnable=learnable_scale)
        qat.layer_name = name
        qat._float_nbytes = float_bytes[name]
        if is_conv1d(m):
            qat._float_type = type(m).__name__
        _set_submodule(work, name, qat)
        done.add(name)
    reasons.update(_float_leaves(work, set(reasons) | done))
    setattr(work, _REASONS_ATTR, reasons)
    setattr(work, _FOLDED_ATTR, folded)
    setattr(work, _CONFIG_ATTR, config)
    return work


def convert(model: nn.Module, *, inplace: bool = False, chain_int8: bool = True) -> nn.Module:
    """Turns the QAT modules of a :func:`prepare_qat` model into QuantLinear / QuantConv2d, using
    exactly the scales and zero points of their FakeQuantize modules, so that the int8 model
    computes what the fake-quantized one did (to float rounding; within one quantization step).
    ``chain_int8``: as for :func:`quantize_model`.

    Raises:
        ValueError: the model has no QAT module, or no static layer ever saw data (run data
            through the model in training mode first). Layers that alone never saw data stay
            float, listed in :func:`summary`.
    """
    model = _check_model(model)
    qat = [(n, m) for n, m in model.named_modules() if isinstance(m, (QATLinear, QATConv2d))]
    if not qat:
        raise ValueError("convert: the model has no QAT layer (use lowbit.prepare_qat first)")
    unseen = [
        n for n, m in qat if m.input_fake_quant is not None and not m.input_fake_quant.initialized
    ]
    static = [n for n, m in qat if m.input_fake_quant is not None]
    if static and len(unseen) == len(static):
        raise ValueError(
            f"convert: layer '{unseen[0]}' never saw data, its input range is unknown "
            "(run data through the model in training mode first)"
        )
    work = model if inplace else copy.deepcopy(model)
    reasons = getattr(work, _REASONS_ATTR, {})
    for name, _ in qat:
        m = work.get_submodule(name)
        cfg = m.config
        wfq = m.weight_fake_quant
        grouped = isinstance(m, QATLinear) and m.config.weight.group_size is not None
        if not wfq.initialized:
            with torch.no_grad():
                m.fake_quantized_weight() if grouped else wfq.observe(m.weight)  # the first call observes
        act_qparams = None
        if name in unseen:
            _unsupported(name, "static: never called during QAT, no activation range", cfg, reasons)
            _set_submodule(work, name, m.to_float())
            continue
        if m.input_fake_quant is not None:
            afq = m.input_fake_quant
            scale = torch.clamp(afq.scale.detach(), min=float(torch.finfo(torch.float32).eps))
            act_qparams = (float(scale), int(afq.zero_point))
            act = StaticActivations(observer=cfg.activation.observer, dtype=afq.dtype)
            cfg = QuantConfig(cfg.weight, act, embedding=cfg.embedding)
        wscale = torch.clamp(wfq.scale.detach(), min=float(torch.finfo(torch.float32).eps))
        n_out = m.out_features if isinstance(m, QATLinear) else m.weight.shape[0]
        weight_qparams = (  # per channel (n_out,), or per group (n_out, groups)
            wscale.reshape(n_out, -1) if grouped else wscale.reshape(-1).expand(n_out),
            wfq.zero_point.reshape(n_out, -1) if grouped else wfq.zero_point.reshape(-1).expand(n_out),
        )
        cls = QuantLinear if isinstance(m, QATLinear) else QuantConv1d if isinstance(m, QATConv1d) else QuantConv2d
        q = cls.from_float(
            m.to_float(), cfg, act_qparams=act_qparams, weight_qparams=weight_qparams, name=name
        )
        q._float_nbytes = getattr(m, "_float_nbytes", _param_bytes(m))
        if getattr(m, "_float_type", None):
            q._float_type = m._float_type
        _set_submodule(work, name, q)
    setattr(work, _REASONS_ATTR, reasons)
    return _chain(work, chain_int8)


# --------------------------------------------------------------------------------------------
# summary


@dataclass
class Summary:
    """What lowbit did to each layer: rows of (layer, type, action, bytes_before, bytes_after)."""

    rows: list[dict[str, Any]]

    @property
    def bytes_before(self) -> int:
        return sum(r["bytes_before"] for r in self.rows)

    @property
    def bytes_after(self) -> int:
        return sum(r["bytes_after"] for r in self.rows)

    def __str__(self) -> str:
        head = ("layer", "type", "action", "MiB before", "MiB after")
        body = [(r["layer"], r["type"], r["action"], _mib(r["bytes_before"]), _mib(r["bytes_after"])) for r in self.rows]
        body.append(("total", "", "", _mib(self.bytes_before), _mib(self.bytes_after)))
        widths = [max(len(str(row[i])) for row in [head, *body]) for i in range(5)]
        fmt = "  ".join(f"{{:{'>' if i >= 3 else '<'}{w}}}" for i, w in enumerate(widths))
        lines = [fmt.format(*head), "  ".join("-" * w for w in widths)]
        lines += [fmt.format(*row) for row in body]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{h}</th>" for h in ("layer", "type", "action", "MiB before", "MiB after"))
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(str(r[k]))}</td>" for k in ("layer", "type", "action"))
            + f"<td>{_mib(r['bytes_before'])}</td><td>{_mib(r['bytes_after'])}</td></tr>"
            for r in self.rows
        )
        total = (f"<tr><td><b>total</b></td><td></td><td></td><td>{_mib(self.bytes_before)}</td>"
                 f"<td>{_mib(self.bytes_after)}</td></tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}{total}</tbody></table>"

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows)


def _mib(b: int) -> str:
    """A size in MiB without the label (the column header says MiB): the digits of format_bytes."""
    return format_bytes(b).removesuffix(" MiB")


def _action(m: nn.Module) -> str:
    if isinstance(m, QuantEmbeddingBag):
        return f"int8 rows (per-row scale), weight-only, bags reduced by {m.mode}"
    if isinstance(m, QuantEmbedding):
        return "int8 rows (per-row scale), weight-only"
    if isinstance(m, _QuantBase):
        kernel = {"linear_4bit": ", 4-bit kernel", "linear_int8": "", "dequantize": ", dequantized per call"}
        algo = getattr(m, "algorithm", None)
        name = getattr(algo, "name", None)
        algo = f", {name.upper()}" if name is not None else ""
        if name != "bias_correction" and "bias_shift_rms" in (getattr(m, "algorithm_stats", None) or {}):
            algo += ", BIAS_CORRECTION"  # after another algorithm (AWQ, MSE, GPTQ)
        sp = m.__dict__.get("_lowbit_sparse")  # lowbit.sparse_storage
        if sp is not None:
            algo += f", stored sparse ({sp['nnz']} nonzero codes: bitmask + values)"
        if getattr(m, "rotation_block", 0):
            algo += f", Hadamard-rotated inputs (block {m.rotation_block})"
        return f"{m.scheme.describe()}, {m.scheme.activation_form(m.activation)}{kernel.get(m.kernel, '')}{algo}"
    if isinstance(m, (QATLinear, QATConv2d)):
        c = m.config
        return f"QAT: fake-quant {c.weight.name} weights" + (
            ", static act" if m.input_fake_quant is not None else ""
        )
    return ""


def summary(model: nn.Module) -> Summary:
    """A table of the model's layers with weights: what lowbit did (or why the layer stayed float)
    and the size of its parameters before and after (printed in MiB; ``rows`` hold exact bytes); a
    tensor shared by several layers (tied weights) counts once, in the first layer's row. Quantized
    layers count their tensors as
    stored (4-bit codes at half a byte, ternary at a quarter, ...; scales included), the same
    bytes as :func:`lowbit.metrics.model_nbytes` and the files of :func:`lowbit.save`.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
        >>> print(lowbit.summary(lowbit.quantize_model(m)))  # doctest: +NORMALIZE_WHITESPACE
        layer  type         action                                                        MiB before  MiB after
        -----  -----------  ------------------------------------------------------------  ----------  ---------
        0      QuantLinear  int8 weights per_channel, dynamic act (per row)                 0.000275   0.000153
        1      LayerNorm    float: LayerNorm kept float32 (on lowbit's LayerNorm kernel)   0.0000610  0.0000610
        total                                                                               0.000336   0.000214
    """
    model = _check_model(model)
    reasons = getattr(model, _REASONS_ATTR, {})
    folded = getattr(model, _FOLDED_ATTR, {})
    from ..nn.chain import chained_layers

    chain_to = dict(chained_layers(model))  # uint8 activations between static convolutions
    rows = []
    seen: set[int] = set()  # tensors already counted: a shared weight counts once, at its first layer
    for name, m in model.named_modules():
        if isinstance(m, FakeQuantize):
            continue
        if isinstance(m, (_QuantBase, QuantEmbedding, QATLinear, QATConv2d)):
            after = _param_bytes(m, seen)
            before = getattr(m, "_float_nbytes", after)
            kind = type(m).__name__
            if getattr(m, "_float_type", None):
                kind += f" (was {m._float_type})"
            rows.append(
                {
                    "layer": name,
                    "type": kind,
                    "action": _action(m) + (f", uint8 output to '{chain_to[name]}'" if name in chain_to else "")
                    + (f", folded BatchNorm '{folded[name]}'" if name in folded else ""),
                    "bytes_before": before,
                    "bytes_after": after,
                }
            )
        elif isinstance(m, InputScaled):  # AWQ / SmoothQuant: a stored per-channel scale
            b = _param_bytes(m, seen)
            rows.append({"layer": name, "type": "InputScaled", "action": "float per-channel input scale (AWQ / "
                         "SmoothQuant: no preceding op to fold it into)", "bytes_before": 0, "bytes_after": b})
        elif name in reasons or any(True for _ in m.parameters(recurse=False)):
            why = reasons.get(name, "not quantized")
            if name in folded:
                why += f", folded BatchNorm '{folded[name]}'"
            b = _param_bytes(m, seen)
            rows.append(
                {
                    "layer": name,
                    "type": type(m).__name__,
                    "action": f"float: {why}",
                    "bytes_before": b,
                    "bytes_after": b,
                }
            )
    return Summary(rows)
