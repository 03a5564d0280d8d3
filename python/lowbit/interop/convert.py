"""Whole-model transforms: quantize_model (dynamic / static / weight-only), prepare_qat, convert,
summary. Public torch layer built from lowbit.nn, lowbit.observers and lowbit.calibrate.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import nn

import lowbit

from ..core.config import QuantConfig, as_config
from ..core.schemes import Int4Weights, Int8Weights, StaticActivations
from ..nn import FakeQuantize, QATConv2d, QATLinear, QuantConv1d, QuantConv2d, QuantEmbedding, QuantLinear
from ..nn.linear import _QuantBase

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


def _param_bytes(m: nn.Module) -> int:
    return sum(
        t.numel() * t.element_size()
        for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
    )


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
    return [(n, m) for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv1d, nn.Conv2d)]


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
            elif type(m) is nn.Embedding:
                out[n] = (
                    "Embedding kept float (QuantConfig(embedding='int8') stores it as int8 rows)"
                )
            else:
                out[n] = f"{type(m).__name__} has no lowbit kernel"
    return out


def _conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, batchnorm) module names where the BatchNorm's only input is the convolution's output
    and nothing else reads that output: from a torch.fx trace when the model traces, otherwise
    from consecutive children of nn.Sequential containers."""
    convs = (nn.Conv1d, nn.Conv2d)
    bns = (nn.BatchNorm1d, nn.BatchNorm2d)
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


def _quantize_embeddings(work: nn.Module, config: QuantConfig, reasons: dict[str, str]) -> set[str]:
    """Replaces plain nn.Embedding layers whose config asks for it; returns the names handled."""
    done = set()
    for name, m in list(work.named_modules()):
        if type(m) is not nn.Embedding:
            continue
        cfg = config.for_layer(name)
        if cfg.embedding is None:
            continue
        done.add(name)
        if cfg.is_excluded(name):
            reasons[name] = "excluded by config"
            continue
        try:
            q = QuantEmbedding.from_float(m, name=name)
        except ValueError as e:
            reasons[name] = str(e)
            continue
        q._float_nbytes = _param_bytes(m)
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


_OBSERVER_CLASSES = {
    "minmax": ("MinMaxObserver", {}),
    "moving_average": ("MovingAverageMinMaxObserver", {}),
    "histogram": ("HistogramObserver", {"method": "mse"}),
    "percentile": ("HistogramObserver", {"method": "percentile"}),
    "entropy": ("HistogramObserver", {"method": "entropy"}),
}


def _make_observer(cfg: QuantConfig) -> Any:
    cls_name, kwargs = _OBSERVER_CLASSES[cfg.observer]
    symmetric = cfg.activation_dtype == "int8"
    return getattr(lowbit.observers, cls_name)(
        dtype=cfg.activation_dtype, symmetric=symmetric, **kwargs
    )


def _calibrate(
    model: nn.Module,
    targets: dict[str, nn.Module],
    cfgs: dict[str, QuantConfig],
    calib_data: Any,
    progress: bool,
) -> dict[str, tuple[float, int]]:
    """Observes the inputs of ``targets`` over ``calib_data``; returns name -> (scale, zero_point)
    for the layers that saw data."""
    if calib_data is None:
        raise ValueError(
            "calib_data: static activation quantization needs calibration data (an iterable of batches)"
        )
    if isinstance(calib_data, (torch.Tensor, Mapping)):
        calib_data = [calib_data]
    observers = {n: _make_observer(cfgs[n]) for n in targets}
    seen: dict[str, int] = {n: 0 for n in targets}
    state: dict[str, Any] = {"layer": None, "batch": -1}
    handles = []

    def pre_hook(name: str):
        def hook(mod: nn.Module, args: tuple) -> None:
            state["layer"] = name
            x = args[0] if args else None
            if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                raise TypeError(
                    f"layer '{name}' received {type(x).__name__} input, expected a float tensor"
                )
            observers[name].update(x.detach().cpu())
            seen[name] += 1

        return hook

    def fn(batch: Any) -> None:
        state["batch"] += 1
        state["layer"] = None
        try:
            run_batch(model, batch)
        except Exception as e:  # re-raised with the batch and layer that failed
            where = f" in layer '{state['layer']}'" if state["layer"] else ""
            raise ValueError(
                f"calib_data: batch {state['batch']} does not fit the model{where}: {type(e).__name__}: {e}"
            ) from e

    for n, m in targets.items():
        handles.append(m.register_forward_pre_hook(pre_hook(n)))
    was_training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            lowbit.calibrate(fn, calib_data, observers, progress=progress)
    finally:
        for h in handles:
            h.remove()
        for m, t in was_training.items():
            m.training = t
    if state["batch"] < 0:
        raise ValueError("calib_data: no batches (the iterable is empty)")
    return {n: tuple(observers[n].compute_qparams()) for n in targets if seen[n]}


# --------------------------------------------------------------------------------------------
# public transforms


def quantize_model(
    model: nn.Module,
    config: Union[QuantConfig, Mapping, None] = None,
    *,
    calib_data: Optional[Iterable] = None,
    inplace: bool = False,
    progress: bool = True,
) -> nn.Module:
    """Replaces ``nn.Linear`` / ``nn.Conv2d`` / ``nn.Conv1d`` layers (any groups) with lowbit's
    quantized modules. A BatchNorm that directly follows a convolution (found by a torch.fx trace,
    or in nn.Sequential order when the model does not trace) is first folded into it with its
    running statistics (eval-mode semantics) and replaced by nn.Identity; :func:`summary` reports
    the fold.

    ``config.weight`` picks the weight format (int8, int4 per channel or in groups, uint4, nf4,
    fp16, bf16, log2, ternary, binary; see :class:`lowbit.QuantConfig`) and
    ``config.activation`` the mode: "dynamic" (activations quantized per row at run time),
    "static" (per-tensor activation parameters from observers on each layer's input while
    ``calib_data`` runs through the model in eval mode under ``lowbit.calibrate``), or None
    (weight-only). Layers left in float (excluded, grouped convolutions, other layer types, static
    layers never reached by the calibration data, shapes the 4-bit kernel cannot run) are
    recorded with the reason: see :func:`summary`.

    Args:
        model: a float model. Never modified unless ``inplace=True``.
        config: a :class:`lowbit.QuantConfig` (or a dict of its fields).
        calib_data: iterable of batches for static mode: tensors (``model(x)``), dicts
            (``model(**batch)``) or ``(inputs, labels)`` tuples (``model(inputs)``).
        inplace: modify ``model`` itself.
        progress: show a progress bar during calibration.

    Returns:
        The quantized model (``model`` itself when inplace).

    Raises:
        TypeError: ``model`` is not an nn.Module or ``config`` is not a QuantConfig.
        ValueError: the model has no Linear/Conv2d layer; static mode without ``calib_data``; a
            calibration batch that does not fit the model (names the batch and layer).

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
    model = _check_model(model)
    config = as_config(config)
    config.check_patterns(n for n, _ in model.named_modules())
    cands = _candidates(model)
    if not cands:
        kinds = sorted(
            {
                type(m).__name__
                for m in model.modules()
                if any(True for _ in m.parameters(recurse=False))
            }
        )
        raise ValueError(
            f"quantize_model: {type(model).__name__} has no nn.Linear or nn.Conv2d layer to quantize"
            + (f" (layers with weights: {', '.join(kinds)})" if kinds else "")
        )
    work = model if inplace else copy.deepcopy(model)
    folded = _fold_batchnorms(work, config)
    reasons: dict[str, str] = {}
    targets: dict[str, nn.Module] = {}
    cfgs: dict[str, QuantConfig] = {}
    for name, _ in cands:
        m = work.get_submodule(name)
        cfg = config.for_layer(name)
        why = _unsupported_reason(name, m, cfg)
        if why is None:
            targets[name], cfgs[name] = m, cfg
        elif cfg.is_excluded(name):
            reasons[name] = why
        else:
            _unsupported(name, why, cfg, reasons)
    act_qparams: dict[str, tuple[float, int]] = {}
    static = {n: m for n, m in targets.items() if cfgs[n].activation.calibrated}
    if static:
        act_qparams = _calibrate(work, static, cfgs, calib_data, progress)
    for name, m in targets.items():
        cfg = cfgs[name]
        if cfg.activation.calibrated and name not in act_qparams:
            _unsupported(name, "static: never called while calib_data ran, no activation range", cfg, reasons)
            continue
        cls = QuantLinear if isinstance(m, nn.Linear) else QuantConv1d if isinstance(m, nn.Conv1d) else QuantConv2d
        try:
            q = cls.from_float(m, cfg, act_qparams=act_qparams.get(name), name=name)
        except ValueError as e:
            _unsupported(name, str(e), cfg, reasons)
            continue
        q._float_nbytes = _param_bytes(m)
        _set_submodule(work, name, q)
    handled = set(reasons) | set(targets) | _quantize_embeddings(work, config, reasons)
    reasons.update(_float_leaves(work, handled))
    setattr(work, _REASONS_ATTR, {**getattr(work, _REASONS_ATTR, {}), **reasons})
    setattr(work, _FOLDED_ATTR, {**getattr(work, _FOLDED_ATTR, {}), **folded})
    setattr(work, _CONFIG_ATTR, config)
    return work


def prepare_qat(
    model: nn.Module,
    config: Union[QuantConfig, Mapping, None] = None,
    *,
    learnable_scale: bool = False,
    inplace: bool = False,
) -> nn.Module:
    """Inserts :class:`lowbit.nn.FakeQuantize` on the weights (and, for static activations, the
    inputs) of every Linear / Conv2d (any groups) for quantization-aware training.

    BatchNorms that directly follow a convolution are frozen: folded into it at this point with
    their current running statistics (then nn.Identity), so QAT trains the folded weights that
    :func:`convert` quantizes (build the optimizer after this call: the folded weights are new
    Parameters). Conv1d layers have no QAT form.

    The returned model trains like the float one (same Parameters, straight-through gradients;
    ``learnable_scale=True`` adds LSQ learnable scales). Ranges are observed in training mode and
    frozen in eval mode. :func:`convert` then makes the int8 model.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(8, 4))
        >>> qat = lowbit.prepare_qat(m, lowbit.QuantConfig(weight="int4", activation="static"))
        >>> type(qat[0]).__name__
        'QATLinear'
    """
    model = _check_model(model)
    config = as_config(config)
    config.check_patterns(n for n, _ in model.named_modules())
    cands = _candidates(model)
    if not cands:
        raise ValueError(
            f"prepare_qat: {type(model).__name__} has no nn.Linear or nn.Conv2d layer to quantize"
        )
    work = model if inplace else copy.deepcopy(model)
    folded = _fold_batchnorms(work, config)  # frozen statistics: the BatchNorms become Identity
    reasons: dict[str, str] = {}
    done = set()
    for name, _ in cands:
        m = work.get_submodule(name)
        cfg = config.for_layer(name)
        why = _unsupported_reason(name, m, cfg)
        if why is not None and cfg.is_excluded(name):
            reasons[name] = why
            continue
        if why is None and isinstance(m, nn.Conv1d):
            why = "Conv1d has no QAT form (quantize it after training with quantize_model)"
        if why is None and (type(cfg.weight) not in (Int8Weights, Int4Weights) or cfg.group_size is not None):
            why = (f"{cfg.weight.describe()} have no QAT form (fake quantization covers per-channel or "
                   "per-tensor int8/int4: QuantConfig(weight='int8') or 'int4' without group_size)")
        if why is not None:
            _unsupported(name, why, cfg, reasons)
            continue
        cls = QATLinear if isinstance(m, nn.Linear) else QATConv2d
        qat = cls(m, cfg, learnable=learnable_scale)
        qat.layer_name = name
        qat._float_nbytes = _param_bytes(m)
        _set_submodule(work, name, qat)
        done.add(name)
    reasons.update(_float_leaves(work, set(reasons) | done))
    setattr(work, _REASONS_ATTR, reasons)
    setattr(work, _FOLDED_ATTR, folded)
    setattr(work, _CONFIG_ATTR, config)
    return work


def convert(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Turns the QAT modules of a :func:`prepare_qat` model into QuantLinear / QuantConv2d, using
    exactly the scales and zero points of their FakeQuantize modules, so that the int8 model
    computes what the fake-quantized one did (to float rounding; within one quantization step).

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
        if not wfq.initialized:
            wfq.observe(m.weight)
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
        n_out = m.weight.shape[0]
        weight_qparams = (
            wscale.reshape(-1).expand(n_out),
            wfq.zero_point.reshape(-1).expand(n_out),
        )
        cls = QuantLinear if isinstance(m, QATLinear) else QuantConv2d
        q = cls.from_float(
            m.to_float(), cfg, act_qparams=act_qparams, weight_qparams=weight_qparams, name=name
        )
        q._float_nbytes = getattr(m, "_float_nbytes", _param_bytes(m))
        _set_submodule(work, name, q)
    setattr(work, _REASONS_ATTR, reasons)
    return work


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
        head = ("layer", "type", "action", "bytes before", "bytes after")
        body = [
            (r["layer"], r["type"], r["action"], f"{r['bytes_before']:,}", f"{r['bytes_after']:,}")
            for r in self.rows
        ]
        body.append(("total", "", "", f"{self.bytes_before:,}", f"{self.bytes_after:,}"))
        widths = [max(len(str(row[i])) for row in [head, *body]) for i in range(5)]
        fmt = "  ".join(f"{{:{'>' if i >= 3 else '<'}{w}}}" for i, w in enumerate(widths))
        lines = [fmt.format(*head), "  ".join("-" * w for w in widths)]
        lines += [fmt.format(*row) for row in body]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html

        head = "".join(
            f"<th>{h}</th>" for h in ("layer", "type", "action", "bytes before", "bytes after")
        )
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(str(r[k]))}</td>" for k in ("layer", "type", "action"))
            + f"<td>{r['bytes_before']:,}</td><td>{r['bytes_after']:,}</td></tr>"
            for r in self.rows
        )
        total = f"<tr><td><b>total</b></td><td></td><td></td><td>{self.bytes_before:,}</td><td>{self.bytes_after:,}</td></tr>"
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}{total}</tbody></table>"

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows)


def _action(m: nn.Module) -> str:
    if isinstance(m, QuantEmbedding):
        return "int8 rows (per-row scale), weight-only"
    if isinstance(m, _QuantBase):
        kernel = {"linear_4bit": ", 4-bit kernel", "linear_int8": "", "dequantize": ", dequantized per call"}
        return f"{m.scheme.describe()}, {m.scheme.activation_form(m.activation)}{kernel.get(m.kernel, '')}"
    if isinstance(m, (QATLinear, QATConv2d)):
        c = m.config
        return f"QAT: fake-quant {c.weight.name} weights" + (
            ", static act" if m.input_fake_quant is not None else ""
        )
    return ""


def summary(model: nn.Module) -> Summary:
    """A table of the model's layers with weights: what lowbit did (or why the layer stayed float)
    and the bytes of its parameters before and after. Quantized layers count their tensors as
    stored (4-bit codes at half a byte, ternary at a quarter, ...; scales included), the same
    bytes as :func:`lowbit.metrics.model_nbytes` and the files of :func:`lowbit.save`.

    Example:
        >>> import torch
        >>> m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
        >>> print(lowbit.summary(lowbit.quantize_model(m)))  # doctest: +NORMALIZE_WHITESPACE
        layer  type         action                                           bytes before  bytes after
        -----  -----------  -----------------------------------------------  ------------  -----------
        0      QuantLinear  int8 weights per_channel, dynamic act (per row)           288          160
        1      LayerNorm    float: LayerNorm has no lowbit kernel                      64           64
        total                                                                         352          224
    """
    model = _check_model(model)
    reasons = getattr(model, _REASONS_ATTR, {})
    folded = getattr(model, _FOLDED_ATTR, {})
    rows = []
    for name, m in model.named_modules():
        if isinstance(m, FakeQuantize):
            continue
        if isinstance(m, (_QuantBase, QuantEmbedding, QATLinear, QATConv2d)):
            after = m.nbytes if isinstance(m, (_QuantBase, QuantEmbedding)) else _param_bytes(m)
            before = getattr(m, "_float_nbytes", after)
            rows.append(
                {
                    "layer": name,
                    "type": type(m).__name__,
                    "action": _action(m) + (f", folded BatchNorm '{folded[name]}'" if name in folded else ""),
                    "bytes_before": before,
                    "bytes_after": after,
                }
            )
        elif name in reasons or any(True for _ in m.parameters(recurse=False)):
            why = reasons.get(name, "not quantized")
            if name in folded:
                why += f", folded BatchNorm '{folded[name]}'"
            b = _param_bytes(m)
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
